"""Agents and the `MiniAgents` context (the public path of SPEC §0; one concept per file behind it).

An agent is an ``async def agent(ctx: InteractionContext, **kwargs)`` function under `miniagent` (``_agent.py``).
Inquiring it makes an `AgentCall` (``_agent_call.py``) and returns its `MessageSequencePromise` at once; the
function runs in its own task (soon, by default) and its replies stream to whoever consumes them. Everything runs
inside a `MiniAgents` context (``_mini_agents.py``); `RunObserver`s (``_observer.py``) see every call, and the
interaction nodes (``_nodes.py``) describe calls as messages.
"""

from __future__ import annotations

from miniagents._agent import MiniAgent, miniagent
from miniagents._agent_call import AgentCall, AgentCallStatus, InteractionContext, current_agent_call
from miniagents._mini_agents import MiniAgents
from miniagents._nodes import AgentCallNode, AgentInteractionNode, AgentReplyNode
from miniagents._observer import RunObserver
from miniagents.messages import Message, MessagePromise, MessageSequencePromise

__all__ = [
    "AgentCall",
    "AgentCallNode",
    "AgentCallStatus",
    "AgentInteractionNode",
    "AgentReplyNode",
    "InteractionContext",
    "Message",
    "MessagePromise",
    "MessageSequencePromise",
    "MiniAgent",
    "MiniAgents",
    "RunObserver",
    "current_agent_call",
    "miniagent",
]
