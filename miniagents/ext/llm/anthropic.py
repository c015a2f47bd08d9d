"""`anthropic_agent`: the Messages API through the official ``anthropic`` SDK (extra ``miniagents[anthropic]``).

Tools (``tools=[...]``, see `miniagents.ext.llm.tools`) go out as ``tools`` with ``input_schema``; the streamed
``tool_use`` blocks and their ``input_json_delta`` pieces become `ToolCallMessage` replies whose tokens are the
argument JSON as it streams, and results go back as ``tool_result`` blocks. ``output_type=`` is asked for through
a forced tool named ``final_output`` whose input schema is the type's (the API has no JSON-schema response
format); the final message's tokens are that tool's input JSON.

Example:
    ```python
    from miniagents import MiniAgents
    from miniagents.ext.llm import UserMessage
    from miniagents.ext.llm.anthropic import anthropic_agent

    claude_agent = anthropic_agent.fork(model="claude-3-5-haiku-latest")


    async def main() -> None:
        async for token in claude_agent.inquire(UserMessage("Hi!"), max_tokens=200).as_single_promise():
            print(token, end="", flush=True)
        print()


    MiniAgents().run(main())
    ```
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from miniagents._text_io import utf8_texts_in
from miniagents.ext.llm._loop import (
    DEFAULT_MAX_TURNS,
    AgentLoop,
    Event,
    LoopOptions,
    MetadataDelta,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    TurnRequest,
)
from miniagents.ext.llm._support import ClientPerLoop, import_sdk, translate_sdk_error
from miniagents.ext.llm.llm_common import AssistantMessage, ToolCallMessage, ToolResultMessage, message_to_llm_dict
from miniagents.ext.llm.tools import ToolLike
from miniagents.messages import Message
from miniagents.miniagents import InteractionContext, miniagent

if TYPE_CHECKING:
    from types import ModuleType

    from anthropic import AsyncAnthropic

__all__ = ["AnthropicMessage", "DEFAULT_MAX_TOKENS", "anthropic_agent", "build_anthropic_request"]

_PROVIDER = "anthropic"

DEFAULT_MAX_TOKENS = 1024
"""The ``max_tokens`` sent when none is given (the API requires one)."""


def _import_anthropic() -> ModuleType:
    """The one place where the ``anthropic`` SDK is imported."""
    return import_sdk("anthropic", "anthropic")


def _new_default_client() -> AsyncAnthropic:
    sdk = _import_anthropic()
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        # (the SDK would make the client and fail each request with a TypeError about "authentication methods")
        raise sdk.AnthropicError(
            "no API key: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), or fork the agent with "
            "async_client=anthropic.AsyncAnthropic(api_key=...)"
        )
    client: AsyncAnthropic = sdk.AsyncAnthropic()
    return client


_default_clients: ClientPerLoop[AsyncAnthropic] = ClientPerLoop(_new_default_client)


class AnthropicMessage(AssistantMessage):
    """A reply of `anthropic_agent`.

    Besides ``text``, ``role``, ``model`` (the requested name) and ``agent_alias``, it carries the final message's
    metadata: ``id``, ``type``, ``stop_reason`` (e.g. ``"end_turn"``), ``stop_sequence`` and ``usage``.
    """


class _AnthropicAdapter:
    """Messages API requests and their event streams, for the agent loop."""

    provider = _PROVIDER
    message_class = AnthropicMessage
    native_output = False
    wrap_errors = True

    def __init__(
        self,
        sdk: ModuleType,
        model: str,
        async_client: AsyncAnthropic | None,
        fake_first_user_message: str,
        message_delimiter_for_same_role: str,
        kwargs: dict[str, Any],
    ) -> None:
        self.sdk = sdk
        self.model = model
        self.async_client = async_client
        self.fake_first_user_message = fake_first_user_message
        self.message_delimiter_for_same_role = message_delimiter_for_same_role
        self.kwargs = kwargs

    async def astream(self, request: TurnRequest) -> AsyncGenerator[Event, None]:
        params = build_anthropic_request(
            request.messages,
            system=request.system,
            fake_first_user_message=self.fake_first_user_message,
            message_delimiter_for_same_role=self.message_delimiter_for_same_role,
        )
        params.update(_tool_params(request))
        params.update(self.kwargs)
        try:
            client = self.async_client if self.async_client is not None else _default_clients.get()
            create: Any = client.messages.create
            if request.stream:
                events = await create(model=self.model, stream=True, **params)
                async with events:
                    async for event in events:
                        for item in _stream_event_events(event.model_dump()):
                            yield item
            else:
                response = await create(model=self.model, stream=False, **params)
                for item in _response_events(response.model_dump()):
                    yield item
        except self.sdk.AnthropicError as error:
            raise translate_sdk_error(error, self.sdk, _PROVIDER, self.model) from error


def _tool_params(request: TurnRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    params: dict[str, Any] = {
        "tools": [
            {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
            for spec in request.tools
        ]
    }
    choice: dict[str, Any] | None = None
    if request.tool_choice is not None:
        kinds = {"auto": "auto", "required": "any", "none": "none"}
        choice = (
            {"type": kinds[request.tool_choice]}
            if request.tool_choice in kinds
            else {"type": "tool", "name": request.tool_choice}
        )
    if request.parallel_tool_calls is False:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        params["tool_choice"] = choice
    return params


def _stream_event_events(event: dict[str, Any]) -> Iterator[Event]:
    """The events of one raw stream event (``message_start``, ``content_block_delta`` …) as a dict."""
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            yield TextDelta(delta.get("text") or "")
        elif delta.get("type") == "input_json_delta":
            yield ToolCallDelta(index=event.get("index") or 0, arguments=delta.get("partial_json") or "")
    elif kind == "content_block_start":
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            yield ToolCallDelta(index=event.get("index") or 0, call_id=block.get("id"), name=block.get("name"))
        elif block.get("type") == "text" and block.get("text"):
            yield TextDelta(block["text"])
    elif kind == "message_start":
        message = dict(event.get("message") or {})
        message.pop("content", None)
        yield MetadataDelta(message)
    elif kind == "message_delta":
        yield MetadataDelta({**(event.get("delta") or {}), "usage": event.get("usage") or {}})


def _response_events(response: dict[str, Any]) -> Iterator[Event]:
    """The events of a whole (non-streamed) message: its text blocks joined, then its tool calls."""
    content = response.pop("content", None) or []
    text = "".join(block.get("text") or "" for block in content if block.get("type") == "text")
    if text:
        yield TextDelta(text)
    calls = [block for block in content if block.get("type") == "tool_use"]
    for index, block in enumerate(calls):
        yield ToolCallDelta(
            index=index, arguments=json.dumps(block.get("input") or {}), call_id=block.get("id"), name=block.get("name")
        )
    yield MetadataDelta(response)


@miniagent
async def anthropic_agent(
    ctx: InteractionContext,
    model: str,
    stream: bool | None = None,
    system: str | None = None,
    fake_first_user_message: str = "/start",
    message_delimiter_for_same_role: str = "\n\n",
    async_client: AsyncAnthropic | None = None,
    reply_metadata: dict[str, Any] | None = None,
    tools: Iterable[ToolLike] | None = None,
    tool_choice: ToolChoice = None,
    parallel_tool_calls: bool | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_tool_rounds: int | None = None,
    output_type: Any = None,
    raise_tool_errors: bool = False,
    other_agents_as_user: bool = True,
    **kwargs: Any,
) -> None:
    """An Anthropic model: replies with `AnthropicMessage` s streamed token by token.

    Without tools the reply is **one** `AnthropicMessage`; with tools, see `openai_agent` for the shape.

    Args:
        ctx: the interaction context (passed by the framework).
        model: the model name, e.g. ``"claude-3-5-sonnet-20240620"``.
        stream: stream tokens as they come (True) or get the whole answer as one token (False); None takes
            ``MiniAgents.get_current().stream_llm_tokens_by_default``.
        system: a system prompt; system-role input messages are appended to it (see `build_anthropic_request`).
        fake_first_user_message: the user turn put first when the conversation does not start with one (the API
            requires it), and sent alone when there is no input at all.
        message_delimiter_for_same_role: joins consecutive messages of the same role (and the system parts).
        async_client: an ``anthropic.AsyncAnthropic`` (through ``fork``); by default one ``AsyncAnthropic()`` per
            event loop, created on first use (it reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``).
        reply_metadata: extra fields for the reply messages, known before their first token.
        tools: see `openai_agent`.
        tool_choice: ``"auto"``, ``"required"`` (the API's ``any``), ``"none"`` or a tool name.
        parallel_tool_calls: False sends ``disable_parallel_tool_use``.
        max_turns: see `openai_agent`.
        max_tool_rounds: see `openai_agent`.
        output_type: see `openai_agent`; asked for through the forced ``final_output`` tool.
        raise_tool_errors: see `openai_agent`.
        other_agents_as_user: see `openai_agent`.
        **kwargs: passed to ``messages.create`` as they are; ``max_tokens`` defaults to `DEFAULT_MAX_TOKENS`
            (1024).

    Raises:
        ImportError: the ``anthropic`` package is not installed (raised by the reply sequence).
        LLMMaxTurnsError, LLMToolError: raised by the reply sequence, after the messages so far.
        LLMError: any failure of the request, the API or the stream, raised while a reply *message* is iterated
            or awaited: `LLMAPIStatusError` (401, 429, 500, 529 …), `LLMConnectionError` (refused, timeout),
            `LLMResponseError` (`LLMOutputError` for invalid structured output), or `LLMError` for anything
            else. The original exception is its ``__cause__``.
    """
    kwargs.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    options = LoopOptions.from_arguments(locals())
    adapter = _AnthropicAdapter(
        _import_anthropic(), model, async_client, fake_first_user_message, message_delimiter_for_same_role, kwargs
    )
    await AgentLoop(ctx, adapter, options).arun()


def build_anthropic_request(
    messages: Iterable[Message],
    system: str | None = None,
    fake_first_user_message: str = "/start",
    message_delimiter_for_same_role: str = "\n\n",
) -> dict[str, Any]:
    r"""Turn input messages into the ``messages`` (and ``system``) parameters of the Messages API.

    1. Every message becomes a dict through `message_to_llm_dict`; a `ToolCallMessage` becomes an assistant
       ``tool_use`` block and a `ToolResultMessage` a user ``tool_result`` block.
    2. System-role dicts leave the conversation.
    3. If the conversation is empty or does not start with a user turn, ``fake_first_user_message`` is put first.
    4. Consecutive dicts of the same role are merged: text contents joined with the delimiter, or, when blocks
       are involved, their blocks in order.
    5. ``system`` and then the system messages, joined with the delimiter, become the ``system`` parameter;
       without either there is no ``system`` key at all.
    6. A lone surrogate in a text (which UTF-8, and so the API, cannot take) becomes U+FFFD, and a surrogate pair
       its character.

    Returns:
        ``{"messages": [...], "system": "..."}`` (``system`` only when there is one).

    Example:
        >>> from miniagents.ext.llm import SystemMessage, UserMessage
        >>> build_anthropic_request([SystemMessage("Be brief."), UserMessage("Hi"), UserMessage("there")])
        {'messages': [{'role': 'user', 'content': 'Hi\n\nthere'}], 'system': 'Be brief.'}
    """
    dicts = [_anthropic_dict(message) for message in messages]
    system_parts = [system] if system else []
    system_parts.extend(str(d["content"]) for d in dicts if d["role"] == "system")
    conversation = [d for d in dicts if d["role"] != "system"]
    if not conversation or conversation[0]["role"] != "user":
        conversation.insert(0, {"role": "user", "content": fake_first_user_message})
    merged: list[dict[str, Any]] = []
    for d in conversation:
        if merged and merged[-1]["role"] == d["role"]:
            last = merged[-1]
            if isinstance(last["content"], str) and isinstance(d["content"], str):
                last["content"] += message_delimiter_for_same_role + d["content"]
            else:
                last["content"] = [*_blocks(last["content"]), *_blocks(d["content"])]
        else:
            merged.append(dict(d))
    request: dict[str, Any] = {"messages": merged}
    if system_parts:
        request["system"] = message_delimiter_for_same_role.join(system_parts)
    return utf8_texts_in(request)


def _anthropic_dict(message: Message) -> dict[str, Any]:
    if isinstance(message, ToolCallMessage):
        try:
            arguments: Any = message.arguments
        except ValueError:
            arguments = {}
        block = {"type": "tool_use", "id": message.tool_call_id, "name": message.tool_name, "input": arguments}
        return {"role": "assistant", "content": [block]}
    if isinstance(message, ToolResultMessage):
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": str(message)}
        if message.is_error:
            result["is_error"] = True
        return {"role": "user", "content": [result]}
    return message_to_llm_dict(message)


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content
