"""`run_coroutine`: what `asyncio.run` does, with a shutdown that cannot wait forever (see `PromisingContext.run`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

__all__ = ["run_coroutine"]

logger = logging.getLogger("miniagents")

ResultT = TypeVar("ResultT")

_left_behind: set[asyncio.Task[Any]] = set()
"""The tasks that did not end in their grace: kept, so that they are not collected (and closed) meanwhile."""


def run_coroutine(coroutine: Coroutine[Any, Any, ResultT], grace: float) -> ResultT:
    """Run ``coroutine`` on a new event loop until it is done, then close the loop, as `asyncio.run` does.

    The same steps: the loop is the thread's current one meanwhile; in the main thread, with Python's default
    SIGINT handler in place, Ctrl+C cancels the coroutine's task (a second Ctrl+C raises ``KeyboardInterrupt`` at
    once), and a task ended that way raises ``KeyboardInterrupt``; then the tasks still running are cancelled, the
    async generators closed and the default executor shut down. Unlike `asyncio.run` (whose shutdown waits as long
    as a task ignores its cancellation, or a thread of ``asyncio.to_thread`` runs), the tasks and the executor get
    ``grace`` seconds each; what is still running then is left behind, with a warning.

    Raises:
        KeyboardInterrupt: Ctrl+C cancelled the coroutine.
        BaseException: what the coroutine raised.
    """
    loop = asyncio.new_event_loop()
    interrupts = 0
    main_task: asyncio.Task[ResultT] | None = None

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1 or main_task is None or main_task.done():
            raise KeyboardInterrupt()
        main_task.cancel()  # (at once, as asyncio does: deferred, it would miss a coroutine that returns first)
        loop.call_soon_threadsafe(lambda: None)  # (wakes the loop up if it waits for I/O)

    handles_sigint = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    try:
        asyncio.set_event_loop(loop)
        if handles_sigint:
            try:
                signal.signal(signal.SIGINT, on_sigint)
            except ValueError:  # (a main thread that cannot handle signals, as in an embedded interpreter)
                handles_sigint = False
        main_task = loop.create_task(coroutine)
        try:
            return loop.run_until_complete(main_task)
        except asyncio.CancelledError:
            uncancel = getattr(main_task, "uncancel", None)  # (Python 3.11+: the cancellation was ours alone)
            if interrupts and (uncancel is None or uncancel() == 0):
                raise KeyboardInterrupt() from None
            raise
    finally:
        if handles_sigint and signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            _cancel_the_rest(loop, grace)
            loop.run_until_complete(loop.shutdown_asyncgens())
            _shut_down_the_executor(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_the_rest(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel the loop's tasks and wait for them for ``grace`` seconds; report their errors as `asyncio.run` does."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    waiting = asyncio.wait(tasks, timeout=grace)
    try:
        done, pending = loop.run_until_complete(waiting)
    finally:
        waiting.close()  # (if a task raised out of the loop before the waiting began: not "never awaited")
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        names = ", ".join(sorted(task.get_name() for task in pending))
        logger.warning(
            "%d task(s) ignored their cancellation for %s s and are left behind as the event loop closes: %s",
            len(pending),
            grace,
            names,
        )
        _left_behind.update(pending)  # (not collected, and closed, while the process goes on)


def _shut_down_the_executor(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Shut the default executor down, waiting for its threads (``asyncio.to_thread`` …) for ``grace`` seconds."""
    shutting_down = loop.create_task(loop.shutdown_default_executor())
    done, _ = loop.run_until_complete(asyncio.wait([shutting_down], timeout=grace))
    if not done:  # (not cancelled: it would wait for the threads all the same, in its `finally`)
        _left_behind.add(shutting_down)
        logger.warning(
            "the event loop's executor threads (asyncio.to_thread …) still run after %s s; left behind (Python "
            "waits for them as it exits)",
            grace,
        )
