"""Promises that resolve once, streamed promises that replay, push-style appenders, and the context that owns them.

Every object here needs an active `PromisingContext` (or a subclass such as `MiniAgents`), because background work
is scheduled through it and leaving the context waits for all of that work.

The one rule this module keeps everywhere: a producer that fails with any ``BaseException`` delivers the failure to
its consumers (as a result or as a piece) and always terminates its stream, so no consumer waits forever. The only
exception that is never stored is the *own* cancellation of the task doing the work (`asyncio.CancelledError` while
that task is being cancelled): it propagates and leaves the promise unresolved.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from types import BuiltinFunctionType, CoroutineType, TracebackType
from typing import Any, Generic, Protocol, TypeVar

from miniagents.promising.errors import (
    AppenderClosedError,
    AppenderNotOpenError,
    FunctionNotProvidedError,
    NoActiveContextError,
    WrongActiveContextError,
)
from miniagents.promising.sentinels import DEFAULT, END_OF_QUEUE, NO_VALUE, Sentinel

__all__ = ["Promise", "Promising", "PromisingContext", "StreamAppender", "StreamedPromise"]

logger = logging.getLogger("miniagents")

WholeT = TypeVar("WholeT")
PieceT = TypeVar("PieceT")
ContextT = TypeVar("ContextT", bound="PromisingContext")

PromiseResolvedHandler = Callable[["Promise[Any]", Any], Awaitable[Any]]

_active_context: contextvars.ContextVar[PromisingContext | None] = contextvars.ContextVar(
    "miniagents_active_context", default=None
)

_BACKGROUND_ERROR_MESSAGE = "an error occurred in an async background task"

_tasks_by_loop: dict[Any, asyncio.Task[Any]] | None = getattr(asyncio.tasks, "_current_tasks", None)


def _current_task() -> Any:
    """`asyncio.current_task()`, which is a (slower) Python function before Python 3.12."""
    if _tasks_by_loop is None:  # pragma: no cover - an asyncio without this table
        return asyncio.current_task()
    return _tasks_by_loop.get(asyncio.get_running_loop())


if isinstance(asyncio.current_task, BuiltinFunctionType) or not isinstance(_tasks_by_loop, dict):
    _current_task = asyncio.current_task  # a C function already (Python 3.12+), or no table

_LOGGED_MARK = "__miniagents_logged__"


def log_error_once(error: BaseException, level: int, message: str = _BACKGROUND_ERROR_MESSAGE) -> None:
    """Log an ``Exception`` at ``level`` unless this very instance was logged before.

    ``BaseException``s that are not ``Exception``s (``KeyboardInterrupt``, cancellation …) are never logged.
    """
    if not isinstance(error, Exception) or getattr(error, _LOGGED_MARK, False):
        return
    try:
        setattr(error, _LOGGED_MARK, True)
    except AttributeError:  # pragma: no cover - exceptions with __slots__ and no __dict__
        pass
    logger.log(level, message, exc_info=error)


def is_own_cancellation(error: BaseException) -> bool:
    """Tell whether ``error`` is the cancellation of the task that is running right now."""
    if not isinstance(error, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    if task is None:
        return True
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0  # Python 3.10 has no Task.cancelling(): assume our own


def require_coroutine_function(handler: Any, what: str) -> None:
    """Raise ``TypeError`` unless ``handler`` is an ``async def`` function (or an object with an async ``__call__``)."""
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None)):  # noqa: B004
        return
    raise TypeError(f"{what} must be an `async def` function, got {handler!r}; define it with `async def`")


def _as_handler_list(handlers: Any, what: str) -> list[Any]:
    """Accept one handler or an iterable of handlers and check that each is a coroutine function."""
    handler_list = [handlers] if callable(handlers) else list(handlers or ())
    for handler in handler_list:
        require_coroutine_function(handler, what)
    return handler_list


class PromisingContext:
    """The context that owns background tasks and promise-resolution events (alias `Promising`).

    Activate it with ``async with PromisingContext():``, with ``ctx.run(main())`` (blocking) or with
    ``ctx.activate()`` … ``await ctx.afinalize()``. Leaving the context waits for every task it started.
    The active context lives in a `contextvars.ContextVar`, so it is seen by the current task and by tasks
    created from it afterwards.

    Args:
        start_everything_asap_by_default: what ``start_asap=DEFAULT`` means for promises created in this
            context. True schedules their work in the background right away; False makes them lazy.
        appenders_capture_errors_by_default: what ``capture_errors=DEFAULT`` means for `StreamAppender`.
        longer_hash_keys: make `Frozen.hash_key` 64 hex characters long instead of 40.
        log_level_for_errors: the `logging` level at which errors of background work are logged (once each).
        on_promise_resolved: one ``async def handler(promise, result)`` or an iterable of them, see
            `on_promise_resolved`.

    Raises:
        TypeError: a handler is not an ``async def`` function.
    """

    def __init__(
        self,
        start_everything_asap_by_default: bool = True,
        appenders_capture_errors_by_default: bool = False,
        longer_hash_keys: bool = False,
        log_level_for_errors: int = logging.ERROR,
        on_promise_resolved: PromiseResolvedHandler | Iterable[PromiseResolvedHandler] = (),
    ) -> None:
        self.parent: PromisingContext | None = _active_context.get()
        self.start_everything_asap_by_default = start_everything_asap_by_default
        self.appenders_capture_errors_by_default = appenders_capture_errors_by_default
        self.longer_hash_keys = longer_hash_keys
        self.log_level_for_errors = log_level_for_errors
        self.child_tasks: set[asyncio.Task[Any]] = set()
        self._on_promise_resolved_handlers: list[PromiseResolvedHandler] = _as_handler_list(
            on_promise_resolved, "an on_promise_resolved handler"
        )
        self._has_handlers = bool(self._on_promise_resolved_handlers)
        """Whether `_dispatch_promise_resolved` has anything to do (set by every handler registration)."""
        self._previous_context_token: contextvars.Token[PromisingContext | None] | None = None

    @classmethod
    def get_current(cls: type[ContextT]) -> ContextT:
        """Return the active context.

        Raises:
            NoActiveContextError: no context is active in this task.
            WrongActiveContextError: the active context is not an instance of ``cls``.
        """
        context = _active_context.get()
        if context is None:
            raise NoActiveContextError(
                f"no active {cls.__name__}: wrap your code in `async with {cls.__name__}():` "
                f"or run it with `{cls.__name__}().run(main())`"
            )
        if not isinstance(context, cls):
            raise WrongActiveContextError(
                f"the active context is a {type(context).__name__}, not a {cls.__name__}: "
                f"activate a {cls.__name__} instead"
            )
        return context

    def on_promise_resolved(self, handler: PromiseResolvedHandler) -> PromiseResolvedHandler:
        """Register ``async def handler(promise, result)``; usable as a decorator (returns the handler).

        Whenever any promise gets its result while this context (or a descendant of it) is active, the handler
        is scheduled as a background task with the promise and its result (the exception object if resolution
        failed). Handlers never run inline.

        Raises:
            TypeError: ``handler`` is not an ``async def`` function.
        """
        require_coroutine_function(handler, "an on_promise_resolved handler")
        self._on_promise_resolved_handlers.append(handler)
        self._has_handlers = True
        return handler

    def _dispatch_promise_resolved(self, promise: Promise[Any], result: Any) -> None:
        """Schedule this context's handlers for a resolved promise (subclasses extend this)."""
        for handler in self._on_promise_resolved_handlers:
            self.start_asap(
                handler(promise, result), suppress_errors=True, log_level_for_errors=self.log_level_for_errors
            )

    def start_asap(
        self,
        awaitable: Awaitable[WholeT],
        suppress_errors: bool = False,
        log_level_for_errors: int = logging.DEBUG,
    ) -> asyncio.Task[Any]:
        """Run ``awaitable`` as a background task that leaving this context will wait for.

        An ``Exception`` that ends the task is logged (once) at ``log_level_for_errors``; other
        ``BaseException``s are not logged. Either is re-raised inside the task (awaiting the task raises it)
        unless ``suppress_errors`` is true, in which case the task returns None instead. The task's own
        cancellation is never suppressed.

        Returns:
            The `asyncio.Task`.
        """
        if suppress_errors:
            return self._create_task(_suppress_errors(awaitable, log_level_for_errors), log_level_for_errors)
        return self._create_task(awaitable, log_level_for_errors)

    def _create_task(self, awaitable: Awaitable[Any], log_level_for_errors: int) -> asyncio.Task[Any]:
        if inspect.iscoroutine(awaitable):
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(awaitable)
        else:
            task = asyncio.ensure_future(awaitable)
        self.child_tasks.add(task)
        task.add_done_callback(functools.partial(self._on_task_done, log_level_for_errors))
        return task

    def _on_task_done(self, log_level_for_errors: int, task: asyncio.Task[Any]) -> None:
        self.child_tasks.discard(task)
        if not task.cancelled():
            error = task.exception()  # marks it as retrieved: it is logged here, once
            if error is not None:
                log_error_once(error, log_level_for_errors)

    def _start_soon(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Schedule the framework's own background work (which handles its own errors).

        The task leaves `child_tasks` by itself when it ends, instead of through a done callback (which costs a
        partial, a callback registration and one more event-loop callback per task).
        """
        self.child_tasks.add(asyncio.get_running_loop().create_task(self._arun_own(coroutine)))

    async def _arun_own(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except BaseException as error:
            if is_own_cancellation(error):
                raise
            log_error_once(error, self.log_level_for_errors)  # what `_on_task_done` would do (the task is ending)
        finally:
            self.child_tasks.discard(_current_task())

    async def aflush_tasks(self) -> None:
        """Wait until every background task of this context is done, including tasks spawned meanwhile."""
        while self.child_tasks:
            tasks = list(self.child_tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
            # A task that was cancelled before it ever ran never reached the `finally` that removes it.
            self.child_tasks.difference_update([task for task in tasks if task.done()])

    def activate(self: ContextT) -> ContextT:
        """Make this context the active one for the current task (and tasks created from it later).

        Returns:
            ``self``.

        Raises:
            RuntimeError: it is already active (activation is not reentrant).
        """
        if self._previous_context_token is not None:
            raise RuntimeError(f"this {type(self).__name__} is already active: it cannot be activated twice")
        self._previous_context_token = _active_context.set(self)
        return self

    async def afinalize(self) -> None:
        """Wait for all background tasks, then restore the previously active context."""
        try:
            await self.aflush_tasks()
        finally:
            self._deactivate()

    def _deactivate(self) -> None:
        token = self._previous_context_token
        if token is None:
            return
        self._previous_context_token = None
        try:
            _active_context.reset(token)
        except ValueError:  # finalized in another task than the one that activated it
            old_value = token.old_value
            _active_context.set(None if old_value is contextvars.Token.MISSING else old_value)

    async def __aenter__(self: ContextT) -> ContextT:
        return self.activate()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.afinalize()

    def __enter__(self) -> None:
        raise RuntimeError(f"use `async with {type(self).__name__}():` instead of `with {type(self).__name__}():`")

    def __exit__(self, *args: Any) -> None:  # pragma: no cover - __enter__ always raises
        pass

    async def arun(self, awaitable: Awaitable[WholeT]) -> WholeT:
        """Activate this context, await ``awaitable``, finalize the context and return the result."""
        async with self:
            return await awaitable

    def run(self, awaitable: Awaitable[WholeT]) -> WholeT:
        """Blocking: run ``awaitable`` inside this context on a new event loop (`asyncio.run`).

        Raises:
            RuntimeError: an event loop is already running in this thread (use ``await ctx.arun(...)``).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop_is_running = False
        else:
            loop_is_running = True
        if not loop_is_running:  # outside the `except` block, so errors of the run are not chained to it
            return asyncio.run(self.arun(awaitable))
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            f"{type(self).__name__}.run() cannot be called from a running event loop: "
            f"use `await {type(self).__name__}().arun(...)` or `async with {type(self).__name__}():` instead"
        )


Promising = PromisingContext


async def _suppress_errors(awaitable: Awaitable[WholeT], log_level_for_errors: int) -> WholeT | None:
    try:
        return await awaitable
    except BaseException as error:
        if is_own_cancellation(error):
            raise
        log_error_once(error, log_level_for_errors)
        return None


def _fire_promise_resolved(promise: Promise[Any], result: Any) -> None:
    context = _active_context.get()
    while context is not None:
        if context._has_handlers:
            context._dispatch_promise_resolved(promise, result)
        context = context.parent


class Promise(Generic[WholeT]):
    """A value computed at most once, by a resolver, and cached.

    Args:
        start_asap: resolve in the background right away (True), only when awaited (False), or as the active
            context says (`DEFAULT`).
        resolver: ``resolver(promise)`` returning an awaitable of the value. Subclasses may override
            ``_resolver(self)`` instead.
        prefill_result: the value, known already; the promise is resolved in the constructor.

    Awaiting the promise (or `aresolve`) returns the value, the same object every time, or raises the same
    exception instance every time if the resolver failed.

    Raises:
        ValueError: both ``resolver`` and ``prefill_result`` were given.
        NoActiveContextError: no context is active.
    """

    # Defaults shared through the class, set on an instance only when they change: fewer stores per promise.
    _failed = False
    _resolving = False  # the resolver is running (a cheaper lock than asyncio.Lock, see `aresolve`)
    _resolve_waiters: list[asyncio.Future[None]] | None = None
    _handed_over = False  # a background resolution left the work to the running resolver

    def __init__(
        self,
        start_asap: bool | Sentinel = DEFAULT,
        resolver: Callable[[Any], Awaitable[WholeT]] | None = None,
        prefill_result: WholeT | Sentinel = NO_VALUE,
    ) -> None:
        context = _active_context.get()
        if context is None:
            context = PromisingContext.get_current()  # raises NoActiveContextError with a hint
        self._context = context
        if resolver is not None:
            if prefill_result is not NO_VALUE:
                raise ValueError("pass either `resolver` or `prefill_result` to a promise, not both")
            self._resolver_function = resolver
        self._result: Any = prefill_result
        if prefill_result is not NO_VALUE:
            if context._has_handlers or context.parent is not None:  # (`context` is the active one)
                _fire_promise_resolved(self, prefill_result)
        elif context.start_everything_asap_by_default if start_asap is DEFAULT else start_asap:
            self._start_in_background(context)

    def _start_in_background(self, context: PromisingContext) -> None:
        context._start_soon(self._aresolve_in_background())

    async def _aresolve_in_background(self) -> None:
        """Resolve for nobody in particular: a failure is logged once, never raised out of the task."""
        if self._resolving:
            # Somebody is running the resolver right now: don't wait for them, let them log a failure or, if
            # they are cancelled, start this again (see `aresolve`).
            self._handed_over = True
            return
        try:
            await self.aresolve()
        except BaseException as error:
            if is_own_cancellation(error):
                raise
            log_error_once(error, self._context.log_level_for_errors)

    def _resolver(self) -> Awaitable[WholeT]:
        resolver = getattr(self, "_resolver_function", None)
        if resolver is None:
            raise FunctionNotProvidedError(
                f"{type(self).__name__} has no resolver: pass `resolver=` or override `_resolver()`"
            )
        return resolver(self)  # type: ignore[no-any-return]

    @property
    def is_resolved(self) -> bool:
        """Whether the promise already holds its value or its error."""
        return self._result is not NO_VALUE

    async def aresolve(self) -> WholeT:
        """Resolve the promise (once) and return its value.

        Raises:
            BaseException: whatever the resolver raised, the same instance on every call.
        """
        while self._result is NO_VALUE:
            if self._resolving:  # somebody else runs the resolver: wait for them (and take over if cancelled)
                waiter = asyncio.get_running_loop().create_future()
                self._resolve_waiters = [*(self._resolve_waiters or ()), waiter]
                await waiter
                continue
            self._resolving = True
            try:
                try:  # (the resolver runs inline here: one coroutine less per resolution)
                    awaitable = self._resolver()
                    if type(awaitable) is not CoroutineType and not inspect.isawaitable(awaitable):
                        raise TypeError(
                            f"the resolver of {type(self).__name__} returned {awaitable!r}, not an awaitable"
                        )
                    result = await awaitable
                except asyncio.CancelledError:
                    raise  # never stored as a result: the promise stays unresolved
                except BaseException as error:
                    self._failed = True
                    self._result = error
                    _fire_promise_resolved(self, error)
                else:
                    self._result = result
                    _fire_promise_resolved(self, result)
            finally:
                self._resolving = False
                waiters = self._resolve_waiters
                if waiters:
                    self._resolve_waiters = None
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                if self._handed_over:
                    self._after_hand_over(someone_takes_over=bool(waiters))
        if self._failed:
            raise self._result
        return self._result  # type: ignore[no-any-return]

    def _after_hand_over(self, someone_takes_over: bool) -> None:
        """Do what the background resolution that left the work to this resolver would have done."""
        if self._result is NO_VALUE:  # the resolver was cancelled
            if not someone_takes_over:  # (a woken waiter runs the resolver next, and then comes here)
                self._handed_over = False
                self._context._start_soon(self._aresolve_in_background())
        elif self._failed:
            log_error_once(self._result, self._context.log_level_for_errors)

    def __await__(self) -> Any:
        if self._result is NO_VALUE:
            return self.aresolve().__await__()
        return _resolved_already(self)  # no coroutine needed


def _resolved_already(promise: Promise[Any]) -> Any:
    """The ``__await__`` iterator of a resolved promise: it gives the value (or raises the error) at once."""
    if promise._failed:
        raise promise._result
    return promise._result
    yield  # a generator function  # noqa: RUF100


class _Failure:
    """A recorded error inside a stream: raised when a consumer reaches its position."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = END_OF_QUEUE

PENDING: Any = Sentinel("PENDING")
"""Internal: returned by a source's ``_next_nowait()`` when the next piece can only be awaited.

A source (the async iterator a streamer returns) may offer ``_next_nowait()``: the next piece if it is there,
`PENDING` if it is not, `StopAsyncIteration` at the end, or the piece's error. Draining and pulling try it first
and await ``__anext__()`` only when it says `PENDING`: no coroutine per piece that is already there.
"""


class _ReplayIterator(Generic[PieceT]):
    """One consumer's position in a `StreamedPromise`; starts at piece 0."""

    __slots__ = ("_index", "_promise")

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
        if type(piece) is _Failure:
            raise piece.error
        return piece  # type: ignore[no-any-return]

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
        if type(piece) is _Failure:
            raise piece.error
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

    Raises:
        ValueError: both ``streamer`` and ``prefill_pieces`` were given.
    """

    _resolve_after_stream = False
    """Subclasses whose value is computed from the stream resolve it right after draining (one task, not two)."""

    # Defaults shared through the class (see `Promise`); the lists are created per instance when needed.
    _waiters: list[asyncio.Future[None]] | None = None
    _end_waiters: list[asyncio.Future[None]] | None = None  # consumers of the whole stream, `_await_piece`
    _source: AsyncIterator[Any] | None = None
    _drained_in_background = False  # a dedicated task (`_adrain`) is the producer

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

    def _start_in_background(self, context: PromisingContext) -> None:
        if self._producing:  # prefilled pieces: only the value is left to compute
            context._start_soon(self._aresolve_in_background())
            return
        self._producing = True
        self._drained_in_background = True
        context._start_soon(self._adrain())
        if not self._resolve_after_stream:
            context._start_soon(self._aresolve_in_background())

    def _produce_elsewhere(self) -> None:
        """Instead of `_start_in_background`: the pieces will be appended by other code, consumers only wait.

        That code appends the end eventually, then calls `_resolve_after_the_end`, or it starts `_adrain`.
        """
        self._producing = True
        self._drained_in_background = True

    def _resolve_after_the_end(self, start_task: bool = True) -> bool:
        """What `_adrain` does once the stream has ended, for a promise whose pieces were `_produce_elsewhere`.

        Returns:
            Whether ``_aresolve_in_background()`` is still to be awaited, which the caller promised to do
            when it passed ``start_task=False`` (otherwise it runs in a task of its own).
        """
        if self._result is not NO_VALUE:
            return False
        if self._resolving:  # the same hand-over as in `_aresolve_in_background`
            self._handed_over = True
            return False
        if self._resolve_now():
            return False
        if not start_task:
            return True
        self._context._start_soon(self._aresolve_in_background())
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
            self._append(_Failure(error))
            self._append(_END)
            if is_own_cancellation(error):
                raise
            return None
        self._source = source
        self._streamer_function = None  # type: ignore[assignment]  # called once: drop it (it often refers to us)
        return source

    async def _adrain(self) -> None:
        """Background producer (start_asap): drain the whole streamer, then resolve if the value needs it."""
        source = self._open_source()
        if source is not None:
            append = self._append
            next_piece = type(source).__anext__
            next_nowait = getattr(source, "_next_nowait", None)
            while True:  # like `_apull`, but as the only producer (so its own cancellation ends the stream)
                try:
                    if next_nowait is None or (piece := next_nowait()) is PENDING:
                        piece = await next_piece(source)
                except StopAsyncIteration:
                    if not self._pieces or self._pieces[-1] is not _END:  # (the source may have ended us already)
                        append(_END)
                    break
                except BaseException as error:
                    append(_Failure(error))
                    if is_own_cancellation(error):
                        append(_END)  # the only producer is gone: terminate so nobody waits forever
                        raise
                    continue
                append(piece)
        if self._resolve_after_stream:
            await self._aresolve_in_background()

    def _append(self, piece: Any) -> None:
        self._pieces.append(piece)
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if piece is _END:
            self._source = None  # finished: let it go now rather than through the garbage collector
            if self._end_waiters:
                self._wake_end_waiters()
        elif type(piece) is _Failure and self._end_waiters:
            self._wake_end_waiters()

    def _wake_end_waiters(self) -> None:
        waiters = self._end_waiters
        if waiters:
            self._end_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _acollect_pieces(self) -> list[PieceT]:
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
            if type(piece) is _Failure:
                raise piece.error
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
                self._append(_Failure(error))
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
        try:
            source = self._source or self._open_source()
            if source is not None and index >= len(pieces):  # recheck after opening (W10)
                try:
                    next_nowait = getattr(source, "_next_nowait", None)
                    if next_nowait is None or (piece := next_nowait()) is PENDING:
                        piece = await type(source).__anext__(source)
                except StopAsyncIteration:
                    self._append(_END)
                except BaseException as error:
                    if is_own_cancellation(error):
                        raise  # a consumer was cancelled while fetching: the stream stays usable for the others
                    self._append(_Failure(error))
                else:
                    self._append(piece)
        finally:
            if not pieces or pieces[-1] is not _END:
                self._producing = False
            waiters = self._waiters
            if waiters:  # wake the others: one of them may have to fetch now
                self._waiters = None
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            self._wake_end_waiters()


class _DirectTaker(Protocol):
    """The consumer of a `StreamAppender` that may take pieces directly (see `StreamAppender._direct`)."""

    def _take_directly(self, item: Any) -> bool:
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
        context = _active_context.get()
        if capture_errors is DEFAULT:
            if context is None:
                context = PromisingContext.get_current()  # raises NoActiveContextError with a hint
            capture_errors = context.appenders_capture_errors_by_default
        self.capture_errors: bool = bool(capture_errors)
        self._log_level_for_errors = logging.ERROR if context is None else context.log_level_for_errors
        self._queue: deque[Any] | None = None  # created with the first piece: fewer objects per appender
        self._waiter: asyncio.Future[None] | None = None
        self._direct: _DirectTaker | None = None
        """Set by a consumer that may take a piece (or the end, or an error) directly, without the queue; its
        ``_take_directly(item)`` returns whether it did (see `append`, `close`)."""
        self._was_open = False
        self._closed = False

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
        if direct is not None and direct._take_directly(piece):
            return self  # the consumer took it directly: nobody has to be woken up for it
        self._put(piece)
        return self

    def close(self) -> None:
        """End the stream (idempotent)."""
        if not self._closed:
            self._closed = True
            direct = self._direct
            if direct is not None:
                direct._take_directly(_END)  # the end may reach the consumer's consumers now; the consumer is
                # still woken below
            self._put(_END)

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
            log_error_once(exc_value, self._log_level_for_errors, "an error occurred after the stream was closed")
        else:
            failure = _Failure(exc_value)
            if self._direct is None or not self._direct._take_directly(failure):
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
        if type(piece) is _Failure:
            raise piece.error
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
        if type(piece) is _Failure:
            raise piece.error
        return piece  # type: ignore[no-any-return]
