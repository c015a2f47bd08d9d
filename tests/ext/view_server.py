"""A ``miniagents view`` server in a background thread, on a free port of 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from miniagents.ext.view import LiveRuns, create_app
from tests.servers import free_port


@contextlib.contextmanager
def view_server(live: LiveRuns | None = None, port: int | None = None) -> Iterator[tuple[str, LiveRuns]]:
    """Yield ``(base_url, live_runs)`` while a view server runs on ``port`` (a free one by default); stop it on exit."""
    live = LiveRuns() if live is None else live
    port = free_port() if port is None else port
    config = uvicorn.Config(
        create_app(live), host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="view-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the view server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", live
    finally:
        server.should_exit = True
        thread.join(timeout=20)
