"""OpenTelemetry traces of a run: agent calls, LLM requests and tool calls (extra ``miniagents[tracing]``).

Register an `OpenTelemetryObserver` with the context and every agent call becomes a span::

    from miniagents import MiniAgents
    from miniagents.ext.tracing import OpenTelemetryObserver

    MiniAgents(observers=[OpenTelemetryObserver()]).run(main())

Nothing is exported unless a tracer provider is configured (``opentelemetry.trace.set_tracer_provider(...)`` or
``OpenTelemetryObserver(tracer_provider=...)``): with the bare ``opentelemetry-api`` the spans are no-ops. Without
an observer, nothing here runs at all (the LLM agents check `sys.modules` for this module before doing anything).

The spans follow the OpenTelemetry GenAI semantic conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ and gen-ai-agent-spans/):

* ``invoke_agent {alias}`` (kind INTERNAL) per agent call, a child of the span of the agent call that made it
  (``AgentCall.parent_call``), even though every agent runs in a task of its own; a top-level call is a child of
  the span that is current where it was inquired (if any); one span per call and tracer provider, however
  many observers see it. Attributes: ``gen_ai.operation.name``
  (``"invoke_agent"``), ``gen_ai.agent.name``, ``miniagents.agent_call.id``.
* ``chat {model}`` (kind CLIENT) per LLM request, a child of the LLM agent's call span. It starts when the request
  starts streaming and ends when the token stream ends (not when the agent function returns). Attributes:
  ``gen_ai.operation.name`` (``"chat"``), ``gen_ai.provider.name``, ``gen_ai.request.model`` and the request
  parameters that were given (``gen_ai.request.max_tokens``, ``temperature`` …), ``gen_ai.response.model``,
  ``gen_ai.response.id``, ``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens`` and ``gen_ai.response.time_to_first_chunk`` (seconds from the start of the
  request to its first token).
* ``execute_tool {name}`` (kind INTERNAL) per tool call made through ``miniagents.ext.llm._tracing.trace_tool_call``,
  a child of the calling agent's call span (a hook for tool runners).

A failed call sets the span status to ERROR with ``error.type`` and records the exception; a cancelled one sets
ERROR with the description ``"cancelled"`` and ``error.type`` set to the cancellation's class name.

Message content (inputs, replies, prompts, tool arguments and results) is recorded only when asked for:
``OpenTelemetryObserver(capture_message_content=True)`` or the environment variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (the name the OpenTelemetry GenAI instrumentations
use; their ``SPAN_ONLY`` and ``SPAN_AND_EVENT`` turn it on too). It goes into ``gen_ai.input.messages``,
``gen_ai.output.messages`` and ``gen_ai.system_instructions`` as JSON, in the conventions' parts format (text, tool
calls and tool results).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from miniagents._text_io import utf8_text
from miniagents.ext._background import start_detached
from miniagents.messages import Message, MessagePromise
from miniagents.miniagents import AgentCall, AgentCallStatus, RunObserver

__all__ = ["CAPTURE_CONTENT_ENV_VAR", "OpenTelemetryObserver"]

CAPTURE_CONTENT_ENV_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The environment variable that turns message content capture on when not given explicitly: ``true`` or ``1``,
or the values of the OpenTelemetry GenAI instrumentations that put content on spans, ``SPAN_ONLY`` and
``SPAN_AND_EVENT`` (any case); anything else (``false``, ``NO_CONTENT``, ``EVENT_ONLY`` …) leaves it off."""

_CONTENT_ON = frozenset({"true", "1", "span_only", "span_and_event"})

_INSTRUMENTATION_NAME = "miniagents"

# The request parameters of an LLM agent that have a GenAI attribute (``gen_ai.request.<name>``), with the
# attribute's type in the conventions (``temperature=1`` is recorded as the double 1.0).
_REQUEST_PARAMETERS: dict[str, tuple[str, type[int] | type[float]]] = {
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "max_completion_tokens": ("gen_ai.request.max_tokens", int),
    "temperature": ("gen_ai.request.temperature", float),
    "top_p": ("gen_ai.request.top_p", float),
    "top_k": ("gen_ai.request.top_k", float),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", float),
    "presence_penalty": ("gen_ai.request.presence_penalty", float),
    "seed": ("gen_ai.request.seed", int),
}

_observers: weakref.WeakSet[OpenTelemetryObserver] = weakref.WeakSet()
"""Every observer that may hold spans; the LLM and tool hooks look for the current call's span in them."""


class OpenTelemetryObserver(RunObserver):
    """A `RunObserver` that makes OpenTelemetry spans of agent calls (and of LLM and tool calls inside them).

    Args:
        tracer_provider: where the spans go; by default the global one (``opentelemetry.trace``), which exports
            nothing until the application configures it.
        capture_message_content: record message texts in the spans; None (the default) reads the environment
            variable `CAPTURE_CONTENT_ENV_VAR`.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> observer = OpenTelemetryObserver(tracer_provider=TracerProvider())
    """

    isolated = False  # its methods only start and end spans; its background work is started detached

    def __new__(
        cls, tracer_provider: TracerProvider | None = None, capture_message_content: bool | None = None
    ) -> OpenTelemetryObserver:
        """Make the observer: one that records message content also follows each call's messages.

        Without content the framework skips the per-message events altogether (it calls only the methods an
        observer defines), so tracing costs nothing per message.
        """
        if cls is OpenTelemetryObserver and _captures_content(capture_message_content):
            cls = _ContentCapturingObserver
        return super().__new__(cls)

    def __init__(
        self, tracer_provider: TracerProvider | None = None, capture_message_content: bool | None = None
    ) -> None:
        if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                f"tracer_provider must be an opentelemetry TracerProvider, got {type(tracer_provider).__name__}"
            )
        self.capture_message_content: bool = _captures_content(capture_message_content)
        self.tracer: Tracer = trace.get_tracer(_INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        # (the global provider is looked up when it is used: it may be set after this observer is made)
        self._provider: TracerProvider | None = tracer_provider
        self._spans: dict[AgentCall, Span] = {}
        self._content: dict[AgentCall, tuple[list[MessagePromise], list[MessagePromise]]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        _observers.add(self)

    def span_of(self, call: AgentCall) -> Span | None:
        """The span of a call that has started and not ended yet (None otherwise)."""
        return self._spans.get(call)

    def on_call_started(self, call: AgentCall) -> None:
        """Start the call's ``invoke_agent`` span, as a child of the parent call's span.

        Of a span inside the parent call's, rather: the span current where the call is made when it belongs to
        the parent's trace (a tool call's ``execute_tool``, or a span of the agent's own code).

        A call that another observer of the same tracer provider traces already (a nested context's, which is told
        first) gets no second span.
        """
        if len(_observers) > 1 and self._traced_elsewhere(call):
            return
        parent = call.parent_call
        context = None  # the current span's child: a top-level call's parent is where it was inquired
        if parent is not None:
            parent_span = self._spans.get(parent)
            if parent_span is None:  # (an enclosing context's observer has it)
                found = _find_call_span(parent)
                parent_span = None if found is None else found[1]
            if parent_span is not None:
                trace_id = parent_span.get_span_context().trace_id
                if trace.get_current_span().get_span_context().trace_id != trace_id:
                    context = trace.set_span_in_context(parent_span)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": call.agent_alias,
            "miniagents.agent_call.id": call.call_id,
        }
        if self.capture_message_content and call.kwargs is not None:
            attributes["miniagents.agent_call.kwargs"] = _to_json(call.kwargs.model_dump(exclude={"class_"}))
        self._spans[call] = self.tracer.start_span(
            f"invoke_agent {call.agent_alias}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=int(call.started_at * 1e9),
        )
        if self.capture_message_content:
            self._content[call] = ([], [])

    def on_call_entered(self, call: AgentCall) -> None:
        """Make the call's span the current one in its task: spans made in the agent's code become its children."""
        span = self._spans.get(call)
        if span is not None:
            otel_context.attach(trace.set_span_in_context(span))  # (the task's own context: no detach needed)

    def on_call_ended(self, call: AgentCall) -> None:
        """Set the span status from the call's and end the span (after its messages, when content is captured)."""
        span = self._spans.pop(call, None)
        if span is None:
            return
        _set_call_status(span, call)
        end_time = int(call.ended_at * 1e9) if call.ended_at is not None else None
        content = self._content.pop(call, None)
        if content is None:
            span.end(end_time=end_time)
            return
        inputs, replies = content
        task = start_detached(_aend_with_content(span, inputs, replies, end_time))  # (not cancelled with the call)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _traced_elsewhere(self, call: AgentCall) -> bool:
        provider = self._provider or trace.get_tracer_provider()
        for observer in list(_observers):
            if observer is not self and call in observer._spans:
                if (observer._provider or trace.get_tracer_provider()) is provider:
                    return True
        return False

    async def aflush(self) -> None:
        """Wait until the call spans that wait for their messages' content (``capture_message_content``) are ended.

        Leaving the `MiniAgents` context waits for them too.
        """
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    # The hooks of `miniagents.ext.llm._tracing` (which cannot import this module: OpenTelemetry is optional).

    def _start_child_span(
        self, call: AgentCall, name: str, kind: SpanKind, attributes: Mapping[str, Any]
    ) -> Span | None:
        parent_span = self._spans.get(call)
        if parent_span is None:
            return None
        return self.tracer.start_span(
            name, context=trace.set_span_in_context(parent_span), kind=kind, attributes=attributes
        )


def _set_call_status(span: Span, call: AgentCall) -> None:
    status = call.status
    if status == AgentCallStatus.FAILED:
        _set_error(span, call.error)
    elif status == AgentCallStatus.CANCELLED:
        _set_cancelled(span, call.error)


def _set_error(span: Span, error: BaseException | None) -> None:
    if error is None:
        span.set_status(Status(StatusCode.ERROR, "failed"))
        span.set_attribute("error.type", "_OTHER")
        return
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute("error.type", _qualified_name(type(error)))


def _set_cancelled(span: Span, error: BaseException | None) -> None:
    span.set_status(Status(StatusCode.ERROR, "cancelled"))
    span.set_attribute("error.type", _qualified_name(type(error)) if error is not None else "cancelled")


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _to_json(value: Any) -> str:
    """``value`` as JSON, as UTF-8 can hold it: an attribute must be UTF-8 to be exported (e.g. in OTLP's protobuf)."""
    return utf8_text(json.dumps(value, ensure_ascii=False, default=str))


def _message_dict(message: Any, default_role: str) -> dict[str, Any]:
    """One message in the GenAI conventions' format: ``{"role": ..., "parts": [{"type": "text", ...}]}``."""
    role = getattr(message, "role", None)
    return {
        "role": role if isinstance(role, str) and role else default_role,
        "parts": [{"type": "text", "content": str(message)}],
    }


async def _aresolved_messages(promises: Iterable[MessagePromise]) -> list[Message]:
    results = await asyncio.gather(*(promise.aresolve() for promise in promises), return_exceptions=True)
    return [result for result in results if isinstance(result, Message)]  # a failed message has no content


async def _aend_with_content(
    span: Span, inputs: list[MessagePromise], replies: list[MessagePromise], end_time: int | None
) -> None:
    try:
        input_messages = await _aresolved_messages(inputs)
        reply_messages = await _aresolved_messages(replies)
        span.set_attribute("gen_ai.input.messages", _to_json([_message_dict(m, "user") for m in input_messages]))
        span.set_attribute("gen_ai.output.messages", _to_json([_message_dict(m, "assistant") for m in reply_messages]))
    finally:
        span.end(end_time=end_time)


def _find_call_span(call: AgentCall | None) -> tuple[OpenTelemetryObserver, Span] | None:
    if call is None:
        return None
    for observer in list(_observers):
        span = observer._spans.get(call)
        if span is not None:
            return observer, span
    return None


class _ContentCapturingObserver(OpenTelemetryObserver):
    """`OpenTelemetryObserver` with message content: it also keeps each call's messages for its span."""

    def on_call_input(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Keep the input for the span (only when content is captured)."""
        content = self._content.get(call)
        if content is not None:
            content[0].append(message_promise)

    def on_call_reply(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Keep the reply for the span (only when content is captured)."""
        content = self._content.get(call)
        if content is not None:
            content[1].append(message_promise)


def _captures_content(capture_message_content: bool | None) -> bool:
    if capture_message_content is None:
        return os.environ.get(CAPTURE_CONTENT_ENV_VAR, "").strip().lower() in _CONTENT_ON
    return capture_message_content


def wrap_llm_streamer(
    streamer: Callable[[dict[str, Any]], AsyncIterator[str]],
    call: AgentCall | None,
    *,
    provider: str,
    model: str | None,
    stream: bool,
    request_parameters: Mapping[str, Any],
    prompt: Callable[[], Any] | None,
) -> Callable[[dict[str, Any]], AsyncIterator[str]]:
    """The `miniagents.ext.llm._tracing.trace_llm_streamer` hook: a ``chat {model}`` span around a token stream.

    Returns ``streamer`` itself when no observer traces ``call``.
    """
    found = _find_call_span(call)
    if found is None:
        return streamer
    observer, call_span = found
    # The parent is taken now: the stream may run after the call's span ended (a lazily consumed reply).
    parent_context = trace.set_span_in_context(call_span)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.stream": stream,
    }
    if model is not None:
        attributes["gen_ai.request.model"] = model
    for name, (attribute, value_type) in _REQUEST_PARAMETERS.items():
        value = request_parameters.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value_type is float or float(value).is_integer():
                attributes[attribute] = value_type(value)
    stop = request_parameters.get("stop", request_parameters.get("stop_sequences"))
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        attributes["gen_ai.request.stop_sequences"] = list(stop)
    span_name = f"chat {model}" if model else "chat"

    async def traced_streamer(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        span = observer.tracer.start_span(
            span_name, context=parent_context, kind=SpanKind.CLIENT, attributes=attributes
        )
        started = time.perf_counter()
        first_token = stream  # (the time to the first chunk is a measure of streamed responses only)
        tokens: list[str] | None = [] if observer.capture_message_content else None
        tool_calls: dict[int, list[Any]] = {}  # (content only) index -> [id, name, argument pieces]
        span_context = trace.set_span_in_context(span)
        inner = streamer(metadata_so_far).__aiter__()
        try:
            while True:
                # The span is current while the request runs (one step at a time: the consumer's task may change
                # between tokens), so that spans of instrumented HTTP clients become its children.
                attached = otel_context.attach(span_context)
                try:
                    token = await inner.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    otel_context.detach(attached)
                if first_token and _is_output(token):  # (not an event with metadata only, e.g. the role)
                    first_token = False
                    span.set_attribute("gen_ai.response.time_to_first_chunk", time.perf_counter() - started)
                if tokens is not None:
                    text = token if isinstance(token, str) else getattr(token, "text", None)  # (events: their text)
                    if isinstance(text, str):
                        tokens.append(text)
                    elif isinstance(getattr(token, "index", None), int):  # (a piece of a tool call)
                        _add_tool_call_piece(tool_calls, token)
                yield token
        except (asyncio.CancelledError, GeneratorExit) as error:
            _set_cancelled(span, error)
            raise
        except BaseException as error:
            _set_error(span, error)
            raise
        finally:
            try:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                _set_response_attributes(span, metadata_so_far)
                if tokens is not None:
                    await _aset_llm_content(span, prompt, tokens, tool_calls, metadata_so_far)
            finally:
                span.end()

    return traced_streamer


def _is_output(token: Any) -> bool:
    """Whether a token (or an event of the LLM agent loop) carries output: text, or a piece of a tool call."""
    if isinstance(token, str):
        return bool(token)
    text = getattr(token, "text", None)
    if isinstance(text, str):
        return bool(text)
    return getattr(token, "name", None) is not None or bool(getattr(token, "arguments", None))


def _add_tool_call_piece(tool_calls: dict[int, list[Any]], piece: Any) -> None:
    call = tool_calls.setdefault(piece.index, [None, None, []])
    if getattr(piece, "call_id", None) is not None:
        call[0] = piece.call_id
    if getattr(piece, "name", None) is not None:
        call[1] = piece.name
    arguments = getattr(piece, "arguments", None)
    if isinstance(arguments, str):
        call[2].append(arguments)


def _tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A ``tool_call`` part of the conventions; the arguments as an object when they are JSON."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else None
        except ValueError:
            pass  # (broken JSON stays the text the model produced)
    return {"type": "tool_call", "id": call_id, "name": name if isinstance(name, str) else "", "arguments": arguments}


def _input_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A chat dict of the prompt (OpenAI format) as a message of the conventions, tool calls and results included."""
    role = message.get("role") or "user"
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if role == "tool":
        parts.append({"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content})
    else:
        calls = message.get("tool_calls") or ()
        if isinstance(content, str) and (content or not calls):
            parts.append({"type": "text", "content": content})
        for call in calls:
            function = call.get("function") or {}
            parts.append(_tool_call_part(call.get("id"), function.get("name"), function.get("arguments")))
    return {"role": role, "parts": parts}


async def _aset_llm_content(
    span: Span,
    prompt: Callable[[], Any] | None,
    tokens: list[str],
    tool_calls: Mapping[int, list[Any]],
    metadata: Mapping[str, Any],
) -> None:
    if prompt is not None:
        try:
            prompt_value = prompt()
            if asyncio.iscoroutine(prompt_value):
                prompt_value = await prompt_value
        except Exception:
            prompt_value = None
        if prompt_value:
            system = [d for d in prompt_value if d.get("role") == "system"]
            rest = [d for d in prompt_value if d.get("role") != "system"]
            if system:
                span.set_attribute(
                    "gen_ai.system_instructions",
                    _to_json([{"type": "text", "content": d.get("content", "")} for d in system]),
                )
            span.set_attribute("gen_ai.input.messages", _to_json([_input_message(d) for d in rest]))
    text = "".join(tokens)
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text or not tool_calls else []
    for index in sorted(tool_calls):
        call_id, name, arguments = tool_calls[index]
        parts.append(_tool_call_part(call_id, name, "".join(arguments)))
    output: dict[str, Any] = {"role": "assistant", "parts": parts}
    reasons = _finish_reasons(metadata)
    if reasons:
        output["finish_reason"] = reasons[0]
    span.set_attribute("gen_ai.output.messages", _to_json([output]))


def _finish_reasons(metadata: Mapping[str, Any]) -> list[str]:
    reasons = [
        choice["finish_reason"]
        for choice in metadata.get("choices") or ()
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str)
    ]
    stop_reason = metadata.get("stop_reason")  # Anthropic
    if not reasons and isinstance(stop_reason, str):
        reasons.append(stop_reason)
    return reasons


def _set_response_attributes(span: Span, metadata: Mapping[str, Any]) -> None:
    reasons = _finish_reasons(metadata)
    if reasons:
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
    response_id = metadata.get("id")
    if isinstance(response_id, str):
        span.set_attribute("gen_ai.response.id", response_id)
    response_model = metadata.get("model")
    if isinstance(response_model, str):
        span.set_attribute("gen_ai.response.model", response_model)
    usage = metadata.get("usage")
    if isinstance(usage, dict):
        _set_usage_attributes(span, usage)


def _set_usage_attributes(span: Span, usage: Mapping[str, Any]) -> None:
    """The token counts of an OpenAI-style (``prompt_tokens`` …) or Anthropic-style (``input_tokens`` …) usage.

    ``gen_ai.usage.input_tokens`` counts every input token, cached ones included (the GenAI conventions' note on
    it): OpenAI's ``prompt_tokens`` does already (``prompt_tokens_details.cached_tokens`` of them were read from
    the cache), Anthropic's ``input_tokens`` leaves out ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens``, which are added. Those two also go to ``gen_ai.usage.cache_read.input_tokens``
    and ``gen_ai.usage.cache_creation.input_tokens``. Sources: https://opentelemetry.io/docs/specs/semconv/gen-ai/
    and the providers' API references (OpenAI chat completions ``usage``; Anthropic messages ``usage``).
    """
    input_tokens = _token_count(usage, "input_tokens", "prompt_tokens")
    output_tokens = _token_count(usage, "output_tokens", "completion_tokens")
    cache_read = _token_count(usage, "cache_read_input_tokens")  # Anthropic: not in its input_tokens
    cache_creation = _token_count(usage, "cache_creation_input_tokens")
    if input_tokens is not None:
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens + (cache_read or 0) + (cache_creation or 0))
    if output_tokens is not None:
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    details = usage.get("prompt_tokens_details")  # OpenAI: within prompt_tokens
    if cache_read is None and isinstance(details, Mapping):
        cache_read = _token_count(details, "cached_tokens")
    if cache_read is not None:
        span.set_attribute("gen_ai.usage.cache_read.input_tokens", cache_read)
    if cache_creation is not None:
        span.set_attribute("gen_ai.usage.cache_creation.input_tokens", cache_creation)


def _token_count(usage: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` in ``usage`` that holds an int (not a bool), or None."""
    for key in keys:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class _ToolSpan:
    """What ``trace_tool_call`` yields when the call is traced: record the tool's result or error."""

    def __init__(self, span: Span, capture: bool) -> None:
        self._span = span
        self._capture = capture
        self._attached: Token[otel_context.Context] | None = None

    def set_result(self, result: Any) -> None:
        if self._capture:
            self._span.set_attribute("gen_ai.tool.call.result", result if isinstance(result, str) else _to_json(result))

    def __enter__(self) -> _ToolSpan:
        # current inside the block: an agent the tool calls, and instrumented clients, get spans under it
        self._attached = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, _: Any) -> None:
        if self._attached is not None:
            otel_context.detach(self._attached)
            self._attached = None
        try:
            if error is not None:
                if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
                    _set_cancelled(self._span, error)
                else:
                    _set_error(self._span, error)
        finally:
            self._span.end()


def start_tool_span(
    call: AgentCall | None,
    name: str,
    *,
    call_id: str | None,
    description: str | None,
    tool_type: str,
    arguments: Any,
) -> _ToolSpan | None:
    """The ``miniagents.ext.llm._tracing.trace_tool_call`` hook: an ``execute_tool {name}`` span, or None."""
    found = _find_call_span(call)
    if found is None:
        return None
    observer, _ = found
    assert call is not None  # (found)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": tool_type,
    }
    if call_id is not None:
        attributes["gen_ai.tool.call.id"] = call_id
    if description is not None:
        attributes["gen_ai.tool.description"] = description
    if observer.capture_message_content and arguments is not None:
        attributes["gen_ai.tool.call.arguments"] = arguments if isinstance(arguments, str) else _to_json(arguments)
    span = observer._start_child_span(call, f"execute_tool {name}", SpanKind.INTERNAL, attributes)
    if span is None:
        return None
    return _ToolSpan(span, observer.capture_message_content)
