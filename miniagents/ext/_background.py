"""Background work of observers that must outlive the agent call that triggered it."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from miniagents.miniagents import MiniAgents
from miniagents.promising._failures import in_framework_work
from miniagents.promising.errors import PromisingContextError

__all__ = ["start_detached"]

_unowned: set[asyncio.Task[Any]] = set()  # tasks started outside any context: referenced until they end


def start_detached(coroutine: Coroutine[Any, Any, Any], mini_agents: MiniAgents | None = None) -> asyncio.Task[Any]:
    """Start ``coroutine`` as a task of the `MiniAgents` context that no agent call owns.

    Observer methods run in the task that caused the event, often an agent call's own task; a task started there
    with ``start_asap`` would belong to that call and be cancelled with it (e.g. the task that publishes the call's
    status "cancelled"). See `PromisingContext.start_detached`, which this calls.

    Args:
        coroutine: the work.
        mini_agents: the context to attach it to; the active one by default.

    Returns:
        The task. Without any context it is a plain task of the running loop (kept referenced until it ends).
    """
    if mini_agents is None:
        try:
            mini_agents = MiniAgents.get_current()
        except PromisingContextError:
            mini_agents = None
    if mini_agents is not None:
        return mini_agents.start_detached(coroutine)
    context = contextvars.Context()
    context.run(in_framework_work.set, True)  # (as `start_detached` does)
    task = context.run(asyncio.get_running_loop().create_task, coroutine)
    _unowned.add(task)
    task.add_done_callback(_unowned.discard)
    return task
