"""``miniagents view``: a live view of a run's agent call tree in the browser (extra ``miniagents[view]``).

Start the server in a terminal, then opt a program in with one line::

    miniagents view                                    # serves http://127.0.0.1:8765

    from miniagents.ext.view import ViewPublisher
    MiniAgents(observers=[ViewPublisher()]).run(main())

The page shows every agent call as a node under the call that made it, as soon as it starts, coloured by its
status (running, finished, failed, cancelled); clicking a node shows its input and reply messages, and the
selected message's text as it streams, token by token. The server listens on 127.0.0.1 only.

The web app reads runs through the `RunSource` protocol: `LiveRuns` (what programs publish) is one; a source of
stored runs plugs in the same way (`create_app`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from miniagents.ext.view._publisher import DEFAULT_PORT, ViewPublisher
from miniagents.ext.view._runs import EventError, LiveRuns, RunSource

logger = logging.getLogger("miniagents.view")

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "DEFAULT_PORT",
    "EventError",
    "LiveRuns",
    "RunSource",
    "ViewPublisher",
    "aload_stored_runs",
    "create_app",
    "serve",
]


def create_app(source: RunSource | None = None) -> Starlette:
    """The ASGI app of the view (Starlette) over ``source`` (a new, empty `LiveRuns` by default).

    See `miniagents.ext.view._app.create_app` for the routes.

    Raises:
        ImportError: ``starlette`` is not installed (``pip install "miniagents[view]"``).
    """
    from miniagents.ext.view._app import create_app as _create_app

    return _create_app(LiveRuns() if source is None else source)


async def aload_stored_runs(location: str, limit: int = 50, source: LiveRuns | None = None) -> LiveRuns:
    """Read the newest runs of a message store into a `LiveRuns` (what ``miniagents view --store`` shows).

    Args:
        location: the store, as `miniagents.store.open_store` takes it (a SQLite file or a ``postgresql://`` URL).
        limit: how many runs (top-level agent calls), the newest first.
        source: the `LiveRuns` to add them to (a new one by default); live runs can still be published to it.

    Returns:
        The `LiveRuns`, with one run per stored top-level call. A call interrupted by a crash shows as running; a
        run that cannot be loaded (a broken row, a class name two modules share) is left out with a warning.

    Raises:
        ImportError: the store's driver is not installed (the message names the ``pip install`` command).
        ValueError: the location names no store (see `miniagents.store.open_store`).
        FileNotFoundError: the location is a file path and there is no such file (opening it would make an empty
            store there, e.g. from a misspelt name).
    """
    from miniagents.store import open_store

    if "://" not in location and not await asyncio.to_thread(os.path.exists, location):
        raise FileNotFoundError(f"no such store file: {location!r}")
    runs = LiveRuns() if source is None else source
    store = open_store(location)
    try:
        for root_call_id in reversed(await store.aread_root_calls(limit)):  # (oldest first: the newest is shown)
            try:
                tree = await store.aload_call_tree(root_call_id)
            except (KeyError, LookupError, ValueError) as error:  # (a broken or ambiguous row costs its run only)
                logger.warning("the stored run %s is left out: %s: %s", root_call_id, type(error).__name__, error)
                continue
            runs.add_call_tree(tree)
    finally:
        await store.aclose()
    return runs


def serve(
    port: int = DEFAULT_PORT, source: RunSource | None = None, on_listening: Callable[[str], None] | None = None
) -> None:
    """Serve the view on ``http://127.0.0.1:{port}`` until interrupted (blocking; what ``miniagents view`` runs).

    Args:
        port: the TCP port (0 picks a free one).
        source: the runs to show; a new `LiveRuns` (which programs publish to) by default.
        on_listening: called with the server's address (``http://127.0.0.1:{port}/``, the port picked if ``port`` is
            0) once it listens.

    Raises:
        ImportError: ``starlette`` or ``uvicorn`` is not installed (``pip install "miniagents[view]"``).
        OSError: the port cannot be used (e.g. another program listens on it).
    """
    try:
        import uvicorn
    except ImportError as error:
        raise ImportError('miniagents view needs uvicorn: pip install "miniagents[view]"', name="uvicorn") from error
    # (open event streams of browser tabs must not hold up Ctrl+C)
    config = uvicorn.Config(create_app(source), host="127.0.0.1", log_level="warning", timeout_graceful_shutdown=2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:  # (bound here: to know the port picked)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (as uvicorn does)
        listening.bind(("127.0.0.1", port))
        listening.listen(config.backlog)
        if on_listening is not None:
            on_listening(f"http://127.0.0.1:{listening.getsockname()[1]}/")
        try:
            uvicorn.Server(config).run(sockets=[listening])
        except KeyboardInterrupt:  # (after the server has stopped)
            pass
