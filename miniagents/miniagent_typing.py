"""Type aliases for agents, messages and handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from miniagents.messages import Message, MessageTokenStreamer, MessageType, SingleMessageType
from miniagents.promising.promising import Promise

__all__ = [
    "AgentFunction",
    "MessageTokenStreamer",
    "MessageType",
    "PersistMessageEventHandler",
    "SingleMessageType",
]

AgentFunction = Callable[..., Awaitable[None]]
"""``async def agent(ctx: InteractionContext, **kwargs) -> None`` (any keyword parameters after ``ctx``)."""


PersistMessageEventHandler = Callable[[Promise[Any], Message], Awaitable[Any]]
"""``async def handler(promise, message)`` for `MiniAgents.on_persist_message`."""
