"""miniagents: an asynchronous framework for LLM-based multi-agent systems, built on streamed promises.

Agents are ``async def`` functions under `miniagent`; every reply is a replayable `MessageSequencePromise` that
streams message by message and token by token while the agents run in the background.

Example:
    >>> from miniagents import InteractionContext, MiniAgents, miniagent
    >>> @miniagent
    ... async def echo_agent(ctx: InteractionContext) -> None:
    ...     async for message_promise in ctx.message_promises:
    ...         ctx.reply(f"You said: {await message_promise}")
    >>> async def main() -> None:
    ...     async for message_promise in echo_agent.inquire(["Hello", "World"]):
    ...         print(await message_promise)
    >>> MiniAgents().run(main())
    You said: Hello
    You said: World
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from miniagents.errors import (
    AgentCallCancelledError,
    AppenderClosedError,
    AppenderNotOpenError,
    FunctionNotProvidedError,
    MiniAgentsError,
    NoActiveContextError,
    PromisingContextError,
    PromisingError,
    WorkCancelledError,
    WrongActiveContextError,
)
from miniagents.messages import Message, MessagePromise, MessageSequence, MessageSequencePromise, MessageType
from miniagents.miniagents import (
    AgentCall,
    AgentCallNode,
    AgentCallStatus,
    AgentInteractionNode,
    AgentReplyNode,
    InteractionContext,
    MiniAgent,
    MiniAgents,
    RunObserver,
    current_agent_call,
    miniagent,
)
from miniagents.promising.ext.frozen import Frozen
from miniagents.promising.promising import Promise, Promising, PromisingContext, StreamAppender, StreamedPromise

__all__ = [
    "AgentCall",
    "AgentCallCancelledError",
    "AgentCallNode",
    "AgentCallStatus",
    "AgentInteractionNode",
    "AgentReplyNode",
    "AppenderClosedError",
    "AppenderNotOpenError",
    "Frozen",
    "FunctionNotProvidedError",
    "InteractionContext",
    "Message",
    "MessagePromise",
    "MessageSequence",
    "MessageSequencePromise",
    "MessageType",
    "MiniAgent",
    "MiniAgents",
    "MiniAgentsError",
    "NoActiveContextError",
    "Promise",
    "Promising",
    "PromisingContext",
    "PromisingContextError",
    "PromisingError",
    "RunObserver",
    "StreamAppender",
    "StreamedPromise",
    "WorkCancelledError",
    "WrongActiveContextError",
    "current_agent_call",
    "miniagent",
    "run",
]

_ResultT = TypeVar("_ResultT")


def run(awaitable: Awaitable[_ResultT]) -> _ResultT:
    """Blocking: ``MiniAgents().run(awaitable)``."""
    return MiniAgents().run(awaitable)
