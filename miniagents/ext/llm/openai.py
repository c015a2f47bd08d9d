"""`openai_agent`: chat completions through the official ``openai`` SDK (extra ``miniagents[openai]``).

It works with OpenAI and with any server that speaks the same API (llama.cpp's server, vLLM, Ollama …): give
``async_client=openai.AsyncOpenAI(base_url=...)`` through ``fork`` (a client, like tools and output types, is not
freezable, so it cannot be an ``inquire`` kwarg), or set ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` for the
default client.

Tools (``tools=[...]``, see `miniagents.ext.llm.tools`) go out as ``tools`` with ``tool_choice`` and
``parallel_tool_calls``; the streamed ``tool_calls`` deltas become `ToolCallMessage` replies whose tokens are the
argument JSON as it streams. ``output_type=`` goes out as a ``response_format`` JSON schema (see
`miniagents.ext.llm.output`).

Example:
    ```python
    from miniagents import MiniAgents, Message
    from miniagents.ext.llm.openai import openai_agent

    gpt_agent = openai_agent.fork(model="gpt-4o-mini")


    async def main() -> None:
        replies = gpt_agent.inquire(Message("How are you?", role="user"), system="Be brief.", max_tokens=100)
        async for message_promise in replies:
            async for token in message_promise:
                print(token, end="", flush=True)
            print()


    MiniAgents().run(main())
    ```
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from miniagents.ext.llm._loop import (
    DEFAULT_MAX_TURNS,
    AgentLoop,
    Event,
    LoopOptions,
    ToolCalling,
    ToolChoice,
    TurnRequest,
    chat_chunk_events,
    chat_response_events,
    openai_chat_messages,
    openai_request_params,
)
from miniagents.ext.llm._support import ClientPerLoop, import_sdk, translate_sdk_error
from miniagents.ext.llm.llm_common import AssistantMessage
from miniagents.ext.llm.tools import ToolLike
from miniagents.miniagents import InteractionContext, miniagent

if TYPE_CHECKING:
    from types import ModuleType

    from openai import AsyncOpenAI

__all__ = ["OpenAIMessage", "openai_agent"]

_PROVIDER = "openai"


def _import_openai() -> ModuleType:
    """The one place where the ``openai`` SDK is imported."""
    return import_sdk("openai", "openai")


def _new_default_client() -> AsyncOpenAI:
    client: AsyncOpenAI = _import_openai().AsyncOpenAI()
    return client


_default_clients: ClientPerLoop[AsyncOpenAI] = ClientPerLoop(_new_default_client)


class OpenAIMessage(AssistantMessage):
    """A reply of `openai_agent`.

    Besides ``text``, ``role``, ``model`` (the requested name) and ``agent_alias``, it carries the response
    metadata, e.g. ``id``, ``created``, ``choices[0].finish_reason`` and, when the API sends it, ``usage``.
    """


class _OpenAIAdapter:
    """Chat completions requests and their streams, for the agent loop."""

    provider = _PROVIDER
    message_class = OpenAIMessage
    native_output = True
    wrap_errors = True

    def __init__(self, sdk: ModuleType, model: str, async_client: AsyncOpenAI | None, kwargs: dict[str, Any]):
        self.sdk = sdk
        self.model = model
        self.async_client = async_client
        self.kwargs = kwargs

    async def astream(self, request: TurnRequest) -> AsyncGenerator[Event, None]:
        messages = openai_chat_messages(request.system, request.messages)
        params = {**openai_request_params(request), **self.kwargs}
        try:
            client = self.async_client if self.async_client is not None else _default_clients.get()
            # Typed loosely on purpose: the SDK's overloads cannot see `stream` through **params.
            create: Any = client.chat.completions.create
            if request.stream:
                chunks = await create(messages=messages, model=self.model, stream=True, **params)
                async with chunks:
                    async for chunk in chunks:
                        for event in chat_chunk_events(chunk.model_dump()):
                            yield event
            else:
                response = await create(messages=messages, model=self.model, stream=False, **params)
                for event in chat_response_events(response.model_dump(), _PROVIDER, self.model):
                    yield event
        except self.sdk.OpenAIError as error:
            raise translate_sdk_error(error, self.sdk, _PROVIDER, self.model) from error


@miniagent
async def openai_agent(
    ctx: InteractionContext,
    model: str,
    stream: bool | None = None,
    system: str | None = None,
    n: int = 1,
    async_client: AsyncOpenAI | None = None,
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
    **kwargs: Any,
) -> None:
    """An OpenAI chat model: replies with `OpenAIMessage` s streamed token by token.

    Without tools the reply is **one** `OpenAIMessage`. With tools it is, per model turn, the turn's text (if
    any) and a `ToolCallMessage` per call, then a `ToolResultMessage` per call once the tools ran, and at last
    the final answer.

    Args:
        ctx: the interaction context (passed by the framework).
        model: the model name, e.g. ``"gpt-4o-mini"``.
        stream: stream tokens as they come (True) or get the whole answer as one token (False); None takes
            ``MiniAgents.get_current().stream_llm_tokens_by_default``.
        system: a system prompt put before the input messages.
        n: must be 1 (one reply per inquiry).
        async_client: an ``openai.AsyncOpenAI`` (through ``fork``: it is not freezable); by default one
            ``AsyncOpenAI()`` per event loop, created on first use (it reads ``OPENAI_API_KEY`` and
            ``OPENAI_BASE_URL``).
        reply_metadata: extra fields for the reply messages, known before their first token.
        tools: functions, agents, `Tool` s and tool sources the model may call (see `miniagents.ext.llm.tools`;
            through ``fork``).
        tool_choice: ``"auto"``, ``"required"``, ``"none"`` or a tool name; a required or named call is forced
            in the first turn only. None leaves it to the API.
        parallel_tool_calls: allow several calls per turn (the API's default when None).
        max_turns: the most model requests per inquiry; `LLMMaxTurnsError` when the model still calls tools.
        max_tool_rounds: after this many turns with tool calls, the tools are withdrawn (``tool_choice="none"``)
            and the model must answer; None: no such limit (small models may call tools over and over).
        output_type: a type pydantic validates (through ``fork``); the final message is then a
            `StructuredOutputMessage` whose ``output`` is the value (see `miniagents.ext.llm.output`). Its JSON
            schema goes out as a ``response_format`` with ``"strict": true`` (the API then guarantees an answer
            that follows it) when it has a strict form that accepts the same values: every object closed with
            ``additionalProperties: false`` and all its fields required, a field defaulting to None and
            accepting None (``note: str | None = None``) sent as required and nullable, and only keywords
            strict mode knows. Otherwise, e.g. a field with another default (``score: int = 0``, which strict
            mode would force the model to fill in), ``dict[str, ...]``, ``min_length`` or a ``uri`` format, it
            goes out as pydantic made it, without ``strict``.
        raise_tool_errors: raise `LLMToolError` when a tool raises, instead of telling the model the error.
        other_agents_as_user: send an assistant message of *another* agent (its ``agent_alias`` differs) as a
            user turn, so a chain of LLM agents hands each step the previous step's answer as its input; False
            keeps such messages as assistant turns (the behaviour before).
        tool_calling: ``"native"`` sends ``tools`` (the API's tool calling); ``"json"`` asks for a JSON answer
            (``{"tool_calls": [...]}`` or the answer) through a ``response_format`` schema instead, for
            OpenAI-compatible servers that take JSON schemas but whose model has no tool calling (llama.cpp's
            server with a chat template that knows no tools, e.g. SmolLM2's).
        **kwargs: passed to ``chat.completions.create`` as they are (``max_tokens``, ``temperature`` …).

    The input messages become chat dicts through `message_to_llm_dict`. The request is sent right away.

    Raises:
        ValueError: ``n`` is not 1, or ``max_turns`` < 1 (raised by the reply sequence).
        ImportError: the ``openai`` package is not installed (raised by the reply sequence).
        LLMMaxTurnsError, LLMToolError: raised by the reply sequence, after the messages so far.
        LLMError: any failure of the request, the API or the stream, raised while a reply *message* is iterated
            or awaited: `LLMAPIStatusError` (401, 429, 500 …), `LLMConnectionError` (refused, timeout),
            `LLMResponseError` (`LLMOutputError` for invalid structured output), or `LLMError` for anything
            else (no API key, a malformed chunk …). The original exception is its ``__cause__``.
    """
    if n != 1:
        raise ValueError(f"openai_agent supports only n=1 (one reply per inquiry), got n={n}")
    options = LoopOptions.from_arguments(locals())
    adapter = _OpenAIAdapter(_import_openai(), model, async_client, kwargs)
    await AgentLoop(ctx, adapter, options).arun()
