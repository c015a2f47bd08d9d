"""The message classes of LLM chats and their conversion into provider dicts.

`UserMessage`, `SystemMessage` and `AssistantMessage` differ only in the default of their ``role``; any other
`Message` (or plain string) works as an LLM input as well and counts as a user message when it has no role.

This module is also importable as ``miniagents.ext.llm`` (the canonical path); ``llm_common`` is kept for
compatibility.
"""

from __future__ import annotations

from miniagents.messages import Message

__all__ = ["AssistantMessage", "SystemMessage", "UserMessage", "message_to_llm_dict"]


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


def message_to_llm_dict(message: Message) -> dict[str, str]:
    """Convert a message into a chat dict: ``{"role": ..., "content": ...}``.

    Args:
        message: any `Message`; its ``role`` field is used when present and not None, ``"user"`` otherwise.

    Returns:
        ``{"role": role, "content": str(message)}``.

    Example:
        >>> message_to_llm_dict(Message("Hi"))
        {'role': 'user', 'content': 'Hi'}
        >>> message_to_llm_dict(SystemMessage("Be brief."))
        {'role': 'system', 'content': 'Be brief.'}
    """
    role = getattr(message, "role", None)
    return {"role": role if isinstance(role, str) and role else "user", "content": str(message)}
