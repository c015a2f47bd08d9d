"""`StreamAppender`: a push-style streamer with exactly one consumer."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from miniagents.promising._context import PromisingContext, active_context
from miniagents.promising._failures import Failure, cancelled_work_error, log_error_once, where
from miniagents.promising._streamed_promise import PENDING
from miniagents.promising._tasks import current_scope, is_own_cancellation
from miniagents.promising.errors import AppenderClosedError, AppenderNotOpenError
from miniagents.promising.sentinels import DEFAULT, END_OF_QUEUE, Sentinel

__all__ = ["DirectTaker", "StreamAppender"]

PieceT = TypeVar("PieceT")

_END = END_OF_QUEUE


class DirectTaker(Protocol):
    """The consumer of a `StreamAppender` that may take pieces directly (see `StreamAppender._direct`)."""

    def take_directly(self, item: Any) -> bool:
        """Take a piece, the end or a failure without the queue if possible; return whether it was taken."""
        ...


class StreamAppender(Generic[PieceT]):
    """A push-style streamer with exactly one consumer: ``append()`` pieces, iterate them elsewhere.

    Use it as ``with appender: appender.append(piece)`` (opens, then closes on exit) and pass it as the
    ``streamer`` of a `StreamedPromise` to make the pieces replayable. ``appender(...)`` returns the appender.

    Args:
        capture_errors: when an exception leaves the ``with`` block, append it as a piece (the consumer sees it
            raised at that position) and suppress it, instead of letting it propagate. `DEFAULT` asks the
            active context (``appenders_capture_errors_by_default``), which then must exist.
    """

    def __init__(self, capture_errors: bool | Sentinel = DEFAULT) -> None:
        context = active_context.get()
        if capture_errors is DEFAULT:
            if context is None:
                context = PromisingContext.get_current()  # raises NoActiveContextError with a hint
            capture_errors = context.appenders_capture_errors_by_default
        self.capture_errors: bool = bool(capture_errors)
        self._log_level_for_errors = logging.ERROR if context is None else context.log_level_for_errors
        self._queue: deque[Any] | None = None  # created with the first piece: fewer objects per appender
        self._waiter: asyncio.Future[None] | None = None
        self._direct: DirectTaker | None = None
        """Set by a consumer that may take a piece (or the end, or an error) directly, without the queue; its
        ``take_directly(item)`` returns whether it did (see `append`, `close`, `set_direct_taker`)."""
        self._was_open = False
        self._closed = False

    _cancel_safe = True  # (see `PENDING`): cancelling a task waiting in `__anext__` loses nothing

    def set_direct_taker(self, taker: DirectTaker | None) -> None:
        """Let ``taker`` take the next items directly, without the queue, while it wants to (None: stop)."""
        self._direct = taker

    @property
    def has_waiting_consumer(self) -> bool:
        """Whether the consumer is waiting in ``__anext__`` for the next item right now."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    @property
    def was_open(self) -> bool:
        """Whether `open` was ever called."""
        return self._was_open

    @property
    def is_open(self) -> bool:
        """Whether pieces can be appended right now."""
        return self._was_open and not self._closed

    def open(self) -> StreamAppender[PieceT]:
        """Open the appender for appending; returns ``self``.

        Raises:
            AppenderClosedError: it was closed already.
        """
        if self._closed:
            raise AppenderClosedError("this StreamAppender is closed and cannot be opened again")
        self._was_open = True
        return self

    def append(self, piece: PieceT) -> StreamAppender[PieceT]:
        """Put a piece into the stream without blocking; returns ``self``.

        Raises:
            AppenderNotOpenError: `open` was never called (use ``with appender:``).
            AppenderClosedError: the appender is closed.
        """
        if not self._was_open:
            raise AppenderNotOpenError("open the StreamAppender first: `with appender: appender.append(...)`")
        if self._closed:
            raise AppenderClosedError("this StreamAppender is closed: nothing can be appended any more")
        direct = self._direct
        if direct is not None and direct.take_directly(piece):
            return self  # the consumer took it directly: nobody has to be woken up for it
        self._put(piece)
        return self

    def close(self) -> None:
        """End the stream (idempotent)."""
        if not self._closed:
            self._closed = True
            direct = self._direct
            if direct is not None:
                direct.take_directly(_END)  # the end may reach the consumer's consumers now; the consumer is
                # still woken below
            self._put(_END)

    def fail(self, error: BaseException) -> None:
        """Append ``error`` as the last piece (the consumer gets it raised there) and close (ignored if closed)."""
        if self._closed:
            return
        failure = Failure(error)
        if self._direct is None or not self._direct.take_directly(failure):
            self._put(failure)
        self.close()

    def _put(self, piece: Any) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(piece)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def __enter__(self) -> StreamAppender[PieceT]:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_value is None or not self.capture_errors or isinstance(exc_value, AppenderClosedError):
            self.close()
            return False
        if self._closed:  # closed early (finish_early): nobody can receive the error any more
            log_error_once(
                exc_value,
                self._log_level_for_errors,
                where(current_scope.get(), "an error occurred after the stream was closed"),
            )
        else:
            failure = Failure(cancelled_work_error(exc_value))
            if self._direct is None or not self._direct.take_directly(failure):
                self._put(failure)
            self.close()
        # A task's own cancellation must keep propagating; anything else is delivered to the consumer instead.
        return not is_own_cancellation(exc_value)

    async def __aenter__(self) -> None:
        raise RuntimeError("use `with appender:` (a plain `with`) to open a StreamAppender, not `async with`")

    async def __aexit__(self, *args: Any) -> None:  # pragma: no cover - __aenter__ always raises
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> StreamAppender[PieceT]:
        """Return ``self``, so the appender can be passed as a ``streamer``."""
        return self

    def __aiter__(self) -> StreamAppender[PieceT]:
        return self

    def _next_nowait(self) -> PieceT:
        """The next piece if it is in the queue already, otherwise `PENDING` (see `PENDING`)."""
        queue = self._queue
        if not queue:
            return PENDING  # type: ignore[no-any-return]
        piece = queue[0]
        if piece is _END:
            raise StopAsyncIteration  # the end marker stays: StopAsyncIteration forever
        queue.popleft()
        if type(piece) is Failure:
            piece.raise_error()
        return piece  # type: ignore[no-any-return]

    async def __anext__(self) -> PieceT:
        while not self._queue:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        queue = self._queue
        piece = queue[0]
        if piece is _END:
            raise StopAsyncIteration  # the end marker stays: StopAsyncIteration forever
        queue.popleft()
        if type(piece) is Failure:
            piece.raise_error()
        return piece  # type: ignore[no-any-return]
