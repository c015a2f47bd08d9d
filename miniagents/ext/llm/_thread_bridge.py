"""Iterate a blocking iterator in a worker thread, as an async iterator on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

ItemT = TypeVar("ItemT")

_ITEM = "item"
_ERROR = "error"
_END = "end"


async def aiterate_in_thread(
    make_iterator: Callable[[], Iterator[ItemT]],
    lock: threading.Lock | None = None,
    thread_name: str = "miniagents-worker",
) -> AsyncIterator[ItemT]:
    """Run ``make_iterator()`` and its iteration in a new daemon thread; yield its items on the event loop.

    The thread hands each item to the loop with ``loop.call_soon_threadsafe``, so the loop never blocks.

    Args:
        make_iterator: called in the thread; returns the (blocking) iterator, e.g. a generator.
        lock: held by the thread for the whole iteration. Use one lock per resource that must not be used
            concurrently (a model): concurrent iterations then queue for it instead of failing.
        thread_name: the name of the worker thread.

    Yields:
        The iterator's items, in order.

    Raises:
        BaseException: whatever ``make_iterator`` or the iteration raised in the thread, re-raised here.

    When the consumer stops early (the async generator is closed, or its task is cancelled), the thread is told
    to stop: it closes the iterator after the item it is producing (or right after getting the lock, if it was
    still waiting for it) and exits. It also stops when the event loop is closed under it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def post(kind: str, payload: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is closed: nobody will ever read again
            stop.set()

    def work() -> None:
        try:
            with lock if lock is not None else contextlib.nullcontext():
                if stop.is_set():
                    return
                iterator = make_iterator()
                try:
                    for item in iterator:
                        if stop.is_set():
                            break
                        post(_ITEM, item)
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
        except BaseException as error:
            post(_ERROR, error)
        finally:
            post(_END, None)

    thread = threading.Thread(target=work, name=thread_name, daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = await queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise payload
            yield payload
    finally:
        stop.set()
