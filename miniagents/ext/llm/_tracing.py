"""The tracing hooks of LLM requests and tool calls: what an LLM agent (or a tool runner) calls, tracing on or off.

Both hooks cost one dictionary lookup when tracing is off: OpenTelemetry is an optional extra, so this module
never imports it; it looks for `miniagents.ext.tracing` in `sys.modules`, which is only there when the application
imported it (to make an `OpenTelemetryObserver`). The spans themselves are made in `miniagents.ext.tracing`.

* `trace_llm_streamer` wraps a ``message_token_streamer`` so that the request gets a ``chat {model}`` span that
  ends when the token stream ends. Call it in the agent function (it needs the current agent call)::

      ctx.reply(
          OpenAIMessage.promise(
              start_asap=True,
              message_token_streamer=trace_llm_streamer(stream_tokens, provider="openai", model=model, ...),
              ...
          )
      )

* `trace_tool_call` is a context manager around one tool execution, inside the agent call that runs the tool::

      with trace_tool_call("get_weather", call_id=tool_call_id, arguments=arguments) as tool_span:
          result = await run_the_tool(...)
          tool_span.set_result(result)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any

from miniagents.ext.llm._support import merge_metadata
from miniagents.miniagents import current_agent_call

__all__ = ["ToolCallSpan", "trace_llm_streamer", "trace_tool_call", "tracing_is_on"]

_TRACING_MODULE = "miniagents.ext.tracing"

TokenStreamer = Callable[[dict[str, Any]], AsyncIterator[str]]


def tracing_is_on() -> bool:
    """Whether an application made a tracing observer.

    When it did not, both hooks return at once; checking this first also saves building their arguments.
    """
    tracing = sys.modules.get(_TRACING_MODULE)
    return tracing is not None and bool(tracing._observers)


def trace_llm_streamer(
    streamer: TokenStreamer,
    *,
    provider: str,
    model: str | None,
    stream: bool,
    request_parameters: Mapping[str, Any] | None = None,
    prompt: Callable[[], Any] | None = None,
) -> TokenStreamer:
    """Wrap an LLM agent's token streamer in a ``chat {model}`` span (when the current agent call is traced).

    Call it from the agent function: the span becomes a child of the current agent call's span, whichever task
    later runs the streamer.

    Args:
        streamer: the ``message_token_streamer`` (``streamer(metadata_so_far)`` → async iterator of tokens).
        provider: the ``gen_ai.provider.name`` (``"openai"``, ``"anthropic"`` …).
        model: the requested model name.
        stream: whether the request streams.
        request_parameters: the request's keyword arguments; ``max_tokens``, ``temperature``, ``top_p``,
            ``top_k``, ``seed``, ``frequency_penalty``, ``presence_penalty`` and ``stop`` become span attributes.
        prompt: ``() -> list[dict]`` (or a coroutine of one) giving the prompt as chat dicts; only called when
            message content is captured, after the stream ended.

    Returns:
        ``streamer`` itself when tracing is off (or this call is not traced), a traced wrapper otherwise. The
        response metadata the streamer puts into ``metadata_so_far`` (``choices[].finish_reason`` or
        ``stop_reason``, ``usage``, ``id``, ``model``) becomes the span's response attributes.
    """
    tracing = sys.modules.get(_TRACING_MODULE)
    if tracing is None or not tracing._observers:
        return streamer
    wrapped: TokenStreamer = tracing.wrap_llm_streamer(
        streamer,
        current_agent_call(),
        provider=provider,
        model=model,
        stream=stream,
        request_parameters=request_parameters or {},
        prompt=prompt,
    )
    return wrapped


def trace_llm_events(
    events: AsyncGenerator[Any, None],
    *,
    provider: str,
    model: str | None,
    stream: bool,
    request_parameters: Mapping[str, Any] | None = None,
    prompt: Callable[[], Any] | None = None,
) -> AsyncGenerator[Any, None]:
    """Wrap one model request's stream of events (the LLM agent loop's) in a ``chat {model}`` span.

    Like `trace_llm_streamer`, for a stream of text, tool-call and metadata events: the events' ``metadata``
    (finish reason, usage, id, model) becomes the span's response attributes, the first event with text or
    arguments its time to first chunk. Returns ``events`` itself when tracing is off.
    """
    tracing = sys.modules.get(_TRACING_MODULE)
    if tracing is None or not tracing._observers:
        return events

    async def as_streamer(metadata_so_far: dict[str, Any]) -> AsyncIterator[Any]:
        async with contextlib.aclosing(events):
            async for event in events:
                metadata = getattr(event, "metadata", None)
                if isinstance(metadata, dict):
                    merge_metadata(metadata_so_far, metadata)  # (as the reply message merges it)
                yield event

    wrapped = trace_llm_streamer(
        as_streamer,
        provider=provider,
        model=model,
        stream=stream,
        request_parameters=request_parameters,
        prompt=prompt,
    )
    return wrapped({})  # type: ignore[return-value]


class ToolCallSpan:
    """What `trace_tool_call` gives: ``set_result`` records the tool's result (when content is captured).

    Without tracing it is a shared object that does nothing.
    """

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set_result(self, result: Any) -> None:
        """Record the tool's result (a string as it is, anything else as JSON) when content is captured."""
        if self._span is not None:
            self._span.set_result(result)

    def __enter__(self) -> ToolCallSpan:
        if self._span is not None:
            self._span.__enter__()  # (the span is current inside the block)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._span is not None:
            self._span.__exit__(exc_type, error, traceback)


_NO_SPAN = ToolCallSpan()


def trace_tool_call(
    name: str,
    *,
    call_id: str | None = None,
    description: str | None = None,
    tool_type: str = "function",
    arguments: Any = None,
) -> ToolCallSpan:
    """An ``execute_tool {name}`` span around one tool execution, as a ``with`` block (sync or async code).

    The span is a child of the current agent call's span; an exception leaving the block sets its status (ERROR,
    or ``"cancelled"`` for a cancellation) and is not swallowed.

    Args:
        name: the tool's name (``gen_ai.tool.name``).
        call_id: the model's id of this tool call (``gen_ai.tool.call.id``).
        description: the tool's description.
        tool_type: ``"function"`` (the default), ``"extension"`` or ``"datastore"``.
        arguments: the arguments (a string as it is, anything else as JSON); recorded only when content is
            captured.

    Returns:
        A `ToolCallSpan` context manager (a shared no-op one when tracing is off).
    """
    tracing = sys.modules.get(_TRACING_MODULE)
    if tracing is None or not tracing._observers:
        return _NO_SPAN
    span = tracing.start_tool_span(
        current_agent_call(),
        name,
        call_id=call_id,
        description=description,
        tool_type=tool_type,
        arguments=arguments,
    )
    return _NO_SPAN if span is None else ToolCallSpan(span)
