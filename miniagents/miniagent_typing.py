"""Type aliases for agents, messages and handlers."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel

if TYPE_CHECKING:
    from miniagents.messages import Message, MessagePromise
    from miniagents.promising.promising import Promise

__all__ = [
    "AgentFunction",
    "MessageTokenStreamer",
    "MessageType",
    "PersistMessageEventHandler",
    "SingleMessageType",
]

SingleMessageType = Union[str, dict[str, Any], BaseModel, "Message", "MessagePromise", BaseException]
"""One message: a string, a dict of fields, a pydantic model, a `Message`, a `MessagePromise` or an exception."""

MessageType = Union[SingleMessageType, Iterable[Any], AsyncIterable[Any]]  # noqa: UP007 - a runtime alias
"""What agents accept and reply: single messages, or (async) iterables of `MessageType`, nested arbitrarily."""


AgentFunction = Callable[..., Awaitable[None]]
"""``async def agent(ctx: InteractionContext, **kwargs) -> None`` (any keyword parameters after ``ctx``)."""


MessageTokenStreamer = Callable[[dict[str, Any]], AsyncIterator[str]]
"""``streamer(metadata_so_far)`` returning an async iterator of tokens."""

PersistMessageEventHandler = Callable[["Promise[Any]", "Message"], Awaitable[Any]]
"""``async def handler(promise, message)`` for `MiniAgents.on_persist_message`."""
