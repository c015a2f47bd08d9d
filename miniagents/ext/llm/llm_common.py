"""The message classes of LLM chats and their conversion into provider dicts.

`UserMessage`, `SystemMessage` and `AssistantMessage` differ only in the default of their ``role``; any other
`Message` (or plain string) works as an LLM input as well and counts as a user message when it has no role.
`ToolCallMessage` and `ToolResultMessage` are the two halves of a tool call: the LLM agents reply with them
between the model's turns (see `miniagents.ext.llm.tools`), and take them back as input, so a transcript can be
fed to a model again.

This module is also importable as ``miniagents.ext.llm`` (the canonical path); ``llm_common`` is kept for
compatibility.
"""

from __future__ import annotations

import json
from typing import Any

from miniagents.messages import Message

__all__ = [
    "AssistantMessage",
    "SystemMessage",
    "ToolCallMessage",
    "ToolResultMessage",
    "UserMessage",
    "message_to_llm_dict",
]


class UserMessage(Message):
    """A message from the user (``role="user"``)."""

    role: str = "user"


class SystemMessage(Message):
    """A system prompt (``role="system"``)."""

    role: str = "system"


class AssistantMessage(Message):
    """A message from an LLM (``role="assistant"``), with the ``model`` and the ``agent_alias`` that produced it.

    The LLM agents reply with subclasses of it (`OpenAIMessage`, `AnthropicMessage`, `LlamaCppMessage`), which also
    carry the provider's response metadata as extra fields (``choices``, ``usage``, ``stop_reason`` …).
    """

    role: str = "assistant"
    model: str | None = None
    agent_alias: str | None = None


class ToolCallMessage(AssistantMessage):
    """A model's call of a tool: its text (and its tokens, as they stream) is the JSON of the arguments.

    Attributes:
        tool_call_id: the provider's id of the call (``call_…``, ``toolu_…``); the result refers to it.
        tool_name: the name of the tool the model called.

    Example:
        >>> call = ToolCallMessage('{"city": "Paris"}', tool_call_id="call_1", tool_name="weather")
        >>> call.arguments
        {'city': 'Paris'}
    """

    tool_call_id: str = ""
    tool_name: str = ""

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments as a dict (``{}`` for an empty text).

        Raises:
            ValueError: the text is not a JSON object (a model may send broken JSON).
        """
        if not (self.text or "").strip():
            return {}
        value = json.loads(self.text or "")
        if not isinstance(value, dict):
            raise ValueError(f"the arguments of the tool call {self.tool_call_id!r} are not a JSON object: {value!r}")
        return value


class ToolResultMessage(Message):
    """What a tool returned (``role="tool"``): the text is sent back to the model.

    Attributes:
        tool_call_id: the id of the `ToolCallMessage` this answers.
        tool_name: the tool's name.
        is_error: True when the tool failed and the text describes the error.
        agent_alias: the alias of the LLM agent that ran the tool.
    """

    role: str = "tool"
    tool_call_id: str = ""
    tool_name: str = ""
    is_error: bool = False
    agent_alias: str | None = None


def message_to_llm_dict(message: Message) -> dict[str, Any]:
    """Convert a message into a chat dict in the OpenAI chat format.

    Args:
        message: any `Message`; its ``role`` field is used when present and not None, ``"user"`` otherwise.

    Returns:
        ``{"role": role, "content": str(message)}``; for a `ToolResultMessage` also ``"tool_call_id"``; a
        `ToolCallMessage` becomes ``{"role": "assistant", "content": None, "tool_calls": [...]}``.

    Example:
        >>> message_to_llm_dict(Message("Hi"))
        {'role': 'user', 'content': 'Hi'}
        >>> message_to_llm_dict(SystemMessage("Be brief."))
        {'role': 'system', 'content': 'Be brief.'}
    """
    if isinstance(message, ToolCallMessage):
        return {"role": "assistant", "content": None, "tool_calls": [_openai_tool_call_dict(message)]}
    if isinstance(message, ToolResultMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": str(message)}
    role = _field_of(message, "role")
    return {"role": role if isinstance(role, str) and role else "user", "content": str(message)}


def _field_of(message: Message, name: str) -> Any:
    """A declared or extra field of a message, None when it has none (without pydantic's slow failed lookup)."""
    value = message.__dict__.get(name)
    if value is None:
        extra = message.__pydantic_extra__
        if extra:
            value = extra.get(name)
    return value


def _openai_tool_call_dict(message: ToolCallMessage) -> dict[str, Any]:
    """The ``tool_calls`` entry of a `ToolCallMessage` in the OpenAI chat format."""
    return {
        "id": message.tool_call_id,
        "type": "function",
        "function": {"name": message.tool_name, "arguments": message.text or "{}"},
    }
