"""LLM agents and the message classes of LLM chats.

The agents live in submodules so that each SDK is imported only when its agent is used:

- `miniagents.ext.llm.openai`: ``openai_agent`` (extra ``miniagents[openai]``);
- `miniagents.ext.llm.anthropic`: ``anthropic_agent`` (extra ``miniagents[anthropic]``);
- `miniagents.ext.llm.llama_cpp`: ``llama_cpp_agent``, a local GGUF model in process, SmolLM2-135M-Instruct by
  default (extra ``miniagents[local]``; no key, no network);
- `miniagents.ext.llm.testing`: fake LLM agents for tests (no extra).

All of them reply with **one** streamed `AssistantMessage` promise; provider failures are raised while that
promise is iterated or awaited, as `LLMError`s (see `miniagents.ext.llm.errors`).

Example:
    >>> from miniagents import MiniAgents
    >>> from miniagents.ext.llm import UserMessage
    >>> from miniagents.ext.llm.testing import scripted_llm_agent
    >>> llm = scripted_llm_agent(["Hello there!"])
    >>> async def main() -> None:
    ...     async for token in llm.inquire(UserMessage("Hi")).as_single_promise():
    ...         print(token, end="|")
    >>> MiniAgents().run(main())
    Hello |there!|
"""

from miniagents.ext.llm.errors import LLMAPIStatusError, LLMConnectionError, LLMError, LLMResponseError
from miniagents.ext.llm.llm_common import AssistantMessage, SystemMessage, UserMessage, message_to_llm_dict

__all__ = [
    "AssistantMessage",
    "LLMAPIStatusError",
    "LLMConnectionError",
    "LLMError",
    "LLMResponseError",
    "SystemMessage",
    "UserMessage",
    "message_to_llm_dict",
]
