"""`StreamedPromise`: a promise whose value also arrives as a replayable stream of pieces."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from miniagents.promising._context import PromisingContext
from miniagents.promising._failures import Failure, cancelled_work_error
from miniagents.promising._promise import Promise
from miniagents.promising._tasks import current_task, is_own_cancellation
from miniagents.promising.errors import FunctionNotProvidedError, WorkCancelledError
from miniagents.promising.sentinels import DEFAULT, END_OF_QUEUE, NO_VALUE, Sentinel

__all__ = ["PENDING", "StreamedPromise"]

WholeT = TypeVar("WholeT")
_StreamedPromiseT = TypeVar("_StreamedPromiseT", bound="StreamedPromise[Any, Any]")
PieceT = TypeVar("PieceT")

_END = END_OF_QUEUE

PENDING: Any = Sentinel("PENDING")
"""Returned by a source's ``_next_nowait()`` when the next piece can only be awaited.

A source (the async iterator a streamer returns) may offer ``_next_nowait()``: the next piece if it is there,
`PENDING` if it is not, `StopAsyncIteration` at the end, or the piece's error. Draining and pulling try it first
and await ``__anext__()`` only when it says `PENDING`: no coroutine per piece that is already there. A source may
also offer ``_next_batch_nowait()``: a list of the next pieces (at least one; no error and not the end), or
`PENDING`; a background drainer takes pieces that way, a whole collection in one step.

A source may also declare ``_cancel_safe = True``: cancelling a task that awaits its ``__anext__()`` leaves it
usable (the framework's own iterators are such). Any other source is awaited in a task of its own when a
consumer pulls it, so that the consumer's cancellation never breaks the source (an async generator that
receives a cancellation is finished, which would cut the stream short).
"""


class _ReplayIterator(Generic[PieceT]):
    """One consumer's position in a `StreamedPromise`; starts at piece 0."""

    __slots__ = ("_index", "_promise")

    _cancel_safe = True

    def __init__(self, promise: StreamedPromise[PieceT, Any]) -> None:
        self._promise = promise
        self._index = 0

    def __aiter__(self) -> _ReplayIterator[PieceT]:
        return self

    def _next_nowait(self) -> PieceT:
        """The next piece if it is there or can be fetched without awaiting, otherwise `PENDING` (see `PENDING`)."""
        index = self._index
        promise = self._promise
        pieces = promise._pieces
        if index >= len(pieces) and (promise._producing or not promise._pull_nowait(index)):
            return PENDING  # type: ignore[no-any-return]
        piece = pieces[index]
        if piece is _END:
            raise StopAsyncIteration
        self._index = index + 1
        if type(piece) is Failure:
            piece.raise_error()
        return piece  # type: ignore[no-any-return]

    def _take_present(self) -> list[PieceT] | tuple[()]:
        """The pieces recorded from this position on, up to an error or the end (not included); moves past them."""
        index = self._index
        pieces = self._promise._pieces
        if len(pieces) - index < 2:
            return ()  # (one piece at most: `_next_nowait` takes it as cheaply)
        present = pieces[index:]
        for offset, piece in enumerate(present):
            if piece is _END or type(piece) is Failure:
                del present[offset:]
                break
        self._index = index + len(present)
        return present

    async def __anext__(self) -> PieceT:
        promise = self._promise
        index = self._index
        pieces = promise._pieces
        while index >= len(pieces):
            if promise._producing:  # somebody else fetches: wait for the next append
                waiter = asyncio.get_running_loop().create_future()
                if promise._waiters is None:
                    promise._waiters = [waiter]
                else:
                    promise._waiters.append(waiter)
                await waiter  # if we are cancelled, only our own future is cancelled
            elif not promise._pull_nowait(index):
                await promise._apull(index)
        piece = pieces[index]
        if piece is _END:
            raise StopAsyncIteration
        self._index = index + 1
        if type(piece) is Failure:
            piece.raise_error()
        return piece  # type: ignore[no-any-return]


class StreamedPromise(Promise[WholeT], Generic[PieceT, WholeT]):
    """A promise whose value also arrives as a stream of pieces, replayable by any number of consumers.

    Args:
        streamer: ``streamer(promise)`` returning an async iterator of pieces; iterated once in total.
            Subclasses may override ``_streamer(self)`` instead.
        prefill_pieces: a finished list of pieces instead of a streamer.
        resolver: see `Promise`; independent of the stream.
        prefill_result: see `Promise`.
        start_asap: True drains the streamer in the background at the first chance and resolves the whole
            value too; False pulls pieces only when a consumer asks for them; `DEFAULT` asks the context.

    ``async for piece in promise`` yields the pieces from the first one, every time. An error raised by the
    streamer is recorded at its position and raised there to every consumer; iteration may go on afterwards
    with whatever the streamer yields next. Calling the promise (``promise()``) returns a fresh replay
    iterator, so a streamed promise can be the ``streamer`` of another one.

    Cancelling a consumer never shortens the stream: the pieces stay whole for every other and later consumer.
    Cancelling the *producer* (`cancel`, or the agent call it belongs to) ends the stream with a
    `WorkCancelledError` after the pieces produced so far.

    The states of the stream (``pieces`` is the list of pieces recorded so far):

    ====================  ==================  ===========================================================
    state                 ``_producing``      what a consumer that needs piece ``len(pieces)`` does
    ====================  ==================  ===========================================================
    idle (lazy)           False               pulls it: synchronously if the source has it at once
                                              (``_next_nowait``), otherwise awaits it (a source that is
                                              not cancel-safe in a fetch task of its own)
    pulled                True                another consumer's pull or fetch task is running: waits for
                                              the next append
    drained               True                a background task (``_adrain``) or other code
                                              (``produce_for(elsewhere=True)``) appends every piece: waits
    ended                 True                ``pieces[-1]`` is the end: raises ``StopAsyncIteration``
    ====================  ==================  ===========================================================

    An error is a `Failure` piece in any state; the end is always the last piece, and nothing follows it.

    Raises:
        ValueError: both ``streamer`` and ``prefill_pieces`` were given.
    """

    _resolve_after_stream = False
    """Subclasses whose value is computed from the stream resolve it right after draining (one task, not two)."""

    # Defaults shared through the class (see `Promise`); the lists are created per instance when needed.
    _waiters: list[asyncio.Future[None]] | None = None
    _end_waiters: list[asyncio.Future[None]] | None = None  # consumers of the whole stream, `_await_piece`
    _source: AsyncIterator[Any] | None = None
    _drained_in_background = False  # a dedicated task (`_adrain`) or other code is the producer
    _on_end: Callable[[], None] | None = None
    _work_owner: Any = None  # what `cancel` and `async with` stop (an agent call), see `belong_to`
    _drainer: asyncio.Task[None] | None = None  # the task of `_adrain`, when there is one

    def __init__(
        self,
        streamer: Callable[[Any], AsyncIterator[PieceT]] | None = None,
        prefill_pieces: Iterable[PieceT] | Sentinel = NO_VALUE,
        resolver: Callable[[Any], Awaitable[WholeT]] | None = None,
        prefill_result: WholeT | Sentinel = NO_VALUE,
        start_asap: bool | Sentinel = DEFAULT,
    ) -> None:
        if streamer is not None:
            if prefill_pieces is not NO_VALUE:
                raise ValueError("pass either `streamer` or `prefill_pieces` to a streamed promise, not both")
            self._streamer_function = streamer
        if prefill_pieces is NO_VALUE:
            self._pieces: list[Any] = []
            self._producing = False
        else:
            self._pieces = [*prefill_pieces, _END]  # type: ignore[misc]
            self._producing = True  # nothing left to produce
        super().__init__(start_asap=start_asap, resolver=resolver, prefill_result=prefill_result)

    # --- the state, as other layers see and change it -------------------------------------------------------

    @property
    def is_ended(self) -> bool:
        """Whether the stream has ended (every piece, error included, is recorded)."""
        pieces = self._pieces
        return bool(pieces) and pieces[-1] is _END

    @property
    def is_drained_in_background(self) -> bool:
        """Whether a background task or other code produces every piece (consumers only wait)."""
        return self._drained_in_background

    def produced_pieces(self) -> list[Any]:
        """The pieces recorded so far, errors as `Failure` records and the end as `END_OF_QUEUE` (do not change)."""
        return self._pieces

    def pull_present(self) -> bool:
        """Record every piece the source gives without awaiting, unless somebody else is producing right now.

        What a consumer's ``__anext__`` would fetch, without a consumer: a lazy promise's pieces that are there
        already (errors and the end included) are recorded now, so that a `set_on_piece` hook sees them now.

        Returns:
            Whether the stream has ended.
        """
        pieces = self._pieces
        while not (pieces and pieces[-1] is _END) and not self._producing and self._pull_nowait(len(pieces)):
            pass
        return bool(pieces) and pieces[-1] is _END

    def set_on_piece(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(piece)`` synchronously for every piece recorded from now on (errors and the end too).

        Set it before the stream is produced: the hook wraps this promise's own ``_append`` (so promises nobody
        observes pay nothing per piece).
        """
        append = type(self)._append

        def append_and_notify(piece: Any) -> None:
            append(self, piece)
            callback(piece)

        self._append = self.append_piece = append_and_notify  # type: ignore[method-assign]

    def clear_on_piece(self) -> None:
        """Stop calling the `set_on_piece` callback, and let go of it (the hook refers to this promise: a cycle)."""
        self.__dict__.pop("_append", None)
        self.__dict__.pop("append_piece", None)

    def belong_to(self, scope: Any, owner: Any) -> None:
        """Make ``scope`` own the work of this promise and ``owner`` what `cancel` and ``async with`` stop.

        ``owner`` has ``cancel()`` and an ``is_running`` property (an agent call for its reply sequence).
        """
        self._scope = scope
        self._work_owner = owner

    def produce_for(
        self,
        owner: Any,
        on_end: Callable[[], None],
        on_resolved: Callable[[], None],
        elsewhere: bool,
    ) -> None:
        """Set up a promise that ``owner`` (a `WorkScope` with ``cancel()`` and ``is_running``) produces.

        ``owner`` owns its work (see `belong_to`); ``on_end()`` is called when the stream ends and
        ``on_resolved()`` when the promise gets its value or error (once each, synchronously). With ``elsewhere``,
        no streamer is drained: other code appends every piece (`append_piece`) and consumers only wait; that
        code ends the stream eventually (`end_stream`) or hands over to `drain_in_background`. The promise must
        not have ended or been resolved yet.
        """
        if elsewhere:
            self._producing = True
            self._drained_in_background = True
        self._scope = self._work_owner = owner
        self._on_end = on_end
        self._on_resolved = on_resolved

    def start_draining(self) -> None:
        """Turn a lazy promise into one drained in the background from here (if nobody is pulling right now)."""
        if self._producing or self.is_ended:
            return
        self._producing = True
        self._drained_in_background = True
        self._drainer = self._context.start_soon(self._adrain(), scope=self._scope, fallback=self._end_cancelled)

    def end_stream(self, error: BaseException | None = None) -> None:
        """Record ``error`` (if any) and the end, unless the stream has ended already."""
        if self.is_ended:
            return
        if error is not None:
            self._append(Failure(error))
        self._append(_END)

    def drain_in_background(self, streamer: Callable[[Any], AsyncIterator[PieceT]]) -> None:
        """Hand production over to a background task that drains ``streamer`` (after `produce_for`)."""
        self._streamer_function = streamer
        self._drainer = self._context.start_soon(self._adrain(), fallback=self._end_cancelled)

    def _end_cancelled(self, error: BaseException) -> None:
        """The fallback of a producer task that was cancelled before it could end the stream itself."""
        if not self.is_ended:
            self.end_stream(cancelled_work_error(error))
            if self._resolve_after_stream and not self.is_resolved:
                self.resolve_after_the_end()

    def track_task(self, task: asyncio.Task[Any]) -> None:
        """Let the context wait for ``task`` (work for this promise) and the promise's scope cancel it."""
        context = self._context
        context.child_tasks.add(task)
        scope = self._scope
        if scope is not None:
            scope.adopt_task(task)
        task.add_done_callback(functools.partial(_forget_task, context, scope))

    def scope_cancel_error(self) -> BaseException | None:
        """The error the work scope of this (lazy) promise was cancelled with, if it was."""
        scope = self._scope
        return None if scope is None else scope.cancel_error

    def cancel(self) -> None:
        """Stop producing: the stream ends with a `WorkCancelledError` after the pieces produced so far.

        The reply sequence of an agent call cancels the call instead (see ``AgentCall.cancel``). Nothing happens
        if the stream has ended already (or the call has).
        """
        owner = self._work_owner
        if owner is not None:
            owner.cancel()
            return
        if self.is_ended:
            return
        error = WorkCancelledError(f"this {type(self).__name__} was cancelled")
        drainer = self._drainer
        self._end_cancelled(error)
        if drainer is not None and not drainer.done():
            drainer.cancel(error)  # (it stops awaiting the source; the end is recorded already)
            return
        source, self._source = self._source, None
        if source is not None and hasattr(source, "aclose"):
            self._context.start_soon(_aclose_quietly(source))

    async def __aenter__(self: _StreamedPromiseT) -> _StreamedPromiseT:
        """Scope the work: leaving the ``async with`` block while it still runs cancels it (see `cancel`)."""
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        owner = self._work_owner
        if owner.is_running if owner is not None else not self.is_ended:
            self.cancel()

    # --- production -------------------------------------------------------------------------------------------

    def _start_in_background(self, context: PromisingContext) -> None:
        if self._producing:  # prefilled pieces: only the value is left to compute
            context.start_soon(self.aresolve_in_background())
            return
        self._producing = True
        self._drained_in_background = True
        self._drainer = context.start_soon(self._adrain(), fallback=self._end_cancelled)
        if not self._resolve_after_stream:
            context.start_soon(self.aresolve_in_background())

    def resolve_after_the_end(self, start_task: bool = True) -> bool:
        """What `_adrain` does once the stream has ended, for a promise whose pieces were produced elsewhere.

        Returns:
            Whether ``aresolve_in_background()`` is still to be awaited, which the caller promised to do
            when it passed ``start_task=False`` (otherwise it runs in a task of its own).
        """
        if self._result is not NO_VALUE:
            return False
        if self._resolving:  # the same hand-over as in `aresolve_in_background`
            self._handed_over = True
            return False
        if self._resolve_now():
            return False
        if not start_task:
            return True
        self._context.start_soon(self.aresolve_in_background())
        return False

    def _resolve_now(self) -> bool:
        """Resolve synchronously if the value can be computed without awaiting; return whether it was."""
        return False

    def _streamer(self) -> AsyncIterator[PieceT]:
        streamer = getattr(self, "_streamer_function", None)
        if streamer is None:
            raise FunctionNotProvidedError(
                f"{type(self).__name__} has no streamer: pass `streamer=` or override `_streamer()`"
            )
        return streamer(self)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[PieceT]:
        return _ReplayIterator(self)

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncIterator[PieceT]:
        """Return a fresh replay iterator (so the promise can be another promise's ``streamer``)."""
        return _ReplayIterator(self)

    def _open_source(self) -> AsyncIterator[PieceT] | None:
        """Create the streamer's iterator, or record the failure and the end (``[error, stop]``)."""
        try:
            source = self._streamer()
            if not hasattr(type(source), "__anext__"):
                if inspect.iscoroutine(source):
                    source.close()  # an `async def` that is not a generator: never awaited, so no warning
                raise TypeError(
                    f"the streamer of {type(self).__name__} returned {type(source).__name__!r}, "
                    f"not an async iterator: make it an `async def` generator"
                )
        except BaseException as error:
            self._append(Failure(cancelled_work_error(error)))
            self._append(_END)
            if is_own_cancellation(error):
                raise
            return None
        self._source = source
        self._streamer_function = None  # type: ignore[assignment]  # called once: drop it (it often refers to us)
        return source

    async def _adrain(self) -> None:
        """Background producer (start_asap): drain the whole streamer, then resolve if the value needs it."""
        try:
            if self.is_ended:  # cancelled before it ran
                return
            source = self._source or self._open_source()
            if source is not None:
                append = self._append
                pieces = self._pieces
                next_piece = type(source).__anext__
                next_nowait = getattr(source, "_next_nowait", None)
                next_batch = getattr(source, "_next_batch_nowait", None)
                while True:  # like `_apull`, but as the only producer (so its own cancellation ends the stream)
                    try:
                        if next_batch is not None:
                            if (batch := next_batch()) is not PENDING:
                                self._extend(batch)
                                continue
                            piece = await next_piece(source)
                        elif next_nowait is None or (piece := next_nowait()) is PENDING:
                            piece = await next_piece(source)
                    except StopAsyncIteration:
                        if not pieces or pieces[-1] is not _END:  # (the source may have ended us already)
                            append(_END)
                        break
                    except BaseException as error:
                        if pieces and pieces[-1] is _END:  # ended from outside (`cancel`): we were cancelled with it
                            if is_own_cancellation(error):
                                _handled_own_cancellation()
                            return
                        if is_own_cancellation(error):
                            append(Failure(cancelled_work_error(error)))
                            append(_END)  # the only producer is gone: terminate so nobody waits forever
                            if self._resolve_after_stream:
                                self.resolve_after_the_end()
                            _handled_own_cancellation()
                            return
                        append(Failure(error))
                        continue
                    append(piece)  # (`cancel` ends the stream from outside only together with cancelling us)
            if self._resolve_after_stream:
                await self.aresolve_in_background()
        finally:
            self._drainer = None  # (a finished task is not kept alive by the promise)

    def _append(self, piece: Any) -> None:
        self._pieces.append(piece)
        if self._waiters:
            self._wake_waiters()
        if piece is _END:
            self._source = None  # finished: let it go now rather than through the garbage collector
            if self._scope is not None:
                self._scope = None  # (the scope often refers back to us: an agent call to its replies)
            if self._end_waiters:
                self._wake_end_waiters()
            on_end = self._on_end
            if on_end is not None:
                self._on_end = None
                on_end()
        elif type(piece) is Failure and self._end_waiters:
            self._wake_end_waiters()

    def _extend(self, batch: list[Any]) -> None:
        """`_append` for several pieces at once, none of them an error or the end."""
        if "_append" in self.__dict__:  # a `set_on_piece` hook: it sees each piece
            for piece in batch:
                self._append(piece)
            return
        self._pieces += batch
        if self._waiters:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    append_piece = _append
    """``append_piece(piece)``: record the next piece (a `Failure` for an error, `END_OF_QUEUE` for the end) and
    wake the consumers (for code that produces the pieces elsewhere, see `produce_for`)."""

    def _wake_end_waiters(self) -> None:
        waiters = self._end_waiters
        if waiters:
            self._end_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def acollect_pieces(self) -> list[PieceT]:
        """Return all the pieces, like iterating to the end, but waking up only at the end (or at an error).

        Raises:
            BaseException: the first error recorded in the stream.
        """
        pieces = self._pieces
        collected: list[PieceT] = []
        index = 0
        while True:
            if index >= len(pieces):
                if self._producing or not self._pull_nowait(index):
                    await self._await_piece(index, until_end=True)
                continue
            piece = pieces[index]
            if piece is _END:
                return collected
            if type(piece) is Failure:
                piece.raise_error()
            collected.append(piece)
            index += 1

    async def _await_piece(self, index: int, until_end: bool = False) -> None:
        """Wait until piece ``index`` exists, fetching it ourselves when nobody else is producing.

        With ``until_end`` (for consumers that need the whole stream anyway, like a resolver that joins the
        pieces), while somebody else produces, sleep until the stream ends or records an error instead of waking
        up for every piece. Pieces fetched by a consumer (nobody drains in the background) wake everybody.
        """
        pieces = self._pieces
        while index >= len(pieces):
            if self._producing:
                waiter = asyncio.get_running_loop().create_future()
                if until_end:
                    self._end_waiters = [*(self._end_waiters or ()), waiter]
                else:
                    self._waiters = [*(self._waiters or ()), waiter]
                await waiter  # if we are cancelled, only our own future is cancelled
                continue
            await self._apull(index)

    def _pull_nowait(self, index: int) -> bool:
        """Like `_apull` (nobody else is producing), but only if the source gives a piece without awaiting.

        Returns:
            Whether the stream advanced (a piece, an error or the end was recorded).
        """
        pieces = self._pieces
        self._producing = True  # (a source that pulls from us again, synchronously, sees us busy)
        try:
            source = self._source or self._open_source()
            if source is None or index < len(pieces):  # could not be opened: the error and the end are recorded
                return True
            next_nowait = getattr(source, "_next_nowait", None)
            if next_nowait is None:
                return False
            try:
                piece = next_nowait()
            except StopAsyncIteration:
                self._append(_END)
                return True
            except BaseException as error:
                if is_own_cancellation(error):
                    raise
                self._append(Failure(error))
                return True
            if piece is PENDING:
                return False
            self._append(piece)
            return True
        finally:
            if not pieces or pieces[-1] is not _END:
                self._producing = False

    async def _apull(self, index: int) -> None:
        """Fetch one more piece as a consumer, because nobody else is producing (piece ``index`` is missing)."""
        pieces = self._pieces
        self._producing = True
        fetching_elsewhere = False
        try:
            source = self._source or self._open_source()
            if source is not None and index >= len(pieces):  # recheck after opening (W10)
                scope = self._scope
                if scope is not None and scope.cancel_requested:
                    self._end_cancelled(scope.cancel_error)  # type: ignore[arg-type]  # (not None: checked just above)
                    return
                if not getattr(source, "_cancel_safe", False):
                    # Awaited in a task of its own: our cancellation must not reach (and finish) the source.
                    fetching_elsewhere = True
                    self._context.start_soon(self._afetch(source), scope=scope, fallback=self._end_cancelled)
                    return
                try:
                    next_nowait = getattr(source, "_next_nowait", None)
                    if next_nowait is None or (piece := next_nowait()) is PENDING:
                        piece = await type(source).__anext__(source)
                except StopAsyncIteration:
                    self._append(_END)
                except BaseException as error:
                    if is_own_cancellation(error):
                        raise  # a consumer was cancelled while fetching: the source is cancel-safe, all is well
                    self._append(Failure(error))
                else:
                    self._append(piece)
        finally:
            if not fetching_elsewhere:
                self._after_fetch()

    async def _afetch(self, source: AsyncIterator[Any]) -> None:
        """Fetch one piece from a source that is not cancel-safe, in a task of its own (see `_apull`)."""
        try:
            piece = await type(source).__anext__(source)
        except StopAsyncIteration:
            self.end_stream()
        except BaseException as error:
            if is_own_cancellation(error):  # the producing scope was cancelled (or the context interrupted)
                self._end_cancelled(error)
                _handled_own_cancellation()
            if not self.is_ended:
                self._append(Failure(error))
        else:
            if not self.is_ended:
                self._append(piece)
        finally:
            self._after_fetch()

    def _after_fetch(self) -> None:
        pieces = self._pieces
        if not pieces or pieces[-1] is not _END:
            self._producing = False
        waiters = self._waiters
        if waiters:  # wake the others: one of them may have to fetch now
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._wake_end_waiters()


def _handled_own_cancellation() -> None:
    """The producer recorded its own cancellation in the stream: the task ends normally, keeping no exception.

    (A task that ends cancelled keeps its `asyncio.CancelledError`, and with it the frames of its traceback.)
    """
    task = current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


def _forget_task(context: PromisingContext, scope: Any, task: asyncio.Task[Any]) -> None:
    context.child_tasks.discard(task)
    if scope is not None:
        scope.release_task(task)
    if not task.cancelled():
        task.exception()  # retrieved by whoever awaits it next (see `track_task`); never "never retrieved"


async def _aclose_quietly(source: Any) -> None:
    try:
        await source.aclose()
    except BaseException as error:  # a generator that was running or fails while closing: nothing to report
        if is_own_cancellation(error):
            raise
