"""`OpenTelemetryObserver`: the content-capture switch, and the tool spans of the LLM agent loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason='the tracing extra is not installed: pip install "miniagents[tracing]"')

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from miniagents import InteractionContext, MiniAgents, miniagent
from miniagents.ext import tracing
from miniagents.ext.llm.testing import ScriptedToolCall, scripted_llm_agent
from miniagents.ext.tracing import OpenTelemetryObserver


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


@pytest.mark.parametrize(
    ("value", "captures"),
    [
        ("true", True),
        ("1", True),
        ("SPAN_ONLY", True),  # the values of the OpenTelemetry GenAI instrumentations (opentelemetry-util-genai)
        ("span_and_event", True),
        ("EVENT_ONLY", False),  # (this observer records no events)
        ("NO_CONTENT", False),
        ("false", False),
        ("", False),
    ],
)
def test_the_environment_variable_takes_the_genai_instrumentations_values(
    monkeypatch: pytest.MonkeyPatch, value: str, captures: bool
) -> None:
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_ENV_VAR, value)
    observer = OpenTelemetryObserver()
    assert observer.capture_message_content is captures
    # (without content the observer does not follow the messages at all)
    assert isinstance(observer, tracing._ContentCapturingObserver) is captures


@miniagent
async def lookup_tool(ctx: InteractionContext, key: str) -> None:
    """Look a key up."""
    if key == "secret-key":
        raise KeyError("no such key")
    ctx.reply(f"value of {key}")


@pytest.mark.parametrize("capture", [False, True], ids=["no_content", "content"])
async def test_parallel_tool_calls_and_a_raising_tool(
    provider: TracerProvider, exporter: InMemorySpanExporter, capture: bool
) -> None:
    llm = scripted_llm_agent(
        [
            [ScriptedToolCall("lookup_tool", {"key": "a"}), ScriptedToolCall("lookup_tool", {"key": "secret-key"})],
            "Done.",
        ],
        alias="BOT",
        model="fake-m",
    ).fork(tools=[lookup_tool])
    observer = OpenTelemetryObserver(tracer_provider=provider, capture_message_content=capture)
    async with MiniAgents(observers=[observer]):
        replies = await llm.inquire("look up a and secret-key")
    await observer.aflush()
    assert str(replies[-1]) == "Done."
    (bot,) = spans_named(exporter, "invoke_agent BOT")
    tools = spans_named(exporter, "execute_tool lookup_tool")
    callees = spans_named(exporter, "invoke_agent LOOKUP_TOOL")
    assert len(tools) == len(callees) == 2
    assert all(tool.parent is not None and tool.parent.span_id == bot.context.span_id for tool in tools)
    assert all(tool.kind is SpanKind.INTERNAL for tool in tools)
    by_id = {tool.context.span_id: tool for tool in tools}
    for callee in callees:  # each tool agent's call under its own execute_tool span
        assert callee.parent is not None and callee.parent.span_id in by_id
    assert len({callee.parent.span_id for callee in callees if callee.parent is not None}) == 2
    failed = [tool for tool in tools if tool.status.status_code is StatusCode.ERROR]
    (ok,) = [tool for tool in tools if tool.status.status_code is StatusCode.UNSET]
    assert len(failed) == 1 and (failed[0].attributes or {})["error.type"] == "KeyError"
    for chat in spans_named(exporter, "chat fake-m"):
        assert chat.kind is SpanKind.CLIENT and chat.parent is not None and chat.parent.span_id == bot.context.span_id
    everything: dict[str, Any] = {}
    for span in exporter.get_finished_spans():
        everything.update({f"{span.name}: {k}": v for k, v in (span.attributes or {}).items()})
    if capture:
        assert json.loads(str((ok.attributes or {})["gen_ai.tool.call.arguments"])) == {"key": "a"}
        assert (ok.attributes or {})["gen_ai.tool.call.result"] == "value of a"
    else:
        assert not [key for key in everything if "messages" in key or "arguments" in key or "result" in key]
        assert not [key for key, value in everything.items() if "look up a" in str(value)]


async def test_captured_content_keeps_the_tool_calls_and_results(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A tool-call turn's output is its tool calls (not an empty text); the next prompt has call and result."""
    llm = scripted_llm_agent(
        [ScriptedToolCall("lookup_tool", {"key": "a"}, call_id="call_7"), "Done."], alias="BOT", model="fake-m"
    ).fork(tools=[lookup_tool])
    observer = OpenTelemetryObserver(tracer_provider=provider, capture_message_content=True)
    async with MiniAgents(observers=[observer]):
        await llm.inquire("look up a")
    await observer.aflush()
    first, second = spans_named(exporter, "chat fake-m")
    call_part = {"type": "tool_call", "id": "call_7", "name": "lookup_tool", "arguments": {"key": "a"}}
    assert json.loads(str((first.attributes or {})["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [call_part], "finish_reason": "tool_calls"}
    ]
    assert json.loads(str((second.attributes or {})["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "look up a"}]},
        {"role": "assistant", "parts": [call_part]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_7", "response": "value of a"}]},
    ]
    assert json.loads(str((second.attributes or {})["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Done."}], "finish_reason": "stop"}
    ]


async def test_a_tool_call_refused_before_it_runs_has_its_span_too(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An unknown tool, arguments that are not JSON, or that the tool's schema refuses: the call is answered with
    an error for the model, and it had no ``execute_tool`` span (the checks ran before the span started)."""
    llm = scripted_llm_agent(
        [
            [
                ScriptedToolCall("no_such_tool", {}),
                ScriptedToolCall("lookup_tool", "{broken"),
                ScriptedToolCall("lookup_tool", {"key": 3, "extra": True}),
            ],
            "Done.",
        ],
        alias="BOT",
        model="fake-m",
    ).fork(tools=[lookup_tool])
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        assert str((await llm.inquire("try"))[-1]) == "Done."
    (bot,) = spans_named(exporter, "invoke_agent BOT")
    refused = spans_named(exporter, "execute_tool no_such_tool") + spans_named(exporter, "execute_tool lookup_tool")
    assert sorted((span.attributes or {})["error.type"] for span in refused) == [
        "LookupError",
        "ValueError",
        "pydantic_core._pydantic_core.ValidationError",
    ]
    assert all(span.status.status_code is StatusCode.ERROR for span in refused)
    assert all(span.parent is not None and span.parent.span_id == bot.context.span_id for span in refused)
    assert spans_named(exporter, "invoke_agent LOOKUP_TOOL") == []  # none of them ran
