"""Run blocking producers (an iterator, or a function that calls back per item) in a worker thread.

Their items come out of async iterators on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar

ItemT = TypeVar("ItemT")

_ITEM = "item"
_ERROR = "error"
_END = "end"


async def astream_from_thread(
    produce: Callable[[Callable[[ItemT], bool]], object],
    lock: threading.Lock | None = None,
    thread_name: str = "miniagents-worker",
) -> AsyncGenerator[ItemT, None]:
    """Run ``produce(emit)`` in a new daemon thread; yield every item it passes to ``emit`` on the event loop.

    ``emit(item)`` hands the item to the loop (``loop.call_soon_threadsafe``, so the loop never blocks) and returns
    True once the consumer is gone: the producer should then stop (e.g. a streaming callback that returns True).

    Args:
        produce: called in the thread with ``emit``; blocks until it has produced everything. Its return value is
            ignored.
        lock: held by the thread while ``produce`` runs. Use one lock per resource that must not be used
            concurrently (a model): concurrent streams then queue for it instead of failing.
        thread_name: the name of the worker thread.

    Yields:
        The emitted items, in order.

    Raises:
        BaseException: whatever ``produce`` raised in the thread, re-raised here after the items emitted before.

    When the consumer stops early (the async generator is closed, or its task is cancelled), ``emit`` returns True
    from then on and drops the items; a thread still waiting for the lock does not call ``produce`` at all. The
    same happens when the event loop is closed under the thread.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def post(kind: str, payload: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is closed: nobody will ever read again
            stop.set()

    def emit(item: ItemT) -> bool:
        if stop.is_set():
            return True
        post(_ITEM, item)
        return stop.is_set()

    def work() -> None:
        try:
            with lock if lock is not None else contextlib.nullcontext():
                if not stop.is_set():
                    produce(emit)
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


async def aiterate_in_thread(
    make_iterator: Callable[[], Iterator[ItemT]],
    lock: threading.Lock | None = None,
    thread_name: str = "miniagents-worker",
) -> AsyncGenerator[ItemT, None]:
    """Run ``make_iterator()`` and its iteration in a new daemon thread; yield its items on the event loop.

    The same as `astream_from_thread`, for a blocking iterator: when the consumer stops early, the thread closes
    the iterator after the item it is producing and exits.

    Args:
        make_iterator: called in the thread; returns the (blocking) iterator, e.g. a generator.
        lock: held by the thread for the whole iteration (see `astream_from_thread`).
        thread_name: the name of the worker thread.

    Yields:
        The iterator's items, in order.

    Raises:
        BaseException: whatever ``make_iterator`` or the iteration raised in the thread, re-raised here.
    """

    def produce(emit: Callable[[ItemT], bool]) -> None:
        iterator = make_iterator()
        try:
            for item in iterator:
                if emit(item):
                    break
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async with contextlib.aclosing(astream_from_thread(produce, lock=lock, thread_name=thread_name)) as items:
        async for item in items:
            yield item
