"""LLM agents and the message classes of LLM chats.

The agents live in submodules so that each SDK is imported only when its agent is used:

- `miniagents.ext.llm.openai`: ``openai_agent`` (extra ``miniagents[openai]``);
- `miniagents.ext.llm.anthropic`: ``anthropic_agent`` (extra ``miniagents[anthropic]``);
- `miniagents.ext.llm.llama_cpp`: ``llama_cpp_agent``, a local GGUF model in process, SmolLM2-135M-Instruct by
  default (extra ``miniagents[local]``; no key, no network);
- `miniagents.ext.llm.testing`: fake LLM agents for tests (no extra);
- `miniagents.ext.llm.tools`: tools a model may call (functions, agents); `miniagents.ext.llm.mcp`: the tools
  of MCP servers (extra ``miniagents[mcp]``);
- `miniagents.ext.llm.output`: structured output (``output_type=``) and its partial values while streaming.

All of them share one agent loop. Without tools they reply with **one** streamed `AssistantMessage` promise;
with tools, each model turn adds its text and a `ToolCallMessage` per call, then a `ToolResultMessage` per call,
until the final answer. Provider failures are raised while a message promise is iterated or awaited, as
`LLMError`s (see `miniagents.ext.llm.errors`).

An assistant message written by *another* agent (its ``agent_alias`` differs) is sent to the model as a user
turn, so chaining LLM agents (``agent_chain``, ``achain_loop``) hands each step the previous step's answer as
its input; pass ``other_agents_as_user=False`` for the earlier behaviour (kept as an assistant turn).

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

from miniagents.ext.llm.errors import (
    LLMAPIStatusError,
    LLMConnectionError,
    LLMError,
    LLMMaxTurnsError,
    LLMOutputError,
    LLMResponseError,
    LLMToolError,
)
from miniagents.ext.llm.llm_common import (
    AssistantMessage,
    SystemMessage,
    ToolCallMessage,
    ToolResultMessage,
    UserMessage,
    message_to_llm_dict,
)

__all__ = [
    "AssistantMessage",
    "LLMAPIStatusError",
    "LLMConnectionError",
    "LLMError",
    "LLMMaxTurnsError",
    "LLMOutputError",
    "LLMResponseError",
    "LLMToolError",
    "SystemMessage",
    "ToolCallMessage",
    "ToolResultMessage",
    "UserMessage",
    "message_to_llm_dict",
]
