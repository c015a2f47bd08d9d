"""The interaction nodes: metadata messages about agent calls, persisted through `MiniAgents.on_persist_message`."""

from __future__ import annotations

from miniagents.messages import Message

__all__ = ["NODE_FIELDS", "AgentCallNode", "AgentInteractionNode", "AgentReplyNode"]

NODE_FIELDS = frozenset({"class_", "text", "text_template", "agent_alias", "messages", "replies", "agent_call"})
"""Field names an inquire kwarg cannot take in a node (it is stored as ``kwarg_<name>`` instead)."""


class AgentInteractionNode(Message):
    """A metadata message about one agent interaction (persisted through `MiniAgents.on_persist_message`)."""

    agent_alias: str


class AgentCallNode(AgentInteractionNode):
    """An agent was called: its input messages, the interaction metadata and the inquire kwargs.

    Inquire kwargs whose names clash with the node's own fields are stored as ``kwarg_<name>``.
    """

    messages: tuple[Message, ...]


class AgentReplyNode(AgentInteractionNode):
    """An agent replied: its replies and the call they answer.

    There is a reply node for every call that finished, and for every call that was cancelled: then
    ``cancelled`` is True and ``replies`` are the replies completed before the cancellation. A call that failed
    has none.
    """

    replies: tuple[Message, ...]
    agent_call: AgentCallNode
