"""`Promise`: a value computed at most once, by a resolver, and cached."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator
from types import CoroutineType, TracebackType
from typing import Any, Generic, TypeVar

from miniagents.promising._context import PromisingContext, active_context, fire_promise_resolved
from miniagents.promising._failures import in_framework_work, raise_stored, stored_traceback
from miniagents.promising._tasks import WorkScope, current_scope, is_own_cancellation
from miniagents.promising.errors import FunctionNotProvidedError
from miniagents.promising.sentinels import DEFAULT, NO_VALUE, Sentinel

__all__ = ["Promise"]

WholeT = TypeVar("WholeT")


class Promise(Generic[WholeT]):
    """A value computed at most once, by a resolver, and cached.

    Args:
        start_asap: resolve in the background right away (True), only when awaited (False), or as the active
            context says (`DEFAULT`).
        resolver: ``resolver(promise)`` returning an awaitable of the value. Subclasses may override
            ``_resolver(self)`` instead.
        prefill_result: the value, known already; the promise is resolved in the constructor.

    Awaiting the promise (or `aresolve`) returns the value, the same object every time, or raises the same
    exception instance every time (with the same traceback) if the resolver failed. If the task awaiting it is
    cancelled while it runs the resolver, the promise stays unresolved and the next awaiter runs the resolver.

    Raises:
        ValueError: both ``resolver`` and ``prefill_result`` were given.
        NoActiveContextError: no context is active.
    """

    # Defaults shared through the class, set on an instance only when they change: fewer stores per promise.
    _failed = False
    _traceback: TracebackType | None = None  # of the stored error, as it was stored
    _resolving = False  # the resolver is running (a cheaper lock than asyncio.Lock, see `aresolve`)
    _resolve_waiters: list[asyncio.Future[None]] | None = None
    _handed_over = False  # a background resolution left the work to the running resolver
    _scope: WorkScope | None = None  # a lazy promise's work belongs to the scope it was made in
    _on_resolved: Callable[[], None] | None = None

    def __init__(
        self,
        start_asap: bool | Sentinel = DEFAULT,
        resolver: Callable[[Any], Awaitable[WholeT]] | None = None,
        prefill_result: WholeT | Sentinel = NO_VALUE,
    ) -> None:
        context = active_context.get()
        if context is None:
            context = PromisingContext.get_current()  # raises NoActiveContextError with a hint
        self._context = context
        if resolver is not None:
            if prefill_result is not NO_VALUE:
                raise ValueError("pass either `resolver` or `prefill_result` to a promise, not both")
            self._resolver_function = resolver
        self._result: Any = prefill_result
        if prefill_result is not NO_VALUE:
            if context.has_handlers or context.parent is not None:  # (`context` is the active one)
                fire_promise_resolved(self, prefill_result)
        elif context.start_everything_asap_by_default if start_asap is DEFAULT else start_asap:
            self._start_in_background(context)
        else:
            scope = current_scope.get()
            if scope is not None:
                self._scope = scope

    @classmethod
    def resolved_without_event(cls, result: WholeT, context: PromisingContext) -> Promise[WholeT]:
        """A promise of ``context`` resolved to ``result`` whose resolution fires no event (no handler sees it).

        For the framework's own values whose event was dispatched already (see
        `MiniAgents.resolve_interaction_node`).
        """
        promise = cls.__new__(cls)
        promise._context = context
        promise._result = result
        return promise

    def _start_in_background(self, context: PromisingContext) -> None:
        context.start_soon(self.aresolve_in_background())

    async def aresolve_in_background(self) -> None:
        """Resolve for nobody in particular: a failure is reported as unretrieved, never raised out of the task.

        If somebody runs the resolver right now, this returns at once and leaves the reporting to them.
        """
        if self._resolving:
            # Somebody is running the resolver right now: don't wait for them, let them report a failure or, if
            # they are cancelled, start this again (see `aresolve`).
            self._handed_over = True
            return
        token = in_framework_work.set(True)  # (it may run in an agent's task: this is not the agent retrieving it)
        try:
            await self.aresolve()
        except BaseException as error:
            if is_own_cancellation(error):
                raise
            self._context.report_unretrieved(error, current_scope.get())  # (an agent call names itself)
        finally:
            in_framework_work.reset(token)

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

    @property
    def has_failed(self) -> bool:
        """Whether the promise is resolved to an error."""
        return self._failed

    @property
    def stored_error(self) -> BaseException | None:
        """The error the promise failed with, or None (not failed, or not resolved yet); raises nothing."""
        return self._result if self._failed else None

    def result_nowait(self) -> WholeT | Sentinel:
        """The value if the promise is resolved (raising its error if it failed), otherwise `NO_VALUE`.

        Raises:
            BaseException: the stored error of a failed promise.
        """
        if self._failed:
            raise_stored(self._result, self._traceback)
        return self._result  # type: ignore[no-any-return]

    def _set_result(self, result: Any) -> None:
        self._result = result
        fire_promise_resolved(self, result)
        if self._on_resolved is not None:
            self._call_on_resolved()

    def _set_error(self, error: BaseException) -> None:
        self._failed = True
        self._traceback = stored_traceback(error)
        self._result = error
        fire_promise_resolved(self, error)
        if self._on_resolved is not None:
            self._call_on_resolved()

    def _call_on_resolved(self) -> None:
        callback = self._on_resolved
        self._on_resolved = None
        if callback is not None:
            callback()

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
                    self._set_error(error)
                else:
                    self._set_result(result)
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
            raise_stored(self._result, self._traceback)
        return self._result  # type: ignore[no-any-return]

    def _after_hand_over(self, someone_takes_over: bool) -> None:
        """Do what the background resolution that left the work to this resolver would have done."""
        if self._result is NO_VALUE:  # the resolver was cancelled
            if not someone_takes_over:  # (a woken waiter runs the resolver next, and then comes here)
                self._handed_over = False
                self._context.start_soon(self.aresolve_in_background())
        elif self._failed:
            self._context.report_unretrieved(self._result)

    def __await__(self) -> Generator[Any, None, WholeT]:
        if self._result is NO_VALUE:
            return self.aresolve().__await__()
        return _resolved_already(self)  # no coroutine needed


def _resolved_already(promise: Promise[WholeT]) -> Generator[Any, None, WholeT]:
    """The ``__await__`` iterator of a resolved promise: it gives the value (or raises the error) at once."""
    if promise._failed:
        raise_stored(promise._result, promise._traceback)
    return promise._result  # type: ignore[no-any-return]
    yield  # a generator function  # noqa: RUF100
