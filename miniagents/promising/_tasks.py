"""Task helpers of the promising layer: the current task, own cancellation, and cancellable work scopes."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from types import BuiltinFunctionType
from typing import Any

__all__ = ["WorkScope", "current_scope", "current_task", "is_own_cancellation", "require_coroutine_function"]

_tasks_by_loop: dict[Any, asyncio.Task[Any]] | None = getattr(asyncio.tasks, "_current_tasks", None)


def _current_task_from_table() -> Any:
    """`asyncio.current_task()`, which is a (slower) Python function before Python 3.12."""
    if _tasks_by_loop is None:  # pragma: no cover - an asyncio without this table
        return asyncio.current_task()
    return _tasks_by_loop.get(asyncio.get_running_loop())


current_task: Callable[[], Any] = _current_task_from_table
if isinstance(asyncio.current_task, BuiltinFunctionType) or not isinstance(_tasks_by_loop, dict):
    current_task = asyncio.current_task  # a C function already (Python 3.12+), or no table


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


class WorkScope:
    """The owner of background tasks that are cancelled together (an agent call is one).

    While a scope is current (`current_scope`), every task the framework starts is adopted by it. `cancel_tasks`
    cancels them all with a `WorkCancelledError` as the cancellation message; tasks adopted afterwards are
    cancelled as soon as they are adopted. A task's *fallback* runs if the task ends cancelled, so that work which
    was cancelled before it ever ran (its ``finally`` never runs then) still ends its stream.
    """

    _scope_tasks: dict[asyncio.Task[Any], Callable[[BaseException], None] | None] | None = None
    _cancel_error: BaseException | None = None

    @property
    def cancel_requested(self) -> bool:
        """Whether `cancel_tasks` was called."""
        return self._cancel_error is not None

    @property
    def cancel_error(self) -> BaseException | None:
        """What `cancel_tasks` was called with (None if it was not)."""
        return self._cancel_error

    def adopt_task(self, task: asyncio.Task[Any], fallback: Callable[[BaseException], None] | None = None) -> None:
        """Own ``task`` until `release_task`; ``fallback(error)`` runs if it ends cancelled by this scope."""
        tasks = self._scope_tasks
        if tasks is None:
            tasks = self._scope_tasks = {}
        tasks[task] = fallback
        if self._cancel_error is not None:
            self.cancel_one(task, fallback, self._cancel_error)

    def release_task(self, task: asyncio.Task[Any]) -> None:
        """Stop owning ``task`` (it ended)."""
        tasks = self._scope_tasks
        if tasks:
            tasks.pop(task, None)

    def cancel_tasks(self, error: BaseException) -> None:
        """Cancel every task of this scope (and every one adopted later) with ``error`` as the message."""
        if self._cancel_error is None:
            self._cancel_error = error
        for task, fallback in list((self._scope_tasks or {}).items()):
            self.cancel_one(task, fallback, error)

    @staticmethod
    def cancel_one(
        task: asyncio.Task[Any], fallback: Callable[[BaseException], None] | None, error: BaseException
    ) -> None:
        """Cancel ``task`` with ``error`` as the message; ``fallback(error)`` runs if it ends cancelled."""
        if task.done():
            return
        coroutine = task.get_coro()
        if inspect.iscoroutine(coroutine) and inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED:
            # Not started yet: cancelling it now would skip its body (its `finally` too) and leave what it was
            # given never awaited; let it start first, it is cancelled at its first `await`.
            asyncio.get_running_loop().call_soon(WorkScope.cancel_one, task, fallback, error)
            return
        task.cancel(error)  # (the message: see `cancelled_work_error`)
        if fallback is not None:
            task.add_done_callback(lambda finished: fallback(error) if finished.cancelled() else None)


current_scope: contextvars.ContextVar[WorkScope | None] = contextvars.ContextVar("miniagents_work_scope", default=None)
"""The `WorkScope` that adopts the tasks started now (the agent call whose function runs in this task)."""
