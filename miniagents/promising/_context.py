"""`PromisingContext`: the owner of background tasks, promise-resolution events and unretrieved errors."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar

from miniagents.promising._failures import (
    BACKGROUND_ERROR_MESSAGE,
    in_framework_work,
    is_retrieved,
    log_error_once,
    logger,
    mark_unretrieved,
    where,
)
from miniagents.promising._runner import run_coroutine
from miniagents.promising._tasks import WorkScope, current_scope, current_task, is_own_cancellation
from miniagents.promising._tasks import require_coroutine_function as _require_coroutine_function
from miniagents.promising.errors import NoActiveContextError, WorkCancelledError, WrongActiveContextError
from miniagents.promising.sentinels import DEFAULT, Sentinel

__all__ = ["PromiseResolvedHandler", "PromisingContext", "active_context", "as_handler_list"]

WholeT = TypeVar("WholeT")
ContextT = TypeVar("ContextT", bound="PromisingContext")

PromiseResolvedHandler = Callable[[Any, Any], Awaitable[Any]]
"""``async def handler(promise, result)``: see `PromisingContext.on_promise_resolved`."""

active_context: contextvars.ContextVar[PromisingContext | None] = contextvars.ContextVar(
    "miniagents_active_context", default=None
)

INTERRUPT_GRACE_SECONDS = 1.0
"""How long leaving an interrupted context waits for cancelled work before it leaves anyway (seconds)."""


def as_handler_list(handlers: Any, what: str) -> list[Any]:
    """Accept one handler or an iterable of handlers and check that each is a coroutine function."""
    handler_list = [handlers] if callable(handlers) else list(handlers or ())
    for handler in handler_list:
        _require_coroutine_function(handler, what)
    return handler_list


class PromisingContext:
    """The context that owns background tasks and promise-resolution events (alias `Promising`).

    Activate it with ``async with PromisingContext():``, with ``ctx.run(main())`` (blocking) or with
    ``ctx.activate()`` … ``await ctx.afinalize()``. Leaving the context normally waits for every task it started.
    Leaving it because the leaving task was cancelled or interrupted (Ctrl+C in `run`, `KeyboardInterrupt`,
    ``asyncio.timeout``) cancels all of that work instead, and leaves within `INTERRUPT_GRACE_SECONDS`.
    The active context lives in a `contextvars.ContextVar`, so it is seen by the current task and by tasks
    created from it afterwards.

    Errors of background work that no consumer retrieved are logged once, when the context finishes.

    Args:
        start_everything_asap_by_default: what ``start_asap=DEFAULT`` means for promises created in this
            context. True schedules their work in the background right away; False makes them lazy.
        appenders_capture_errors_by_default: what ``capture_errors=DEFAULT`` means for `StreamAppender`.
        longer_hash_keys: make `Frozen.hash_key` 64 hex characters long instead of 40.
        log_level_for_errors: the `logging` level at which unretrieved errors of background work are logged.
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
        self.parent: PromisingContext | None = active_context.get()
        self.start_everything_asap_by_default = start_everything_asap_by_default
        self.appenders_capture_errors_by_default = appenders_capture_errors_by_default
        self.longer_hash_keys = longer_hash_keys
        self.log_level_for_errors = log_level_for_errors
        self.child_tasks: set[asyncio.Task[Any]] = set()
        self._on_promise_resolved_handlers: list[PromiseResolvedHandler] = as_handler_list(
            on_promise_resolved, "an on_promise_resolved handler"
        )
        self.has_handlers = bool(self._on_promise_resolved_handlers)
        """Whether `dispatch_promise_resolved` has anything to do (set by every handler registration)."""
        self._previous_context_token: contextvars.Token[PromisingContext | None] | None = None
        # By id: the error, where it is reported (see `report_unretrieved`), and the agent call it was raised in
        # first when another one passed it on (None otherwise).
        self._unretrieved_errors: dict[int, tuple[BaseException, Any, Any]] = {}
        self._fallbacks: dict[asyncio.Task[Any], Callable[[BaseException], None]] = {}

    @classmethod
    def get_current(cls: type[ContextT]) -> ContextT:
        """Return the active context.

        Raises:
            NoActiveContextError: no context is active in this task.
            WrongActiveContextError: the active context is not an instance of ``cls``.
        """
        context = active_context.get()
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
        _require_coroutine_function(handler, "an on_promise_resolved handler")
        self._on_promise_resolved_handlers.append(handler)
        self.has_handlers = True
        return handler

    def dispatch_promise_resolved(self, promise: Any, result: Any) -> None:
        """Schedule this context's handlers for a resolved promise (subclasses extend this)."""
        for handler in self._on_promise_resolved_handlers:
            self._create_task(
                _suppress_errors(handler(promise, result), self.log_level_for_errors),
                self.log_level_for_errors,
                scope=None,  # (handlers observe the run: cancelling an agent call does not cancel them)
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
        cancellation is never suppressed. Started inside an agent call, the task is cancelled with it.

        Returns:
            The `asyncio.Task`.
        """
        if suppress_errors:
            return self._create_task(_suppress_errors(awaitable, log_level_for_errors), log_level_for_errors)
        return self._create_task(awaitable, log_level_for_errors)

    def start_detached(
        self,
        awaitable: Awaitable[WholeT],
        suppress_errors: bool = False,
        log_level_for_errors: int = logging.DEBUG,
    ) -> asyncio.Task[Any]:
        """`start_asap` for work that observes the run (an observer's): detached from whatever started it.

        The task starts from an empty `contextvars.Context` with this context active: no agent call owns it (it is
        not cancelled with the call whose event started it, and it is no caller of the agents it inquires), and it
        runs as the framework's own work (an agent's error it awaits still counts as never retrieved, so it is
        reported at the end). Leaving this context waits for it. Its error, if logged, names the agent call it was
        started in.

        Returns:
            The `asyncio.Task`.
        """
        started_in = current_scope.get()  # (named by its error, if logged; it owns nothing of the task)
        work: Awaitable[Any] = (
            _suppress_errors(awaitable, log_level_for_errors, started_in) if suppress_errors else awaitable
        )
        context = contextvars.Context()
        context.run(self._enter_detached)
        task: asyncio.Task[Any] = context.run(self._create_task, work, log_level_for_errors, DEFAULT, started_in)
        return task

    def _enter_detached(self) -> None:
        active_context.set(self)
        in_framework_work.set(True)

    def _create_task(
        self,
        awaitable: Awaitable[Any],
        log_level_for_errors: int,
        scope: WorkScope | Sentinel | None = DEFAULT,
        started_in: object = None,
    ) -> asyncio.Task[Any]:
        if inspect.iscoroutine(awaitable):
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(awaitable)
        else:
            task = asyncio.ensure_future(awaitable)
        self.child_tasks.add(task)
        if scope is DEFAULT:
            scope = current_scope.get()
        assert not isinstance(scope, Sentinel)
        if scope is not None:
            scope.adopt_task(task)
        task.add_done_callback(functools.partial(self._on_task_done, log_level_for_errors, scope, started_in))
        return task

    def _on_task_done(
        self, log_level_for_errors: int, scope: WorkScope | None, started_in: object, task: asyncio.Task[Any]
    ) -> None:
        self.child_tasks.discard(task)
        if scope is not None:
            scope.release_task(task)
        if not task.cancelled():
            error = task.exception()  # marks it as retrieved: it is logged here, once
            if error is not None:
                log_error_once(
                    error, log_level_for_errors, where(scope, started_in=started_in) + self._raised_in(error)
                )

    def _raised_in(self, error: BaseException) -> str:
        """`` (raised in the agent C (called by B <- A))`` when a failure of this context's work started there."""
        raised_in = self._first_origin(error)
        describe = getattr(raised_in, "describe_location", None)
        return "" if describe is None else f" (raised in {describe()})"

    def _first_origin(self, error: BaseException) -> Any:
        """Where ``error`` was first reported with an origin, in this context or an enclosing one (None if not)."""
        context: PromisingContext | None = self
        while context is not None:
            entry = context._unretrieved_errors.get(id(error))
            if entry is not None and entry[1] is not None:
                return entry[2] or entry[1]
            context = context.parent
        return None

    def start_soon(
        self,
        coroutine: Coroutine[Any, Any, None],
        scope: WorkScope | Sentinel | None = DEFAULT,
        fallback: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[None]:
        """Schedule the framework's own background work (which handles its own errors).

        The task belongs to ``scope`` (`DEFAULT`: the current one; None: none) and is cancelled with it;
        ``fallback(error)`` runs if the task is cancelled before it could run (so its stream still ends). The
        task leaves `child_tasks` by itself when it ends.
        """
        if scope is DEFAULT:
            scope = current_scope.get()
        assert not isinstance(scope, Sentinel)
        task = asyncio.get_running_loop().create_task(self._arun_own(coroutine, scope))
        self.child_tasks.add(task)
        if fallback is not None:
            self._fallbacks[task] = fallback
        if scope is not None:
            scope.adopt_task(task, fallback)
        return task

    async def _arun_own(self, coroutine: Coroutine[Any, Any, None], scope: WorkScope | None) -> None:
        if not in_framework_work.get():
            in_framework_work.set(True)
        try:
            await coroutine
        except BaseException as error:
            if is_own_cancellation(error):
                raise
            log_error_once(error, self.log_level_for_errors, where(scope))  # a bug of ours or a handler's
        finally:
            task = current_task()
            self.child_tasks.discard(task)
            if self._fallbacks:
                self._fallbacks.pop(task, None)
            if scope is not None:
                scope.release_task(task)

    def report_unretrieved(self, error: BaseException, origin: Any = None, fresh: bool = False) -> None:
        """Remember a background failure; it is logged when the context finishes unless a consumer retrieved it.

        A ``KeyboardInterrupt`` or ``SystemExit`` that nobody retrieved is raised when the context is left.

        Args:
            error: the failure (only ``Exception``s are ever logged).
            origin: an object with a ``describe_failure() -> str`` method that names where the error happened;
                only a ``fresh`` report replaces an earlier one that has an origin (one without is replaced by the
                first report with one: the failed resolution of a message names no agent, its agent call does).
            fresh: the error failed something new (an agent that received it and did not handle it): forget that
                it was retrieved before. It is reported there from now on; where it was raised (an earlier
                origin, an agent call that it failed first) is named too when it is logged.
        """
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            mark_unretrieved(error)
            self._unretrieved_errors[id(error)] = (error, origin, None)
        elif isinstance(error, Exception) and not isinstance(error, WorkCancelledError):  # (whoever cancels knows)
            raised_in = None
            if fresh:
                mark_unretrieved(error)
                first = self._first_origin(error)
                if first is not origin and getattr(first, "describe_location", None) is not None:
                    raised_in = first
            else:
                reported = self._unretrieved_errors.get(id(error))
                if reported is not None and (reported[1] is not None or origin is None):
                    return  # keep the origin reported first (where it happened)
            self._unretrieved_errors[id(error)] = (error, origin, raised_in)

    def _log_unretrieved(self) -> None:
        """Log the errors nobody retrieved; raise a ``KeyboardInterrupt`` or ``SystemExit`` nobody retrieved."""
        errors, self._unretrieved_errors = self._unretrieved_errors, {}
        fatal = [
            error for error, _, _ in errors.values() if not isinstance(error, Exception) and not is_retrieved(error)
        ]
        for error, origin, raised_in in errors.values():
            if isinstance(error, Exception) and not is_retrieved(error):
                describe = getattr(origin, "describe_failure", None)
                message = describe() if describe is not None else BACKGROUND_ERROR_MESSAGE
                if raised_in is not None:
                    message += f" (raised in {raised_in.describe_location()})"
                log_error_once(error, self.log_level_for_errors, f"{message} (the error was never retrieved)")
        if fatal:
            raise fatal[0]  # never swallowed: the run ends with it

    async def aflush_tasks(self) -> None:
        """Wait until every background task of this context is done, including tasks spawned meanwhile."""
        while self.child_tasks:
            tasks = list(self.child_tasks)
            await asyncio.wait(tasks)  # (not `gather`: if we are cancelled, it would cancel them and wait for them)
            # A task that was cancelled before it ever ran never reached the `finally` that removes it.
            self.child_tasks.difference_update([task for task in tasks if task.done()])

    def cancel_everything(self, error: BaseException) -> None:
        """Cancel all background work of this context (what an interrupt does); subclasses cancel more."""
        for task in list(self.child_tasks):
            WorkScope.cancel_one(task, self._fallbacks.get(task), error)

    async def ainterrupt(self, reason: str = "the context was interrupted") -> None:
        """Cancel all background work and wait for it, at most `INTERRUPT_GRACE_SECONDS`.

        Work started meanwhile (during finalization) is cancelled too. Tasks that still run at the deadline
        (they ignore cancellation) are named in a warning and left behind.
        """
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while True:
            self.cancel_everything(self._interrupt_error(reason))
            pending = [task for task in self.child_tasks if not task.done()]
            remaining = deadline - time.monotonic()
            if not pending:
                break
            if remaining <= 0:
                logger.warning(
                    "leaving %s although %d task(s) ignored their cancellation: %s",
                    type(self).__name__,
                    len(pending),
                    ", ".join(sorted({task.get_name() for task in pending})),
                )
                break
            try:
                await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # cancelled again while waiting: keep the deadline
                continue
        self.child_tasks.difference_update([task for task in self.child_tasks if task.done()])

    def _interrupt_error(self, reason: str) -> BaseException:
        return WorkCancelledError(reason)

    def activate(self: ContextT) -> ContextT:
        """Make this context the active one for the current task (and tasks created from it later).

        Returns:
            ``self``.

        Raises:
            RuntimeError: it is already active (activation is not reentrant).
        """
        if self._previous_context_token is not None:
            raise RuntimeError(f"this {type(self).__name__} is already active: it cannot be activated twice")
        self._previous_context_token = active_context.set(self)
        return self

    async def afinalize(self) -> None:
        """Wait for all background tasks, log the errors nobody retrieved, then restore the previous context.

        If the task is cancelled while it waits, all background work is cancelled (see `ainterrupt`) and the
        cancellation propagates.
        """
        try:
            try:
                await self._await_everything()
            except BaseException as error:
                await self.ainterrupt(f"{type(self).__name__} was left because of {type(error).__name__}")
                raise
            self._log_unretrieved()
        finally:
            self._deactivate()

    async def _await_everything(self) -> None:
        await self.aflush_tasks()

    def _deactivate(self) -> None:
        token = self._previous_context_token
        if token is None:
            return
        self._previous_context_token = None
        try:
            active_context.reset(token)
        except ValueError:  # finalized in another task than the one that activated it
            old_value = token.old_value
            active_context.set(None if old_value is contextvars.Token.MISSING else old_value)

    async def __aenter__(self: ContextT) -> ContextT:
        return self.activate()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_value is not None and not isinstance(exc_value, Exception):
            # Cancelled (a timeout, Ctrl+C in `run`) or interrupted: stop the work instead of waiting for it.
            try:
                await self.ainterrupt(f"{type(self).__name__} was left because of {type(exc_value).__name__}")
            finally:
                self._deactivate()
            return
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
        """Blocking: run ``awaitable`` inside this context on a new event loop, as `asyncio.run` does (see below).

        Ctrl+C (``KeyboardInterrupt``) cancels every running agent call and leaves the context within
        `INTERRUPT_GRACE_SECONDS`; then ``KeyboardInterrupt`` is raised. The loop's shutdown is what
        `asyncio.run` does, bounded: tasks still running get `INTERRUPT_GRACE_SECONDS` to end after they are
        cancelled, and so do the threads of ``asyncio.to_thread``; what ignores that is left behind with a warning
        (see `run_coroutine`). A second Ctrl+C raises ``KeyboardInterrupt`` at once.

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
            return run_coroutine(self.arun(awaitable), INTERRUPT_GRACE_SECONDS)
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            f"{type(self).__name__}.run() cannot be called from a running event loop: "
            f"use `await {type(self).__name__}().arun(...)` or `async with {type(self).__name__}():` instead"
        )


async def _suppress_errors(
    awaitable: Awaitable[WholeT], log_level_for_errors: int, started_in: object = None
) -> WholeT | None:
    try:
        return await awaitable
    except BaseException as error:
        if is_own_cancellation(error):
            raise
        log_error_once(error, log_level_for_errors, where(current_scope.get(), started_in=started_in))
        return None


def fire_promise_resolved(promise: Any, result: Any) -> None:
    """Dispatch a promise's resolution to the active context and each of its ancestors that has handlers."""
    context = active_context.get()
    while context is not None:
        if context.has_handlers:
            context.dispatch_promise_resolved(promise, result)
        context = context.parent
