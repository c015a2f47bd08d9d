"""``chat {model}`` spans of the real LLM agents (OpenAI and Anthropic wire formats on a mock HTTP transport)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason='the tracing extra is not installed: pip install "miniagents[tracing]"')

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from miniagents import MiniAgents
from miniagents.ext.llm import LLMAPIStatusError
from miniagents.ext.tracing import OpenTelemetryObserver


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


OPENAI_BASE = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-api-name"}


def openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {**OPENAI_BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


async def test_openai_agent_chat_span(
    openai_mock: Any, sse_body: Any, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    from miniagents.ext.llm.openai import openai_agent

    body = sse_body(
        openai_chunk({"role": "assistant", "content": "Hel"}),
        openai_chunk({"content": "lo"}),
        openai_chunk({}, finish_reason="length"),
        {**OPENAI_BASE, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}},
        done=True,
    )
    agent = openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.sse_response(body))
    )
    async with MiniAgents(observers=[observer]):
        reply = await agent.inquire("Hi", max_tokens=2, temperature=0.2, stream_options={"include_usage": True})
    assert reply[0].text == "Hello"
    (chat,) = spans_named(exporter, "chat gpt-test")
    (call,) = spans_named(exporter, "invoke_agent OPENAI_AGENT")
    assert chat.parent.span_id == call.context.span_id
    assert chat.kind is SpanKind.CLIENT
    attributes = dict(chat.attributes)
    assert attributes.pop("gen_ai.response.time_to_first_chunk") > 0
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.request.stream": True,
        "gen_ai.request.max_tokens": 2,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.model": "gpt-api-name",
        "gen_ai.response.finish_reasons": ("length",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
    }


async def test_openai_agent_api_error_sets_the_chat_span_status(
    openai_mock: Any, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    from miniagents.ext.llm.openai import openai_agent

    error_body = {"error": {"message": "Rate limit", "type": "rate_limit_error"}}
    agent = openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.json_response(429, error_body))
    )
    async with MiniAgents(observers=[observer]):
        with pytest.raises(LLMAPIStatusError):
            await agent.inquire("Hi")
    (chat,) = spans_named(exporter, "chat gpt-test")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "miniagents.ext.llm.errors.LLMAPIStatusError"
    assert "gen_ai.response.time_to_first_chunk" not in chat.attributes


async def test_anthropic_agent_chat_span(
    anthropic_mock: Any, sse_body: Any, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    from miniagents.ext.llm.anthropic import anthropic_agent

    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_7",
                "type": "message",
                "role": "assistant",
                "model": "claude-api-name",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Bon"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "jour"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 4},
        },
        {"type": "message_stop"},
    ]
    body = sse_body(*events, named=True)
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.sse_response(body))
    )
    async with MiniAgents(observers=[observer]):
        reply = await agent.inquire("Hi", system="Be brief.")
    assert reply[0].text == "Bonjour"
    (chat,) = spans_named(exporter, "chat claude-test")
    attributes = chat.attributes
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.request.max_tokens"] == 1024  # the agent's default is sent, so it is recorded
    assert attributes["gen_ai.response.id"] == "msg_7"
    assert attributes["gen_ai.response.model"] == "claude-api-name"
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (10, 4)
