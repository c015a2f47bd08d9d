"""`anthropic_agent`: the Messages API through the official ``anthropic`` SDK (extra ``miniagents[anthropic]``).

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

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from miniagents.ext.llm._support import (
    ClientPerLoop,
    aprompt_dicts,
    import_sdk,
    preliminary_metadata,
    resolve_stream,
    translate_sdk_error,
)
from miniagents.ext.llm._tracing import trace_llm_streamer
from miniagents.ext.llm.llm_common import AssistantMessage, message_to_llm_dict
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
    client: AsyncAnthropic = _import_anthropic().AsyncAnthropic()
    return client


_default_clients: ClientPerLoop[AsyncAnthropic] = ClientPerLoop(_new_default_client)


class AnthropicMessage(AssistantMessage):
    """A reply of `anthropic_agent`.

    Besides ``text``, ``role``, ``model`` (the requested name) and ``agent_alias``, it carries the final message's
    metadata: ``id``, ``type``, ``stop_reason`` (e.g. ``"end_turn"``), ``stop_sequence`` and ``usage``.
    """


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
    **kwargs: Any,
) -> None:
    """An Anthropic model: replies with one `AnthropicMessage` streamed token by token.

    Args:
        ctx: the interaction context (passed by the framework).
        model: the model name, e.g. ``"claude-3-5-sonnet-20240620"``.
        stream: stream tokens as they come (True) or get the whole answer as one token (False); None takes
            ``MiniAgents.get_current().stream_llm_tokens_by_default``.
        system: a system prompt; system-role input messages are appended to it (see `build_anthropic_request`).
        fake_first_user_message: the user turn put first when the conversation does not start with one (the API
            requires it), and sent alone when there is no input at all.
        message_delimiter_for_same_role: joins consecutive messages of the same role (and the system parts).
        async_client: an ``anthropic.AsyncAnthropic``; by default one ``AsyncAnthropic()`` per event loop,
            created on first use (it reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``).
        reply_metadata: extra fields for the reply message, known before its first token.
        **kwargs: passed to ``messages.stream`` / ``messages.create`` as they are; ``max_tokens`` defaults to
            `DEFAULT_MAX_TOKENS` (1024).

    Raises:
        ImportError: the ``anthropic`` package is not installed (raised by the reply sequence).
        LLMError: any failure of the request or the API, raised while the reply *message* is iterated or
            awaited: `LLMAPIStatusError` (401, 429, 500, 529 …), `LLMConnectionError` (refused, timeout),
            `LLMResponseError`, or `LLMError` for anything else the SDK raised (e.g. no API key). The SDK's
            exception is its ``__cause__``.
    """
    stream = resolve_stream(stream)
    sdk = _import_anthropic()
    kwargs.setdefault("max_tokens", DEFAULT_MAX_TOKENS)

    async def stream_tokens(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        request = build_anthropic_request(
            await ctx.message_promises,
            system=system,
            fake_first_user_message=fake_first_user_message,
            message_delimiter_for_same_role=message_delimiter_for_same_role,
        )
        try:
            client = async_client if async_client is not None else _default_clients.get()
            if stream:
                async with client.messages.stream(model=model, **request, **kwargs) as message_stream:
                    async for token in message_stream.text_stream:
                        if token:
                            yield token
                    final_message = await message_stream.get_final_message()
                _absorb_final_message(final_message.model_dump(), metadata_so_far)
            else:
                response = await client.messages.create(model=model, stream=False, **request, **kwargs)
                text = _absorb_final_message(response.model_dump(), metadata_so_far)
                if text:
                    yield text
        except sdk.AnthropicError as error:
            raise translate_sdk_error(error, sdk, _PROVIDER, model) from error

    ctx.reply(
        AnthropicMessage.promise(
            start_asap=True,
            message_token_streamer=trace_llm_streamer(
                stream_tokens,
                provider=_PROVIDER,
                model=model,
                stream=stream,
                request_parameters=kwargs,
                prompt=lambda: aprompt_dicts(ctx, system),
            ),
            **preliminary_metadata(ctx, model, reply_metadata),
        )
    )


def build_anthropic_request(
    messages: Iterable[Message],
    system: str | None = None,
    fake_first_user_message: str = "/start",
    message_delimiter_for_same_role: str = "\n\n",
) -> dict[str, Any]:
    r"""Turn input messages into the ``messages`` (and ``system``) parameters of the Messages API.

    1. Every message becomes a dict through `message_to_llm_dict`.
    2. System-role dicts leave the conversation.
    3. If the conversation is empty or does not start with a user turn, ``fake_first_user_message`` is put first.
    4. Consecutive dicts of the same role are merged, their contents joined with the delimiter.
    5. ``system`` and then the system messages, joined with the delimiter, become the ``system`` parameter;
       without either there is no ``system`` key at all.

    Returns:
        ``{"messages": [...], "system": "..."}`` (``system`` only when there is one).

    Example:
        >>> from miniagents.ext.llm import SystemMessage, UserMessage
        >>> build_anthropic_request([SystemMessage("Be brief."), UserMessage("Hi"), UserMessage("there")])
        {'messages': [{'role': 'user', 'content': 'Hi\n\nthere'}], 'system': 'Be brief.'}
    """
    dicts = [message_to_llm_dict(message) for message in messages]
    system_parts = [system] if system else []
    system_parts.extend(d["content"] for d in dicts if d["role"] == "system")
    conversation = [d for d in dicts if d["role"] != "system"]
    if not conversation or conversation[0]["role"] != "user":
        conversation.insert(0, {"role": "user", "content": fake_first_user_message})
    merged: list[dict[str, str]] = []
    for d in conversation:
        if merged and merged[-1]["role"] == d["role"]:
            merged[-1]["content"] += message_delimiter_for_same_role + d["content"]
        else:
            merged.append(dict(d))
    request: dict[str, Any] = {"messages": merged}
    if system_parts:
        request["system"] = message_delimiter_for_same_role.join(system_parts)
    return request


def _absorb_final_message(message: dict[str, Any], metadata_so_far: dict[str, Any]) -> str:
    """Put the final message's metadata (all but ``content``) into the dict; return the text of its text blocks.

    Non-streamed answers may hold any number of content blocks: their text blocks are joined, the others (tool
    use, thinking …) are left out of the text.
    """
    content = message.pop("content", None) or []
    metadata_so_far.update(message)
    return "".join(
        block.get("text") or "" for block in content if isinstance(block, dict) and block.get("type") == "text"
    )
