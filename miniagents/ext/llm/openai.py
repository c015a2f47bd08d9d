"""`openai_agent`: chat completions through the official ``openai`` SDK (extra ``miniagents[openai]``).

It works with OpenAI and with any server that speaks the same API (``python -m llama_cpp.server``, vLLM, Ollama
…): pass ``async_client=openai.AsyncOpenAI(base_url=...)``, or set ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``
for the default client.

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

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from miniagents.ext.llm._support import (
    ClientPerLoop,
    absorb_chat_chunk,
    absorb_chat_response,
    aprompt_dicts,
    import_sdk,
    preliminary_metadata,
    resolve_stream,
    translate_sdk_error,
)
from miniagents.ext.llm._tracing import trace_llm_streamer
from miniagents.ext.llm.llm_common import AssistantMessage
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


@miniagent
async def openai_agent(
    ctx: InteractionContext,
    model: str,
    stream: bool | None = None,
    system: str | None = None,
    n: int = 1,
    async_client: AsyncOpenAI | None = None,
    reply_metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """An OpenAI chat model: replies with one `OpenAIMessage` streamed token by token.

    Args:
        ctx: the interaction context (passed by the framework).
        model: the model name, e.g. ``"gpt-4o-mini"``.
        stream: stream tokens as they come (True) or get the whole answer as one token (False); None takes
            ``MiniAgents.get_current().stream_llm_tokens_by_default``.
        system: a system prompt put before the input messages.
        n: must be 1 (one reply per inquiry).
        async_client: an ``openai.AsyncOpenAI``; by default one ``AsyncOpenAI()`` per event loop, created on
            first use (it reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``).
        reply_metadata: extra fields for the reply message, known before its first token.
        **kwargs: passed to ``chat.completions.create`` as they are (``max_tokens``, ``temperature`` …).

    The input messages become chat dicts through `message_to_llm_dict`. The request is sent once the reply is
    being streamed (right away: the reply promise starts as soon as possible).

    Raises:
        ValueError: ``n`` is not 1 (raised by the reply sequence).
        ImportError: the ``openai`` package is not installed (raised by the reply sequence).
        LLMError: any failure of the request or the API, raised while the reply *message* is iterated or
            awaited: `LLMAPIStatusError` (401, 429, 500 …), `LLMConnectionError` (refused, timeout),
            `LLMResponseError`, or `LLMError` for anything else the SDK raised (e.g. no API key). The SDK's
            exception is its ``__cause__``.
    """
    if n != 1:
        raise ValueError(f"openai_agent supports only n=1 (one reply per inquiry), got n={n}")
    stream = resolve_stream(stream)
    sdk = _import_openai()

    async def stream_tokens(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        messages = await aprompt_dicts(ctx, system)
        try:
            client = async_client if async_client is not None else _default_clients.get()
            # Typed loosely on purpose: the SDK's overloads cannot see `stream` through **kwargs.
            create: Any = client.chat.completions.create
            if stream:
                chunks = await create(messages=messages, model=model, stream=True, **kwargs)
                async with chunks:
                    async for chunk in chunks:
                        token = absorb_chat_chunk(chunk.model_dump(), metadata_so_far)
                        if token:
                            yield token
            else:
                response = await create(messages=messages, model=model, stream=False, **kwargs)
                token = absorb_chat_response(response.model_dump(), metadata_so_far, _PROVIDER, model)
                if token:
                    yield token
        except sdk.OpenAIError as error:
            raise translate_sdk_error(error, sdk, _PROVIDER, model) from error

    ctx.reply(
        OpenAIMessage.promise(
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
