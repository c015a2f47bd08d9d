"""Fake LLM agents, to test your own agents without keys, network or models.

- `scripted_llm_agent` replays scripted replies, one per model turn (one per inquiry, without tools).
- `function_llm_agent` answers with a function of the prompt (``def`` or ``async def``).

A reply may also call tools: a `ScriptedToolCall` (or a list of texts and `ScriptedToolCall` s) in place of a text
makes the fake answer that turn with those calls, exactly as a real model would; the agent loop then runs the
tools given with ``tools=[...]`` and asks the fake again, with the results in the prompt. With ``output_type=``
the scripted text is the JSON the "model" answers with. The fakes run the same agent loop as the real agents.

Both behave like the real LLM agents (`openai_agent`, `anthropic_agent`, `llama_cpp_agent`): they accept the
same kinds of parameters (``model``, ``system``, ``stream``, ``reply_metadata``, and any other keyword such as
``max_tokens``, which is ignored), reply with **one** streamed `AssistantMessage` (``role``, ``model``,
``agent_alias``, ``choices[0].finish_reason == "stop"``), and split its text into word-like tokens
(``"Hello there!"`` streams as ``"Hello "``, ``"there!"``), optionally waiting ``delay`` seconds before each
token. An exception (scripted, or raised by the function) surfaces at token level, like an API error.

Each fake records the prompts it received in its ``prompts`` list: one list of chat dicts per model turn, in the
OpenAI chat format (``[{"role": "system", "content": ...}, {"role": "user", "content": ...}, ...]``, tool calls
and results included), and the other request parameters (``tools``, ``tool_choice``, ``response_format`` in the
OpenAI format) in its ``requests`` list. Forks of a fake record into the same lists.

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
import itertools
import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from miniagents.ext.llm._loop import (
    DEFAULT_MAX_TURNS,
    AgentLoop,
    Event,
    LoopOptions,
    MetadataDelta,
    TextDelta,
    ToolCallDelta,
    ToolCalling,
    ToolChoice,
    TurnRequest,
    openai_chat_messages,
    openai_request_params,
)
from miniagents.ext.llm.llm_common import AssistantMessage
from miniagents.ext.llm.tools import ToolLike
from miniagents.miniagents import InteractionContext, MiniAgent

__all__ = [
    "FakeLLMAgent",
    "FakeLLMMessage",
    "FakeReply",
    "LLMFunction",
    "ScriptedToolCall",
    "function_llm_agent",
    "scripted_llm_agent",
    "split_into_tokens",
]

_TOKEN_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call a fake LLM makes.

    Attributes:
        name: the tool's name.
        arguments: the arguments, as a dict or as the raw JSON text (which may be broken on purpose).
        call_id: the call's id; ``call_<n>`` (counting per fake) by default.

    Example:
        >>> ScriptedToolCall("weather", {"city": "Paris"})
        ScriptedToolCall(name='weather', arguments={'city': 'Paris'}, call_id=None)
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None


FakeReply = str | ScriptedToolCall | Sequence[str | ScriptedToolCall]
"""What a fake answers one model turn with: a text, a tool call, or a list of texts and tool calls in order."""

LLMFunction = Callable[[list[dict[str, Any]]], FakeReply | Awaitable[FakeReply]]
"""``def f(prompt: list[dict]) -> FakeReply`` or ``async def f(prompt) -> FakeReply``: the answer to a prompt."""


class FakeLLMMessage(AssistantMessage):
    """A reply of a fake LLM agent (``choices[0].finish_reason`` is ``"stop"``, or ``"tool_calls"``)."""


class FakeLLMAgent(MiniAgent):
    """A `MiniAgent` made by `scripted_llm_agent` or `function_llm_agent`.

    Attributes:
        prompts: one list of chat dicts per model turn, in the order the prompts were read (forks of this agent
            append here too).
        requests: per model turn, the other request parameters in the OpenAI format (``tools``,
            ``tool_choice``, ``parallel_tool_calls``, ``response_format``; only those that were set).
    """

    prompts: list[list[dict[str, Any]]]
    requests: list[dict[str, Any]]


def split_into_tokens(text: str) -> list[str]:
    r"""Split text into word-like tokens, each word with the whitespace after it; ``"".join`` gives the text back.

    Example:
        >>> split_into_tokens("Hello there,\n world!")
        ['Hello ', 'there,\n ', 'world!']
    """
    return [token for token in _TOKEN_BOUNDARY.split(text) if token]


def scripted_llm_agent(
    replies: Iterable[FakeReply | BaseException],
    *,
    alias: str = "SCRIPTED_LLM",
    model: str = "scripted-llm",
    delay: float = 0.0,
) -> FakeLLMAgent:
    """Make a fake LLM agent that answers with the scripted replies, one per model turn, in order.

    Args:
        replies: the replies (see `FakeReply`); an exception instance in their place is raised at token level
            instead.
        alias: the agent's alias (and the replies' ``agent_alias``).
        model: the replies' ``model`` unless an inquiry passes ``model=``.
        delay: seconds to wait before each token (0: no waiting, but still one task switch per token).

    Returns:
        A `FakeLLMAgent`, whose ``prompts`` and ``requests`` lists record what it was asked.

    A turn after the script is used up gets an `IndexError` at token level.

    Example:
        A tool round trip: the fake calls ``add``, the loop runs it, the fake answers.

        >>> from miniagents import MiniAgents
        >>> def add(a: int, b: int) -> int:
        ...     return a + b
        >>> llm = scripted_llm_agent([ScriptedToolCall("add", {"a": 2, "b": 3}), "It is 5."]).fork(tools=[add])
        >>> async def main() -> None:
        ...     for message in await llm.inquire("What is 2 + 3?"):
        ...         print(type(message).__name__, repr(str(message)))
        >>> MiniAgents().run(main())
        ToolCallMessage '{"a": 2, "b": 3}'
        ToolResultMessage '5'
        FakeLLMMessage 'It is 5.'
    """
    script = list(replies)
    position = 0

    def next_reply(_: list[dict[str, Any]]) -> FakeReply:
        nonlocal position
        if position >= len(script):
            raise IndexError(f"{alias} ran out of scripted replies: all {len(script)} were used")
        reply = script[position]
        position += 1
        if isinstance(reply, BaseException):
            raise reply
        return reply

    return function_llm_agent(next_reply, alias=alias, model=model, delay=delay)


class _FakeAdapter:
    """The fake's side of the provider seam: the answer comes from a function."""

    provider = "fake"
    message_class = FakeLLMMessage
    native_output = True
    wrap_errors = False  # a scripted exception reaches the consumer as it is

    def __init__(self, agent: FakeLLMAgent, function: LLMFunction, model: str, delay: float, ids: Any) -> None:
        self.agent = agent
        self.function = function
        self.model = model
        self.delay = delay
        self.ids = ids

    async def astream(self, request: TurnRequest) -> AsyncGenerator[Event, None]:
        prompt = openai_chat_messages(request.system, request.messages)  # new dicts on every turn
        self.agent.prompts.append(prompt)
        self.agent.requests.append(openai_request_params(request))
        reply = self.function([dict(message) for message in prompt])
        if inspect.isawaitable(reply):
            reply = await reply
        parts: Sequence[Any] = (reply,) if isinstance(reply, (str, ScriptedToolCall)) else reply
        if not isinstance(parts, Sequence) or not all(isinstance(p, (str, ScriptedToolCall)) for p in parts):
            raise TypeError(
                f"the function of {self.agent.alias} returned {type(reply).__name__}: a fake LLM answers with a "
                "str, a ScriptedToolCall or a list of them"
            )
        delay, stream = self.delay, request.stream
        call_index = 0
        for part in parts:
            if isinstance(part, str):
                for token in split_into_tokens(part) if stream else (part,) if part else ():
                    await asyncio.sleep(delay)
                    yield TextDelta(token)
            else:
                call_id = part.call_id or f"call_{next(self.ids)}"
                arguments = part.arguments if isinstance(part.arguments, str) else json.dumps(part.arguments)
                await asyncio.sleep(delay)
                yield ToolCallDelta(call_index, "", call_id, part.name)
                for token in split_into_tokens(arguments) if stream else (arguments,):
                    await asyncio.sleep(delay)
                    yield ToolCallDelta(call_index, token)
                call_index += 1
        finish_reason = "tool_calls" if call_index else "stop"
        yield MetadataDelta({"choices": [{"index": 0, "finish_reason": finish_reason}]})


def function_llm_agent(
    function: LLMFunction,
    *,
    alias: str = "FUNCTION_LLM",
    model: str = "function-llm",
    delay: float = 0.0,
) -> FakeLLMAgent:
    """Make a fake LLM agent whose answer to each model turn is ``function(prompt)``.

    Args:
        function: called once per model turn with the prompt as a list of chat dicts (system prompt first, in
            the OpenAI chat format); returns a `FakeReply` (a text, a `ScriptedToolCall` or a list of them), or
            a coroutine of it. What it raises is raised at token level.
        alias: the agent's alias (and the replies' ``agent_alias``).
        model: the replies' ``model`` unless an inquiry passes ``model=``.
        delay: seconds to wait before each token.

    Returns:
        A `FakeLLMAgent`, whose ``prompts`` and ``requests`` lists record what it was asked.

    The agent takes the parameters of the real LLM agents (``model``, ``system``, ``stream``,
    ``reply_metadata``, ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``max_turns``, ``max_tool_rounds``,
    ``output_type``, ``raise_tool_errors``, ``other_agents_as_user``, ``tool_calling``); any other keyword
    (``max_tokens`` …) is ignored.

    Example:
        >>> echo_llm = function_llm_agent(lambda prompt: f"You said: {prompt[-1]['content']}")
    """
    ids = itertools.count(1)
    agent: FakeLLMAgent

    async def fake_llm(
        ctx: InteractionContext,
        model: str = model,
        stream: bool | None = None,
        system: str | None = None,
        reply_metadata: dict[str, Any] | None = None,
        tools: Iterable[ToolLike] | None = None,
        tool_choice: ToolChoice = None,
        parallel_tool_calls: bool | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        max_tool_rounds: int | None = None,
        output_type: Any = None,
        raise_tool_errors: bool = False,
        other_agents_as_user: bool = True,
        tool_calling: ToolCalling = "native",
        **_: Any,
    ) -> None:
        options = LoopOptions.from_arguments(locals())
        await AgentLoop(ctx, _FakeAdapter(agent, function, model, delay, ids), options).arun()

    agent = FakeLLMAgent(fake_llm, alias=alias, description=f"A fake LLM ({model}).")
    agent.prompts = []
    agent.requests = []
    return agent
