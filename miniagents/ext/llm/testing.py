"""Fake LLM agents, to test your own agents without keys, network or models.

- `scripted_llm_agent` replays scripted replies, one per inquiry.
- `function_llm_agent` answers with a function of the prompt (``def`` or ``async def``).

Both behave like the real LLM agents (`openai_agent`, `anthropic_agent`, `llama_cpp_agent`): they accept the
same kinds of parameters (``model``, ``system``, ``stream``, ``reply_metadata``, and any other keyword such as
``max_tokens``, which is ignored), reply with **one** streamed `AssistantMessage` (``role``, ``model``,
``agent_alias``, ``choices[0].finish_reason == "stop"``), and split its text into word-like tokens
(``"Hello there!"`` streams as ``"Hello "``, ``"there!"``), optionally waiting ``delay`` seconds before each
token. An exception (scripted, or raised by the function) surfaces at token level, like an API error.

Each fake records the prompts it received in its ``prompts`` list: one list of chat dicts per inquiry, in the
format the real agents send (``[{"role": "system", "content": ...}, {"role": "user", "content": ...}, ...]``).
Forks of a fake record into the same list.

Example:
    Swap the real LLM for a fake in a test of your own agent:

    >>> from miniagents import InteractionContext, MiniAgent, MiniAgents, miniagent
    >>> from miniagents.ext.llm.testing import scripted_llm_agent
    >>> def make_poet(llm: MiniAgent) -> MiniAgent:
    ...     @miniagent
    ...     async def poet_agent(ctx: InteractionContext) -> None:
    ...         ctx.reply(llm.inquire(ctx.message_promises, system="Answer in rhymes."))
    ...     return poet_agent
    >>> fake_llm = scripted_llm_agent(["Roses are red."], model="fake-gpt")
    >>> async def main() -> None:
    ...     async for message_promise in make_poet(fake_llm).inquire("Write a poem"):
    ...         async for token in message_promise:
    ...             print(repr(token))
    ...         message = await message_promise
    ...         print(message.role, message.model, message.agent_alias)
    >>> MiniAgents().run(main())
    'Roses '
    'are '
    'red.'
    assistant fake-gpt SCRIPTED_LLM
    >>> fake_llm.prompts
    [[{'role': 'system', 'content': 'Answer in rhymes.'}, {'role': 'user', 'content': 'Write a poem'}]]
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from miniagents.ext.llm._support import aprompt_dicts, preliminary_metadata, resolve_stream
from miniagents.ext.llm._tracing import trace_llm_streamer
from miniagents.ext.llm.llm_common import AssistantMessage
from miniagents.miniagents import InteractionContext, MiniAgent

__all__ = [
    "FakeLLMAgent",
    "FakeLLMMessage",
    "LLMFunction",
    "function_llm_agent",
    "scripted_llm_agent",
    "split_into_tokens",
]

LLMFunction = Callable[[list[dict[str, str]]], str | Awaitable[str]]
"""``def f(prompt: list[dict[str, str]]) -> str`` or ``async def f(prompt) -> str``: the reply to a prompt."""

_TOKEN_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")


class FakeLLMMessage(AssistantMessage):
    """A reply of a fake LLM agent (``choices[0].finish_reason`` is ``"stop"``)."""


class FakeLLMAgent(MiniAgent):
    """A `MiniAgent` made by `scripted_llm_agent` or `function_llm_agent`.

    Attributes:
        prompts: one list of chat dicts per inquiry received, in the order the prompts were read (forks of
            this agent append here too).
    """

    prompts: list[list[dict[str, str]]]


def split_into_tokens(text: str) -> list[str]:
    r"""Split text into word-like tokens, each word with the whitespace after it; ``"".join`` gives the text back.

    Example:
        >>> split_into_tokens("Hello there,\n world!")
        ['Hello ', 'there,\n ', 'world!']
    """
    return [token for token in _TOKEN_BOUNDARY.split(text) if token]


def scripted_llm_agent(
    replies: Iterable[str | BaseException],
    *,
    alias: str = "SCRIPTED_LLM",
    model: str = "scripted-llm",
    delay: float = 0.0,
) -> FakeLLMAgent:
    """Make a fake LLM agent that replies with the scripted texts, one per inquiry, in order.

    Args:
        replies: the reply texts; an exception instance in their place is raised at token level instead.
        alias: the agent's alias (and the replies' ``agent_alias``).
        model: the replies' ``model`` unless an inquiry passes ``model=``.
        delay: seconds to wait before each token (0: no waiting, but still one task switch per token).

    Returns:
        A `FakeLLMAgent`, whose ``prompts`` list records what it was asked.

    An inquiry after the script is used up gets an `IndexError` at token level.
    """
    script = list(replies)
    position = 0

    def next_reply(_: list[dict[str, str]]) -> str:
        nonlocal position
        if position >= len(script):
            raise IndexError(f"{alias} ran out of scripted replies: all {len(script)} were used")
        reply = script[position]
        position += 1
        if isinstance(reply, BaseException):
            raise reply
        return reply

    return function_llm_agent(next_reply, alias=alias, model=model, delay=delay)


def function_llm_agent(
    function: LLMFunction,
    *,
    alias: str = "FUNCTION_LLM",
    model: str = "function-llm",
    delay: float = 0.0,
) -> FakeLLMAgent:
    """Make a fake LLM agent whose reply is ``function(prompt)``.

    Args:
        function: called once per inquiry with the prompt as a list of chat dicts (system prompt first, as the
            real agents send it); returns the reply text, or a coroutine of it. What it raises is raised at
            token level.
        alias: the agent's alias (and the replies' ``agent_alias``).
        model: the replies' ``model`` unless an inquiry passes ``model=``.
        delay: seconds to wait before each token.

    Returns:
        A `FakeLLMAgent`, whose ``prompts`` list records what it was asked.

    Example:
        >>> echo_llm = function_llm_agent(lambda prompt: f"You said: {prompt[-1]['content']}")
    """
    prompts: list[list[dict[str, str]]] = []

    async def fake_llm(
        ctx: InteractionContext,
        model: str = model,
        stream: bool | None = None,
        system: str | None = None,
        reply_metadata: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        stream = resolve_stream(stream)

        async def stream_tokens(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
            prompt = await aprompt_dicts(ctx, system)
            prompts.append([dict(d) for d in prompt])
            text = function([dict(d) for d in prompt])
            if inspect.isawaitable(text):
                text = await text
            if not isinstance(text, str):
                raise TypeError(f"the function of {alias} returned {type(text).__name__}, not str")
            for token in split_into_tokens(text) if stream else [text] if text else []:
                await asyncio.sleep(delay)
                yield token
            metadata_so_far["choices"] = [{"index": 0, "finish_reason": "stop"}]

        ctx.reply(
            FakeLLMMessage.promise(
                start_asap=True,
                message_token_streamer=trace_llm_streamer(
                    stream_tokens,
                    provider="miniagents.fake",
                    model=model,
                    stream=stream,
                    prompt=lambda: aprompt_dicts(ctx, system),
                ),
                **preliminary_metadata(ctx, model, reply_metadata),
            )
        )

    agent = FakeLLMAgent(fake_llm, alias=alias, description=f"A fake LLM ({model}).")
    agent.prompts = prompts
    return agent
