"""The interaction nodes: metadata messages about agent calls, persisted through `MiniAgents.on_persist_message`."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from miniagents.messages import Message
from miniagents.promising.ext.frozen import init_fresh_private_attributes

__all__ = ["NODE_FIELDS", "AgentCallNode", "AgentInteractionNode", "AgentReplyNode", "build_node"]

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


NodeT = TypeVar("NodeT", bound=AgentInteractionNode)


def build_node(cls: type[NodeT], agent_alias: str, nested: dict[str, Any], extra: dict[str, Any]) -> NodeT:
    """``cls(agent_alias=..., **nested, **extra)`` as validation makes it, without validating what is valid already.

    The framework's nodes hold values that are frozen already: messages (``nested``: the node's own fields) and
    the values of `Frozen` models (``extra``: interaction metadata and inquire kwargs), so validation would only
    copy them. With an ``extra`` name that is a field of the node, it validates as usual.
    """
    if extra and not NODE_FIELDS.isdisjoint(extra):
        return cls(agent_alias=agent_alias, **nested, **extra)
    node = _new_object(cls)
    fields = {"class_": cls.__name__, "text": None, "text_template": None, "agent_alias": agent_alias, **nested}
    object.__setattr__(node, "__dict__", fields)
    _set_extra(node, extra)
    fields_set = {"class_", "agent_alias", *nested}
    if extra:
        fields_set.update(extra)
    _set_fields_set(node, fields_set)
    init_fresh_private_attributes(node)
    return node


# pydantic's slots, set through their descriptors (what ``object.__setattr__`` finds first, looked up once here).
_new_object = object.__new__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
