"""OpenTelemetry spans of agent calls, LLM requests and tool calls, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason='the tracing extra is not installed: pip install "miniagents[tracing]"')

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from miniagents import AgentCallStatus, InteractionContext, MiniAgents, miniagent
from miniagents.ext import tracing
from miniagents.ext.llm._tracing import _NO_SPAN, trace_llm_streamer, trace_tool_call
from miniagents.ext.llm.testing import scripted_llm_agent
from miniagents.ext.tracing import OpenTelemetryObserver


def by_name(spans: Any) -> dict[str, ReadableSpan]:
    result: dict[str, ReadableSpan] = {}
    for span in spans:
        assert span.name not in result, f"two spans named {span.name!r}"
        result[span.name] = span
    return result


def reply_traced_stream(ctx: InteractionContext, streamer: Any) -> None:
    """Reply a message whose tokens ``streamer(metadata)`` yields, traced as a request to the model ``m``."""
    from miniagents import Message

    ctx.reply(
        Message.promise(
            start_asap=True,
            message_token_streamer=trace_llm_streamer(streamer, provider="p", model="m", stream=True),
        )
    )


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@miniagent
async def leaf_agent(ctx: InteractionContext) -> None:
    await asyncio.sleep(0.01)  # the parent's span must stay open while children run in their own tasks
    ctx.reply(f"leaf got {len(await ctx.message_promises)}")


@miniagent
async def middle_agent(ctx: InteractionContext) -> None:
    ctx.reply(leaf_agent.fork(alias="LEAF_1").inquire(ctx.message_promises))
    ctx.reply(leaf_agent.fork(alias="LEAF_2").inquire("direct"))


@miniagent
async def top_agent(ctx: InteractionContext) -> None:
    ctx.reply(middle_agent.inquire(ctx.message_promises))


async def test_agent_call_spans_nest_across_detached_tasks(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        replies = await top_agent.inquire(["a", "b"])
    assert [str(r) for r in replies] == ["leaf got 2", "leaf got 1"]
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {
        "invoke_agent TOP_AGENT",
        "invoke_agent MIDDLE_AGENT",
        "invoke_agent LEAF_1",
        "invoke_agent LEAF_2",
    }
    top, middle = spans["invoke_agent TOP_AGENT"], spans["invoke_agent MIDDLE_AGENT"]
    assert top.parent is None
    assert parent_of(middle) == top.context.span_id
    assert parent_of(spans["invoke_agent LEAF_1"]) == middle.context.span_id
    assert parent_of(spans["invoke_agent LEAF_2"]) == middle.context.span_id
    assert len({span.context.trace_id for span in spans.values()}) == 1
    for alias, span in [(name.split()[1], span) for name, span in spans.items()]:
        assert span.kind is SpanKind.INTERNAL
        assert span.attributes is not None
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert span.attributes["gen_ai.agent.name"] == alias
        assert len(str(span.attributes["miniagents.agent_call.id"])) == 32
        assert span.status.status_code is StatusCode.UNSET
        assert "gen_ai.input.messages" not in span.attributes  # content is opt-in
        assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time
    leaf = spans["invoke_agent LEAF_1"]
    assert top.start_time <= leaf.start_time and leaf.end_time <= top.end_time  # type: ignore[operator]


async def test_top_level_call_is_a_child_of_the_current_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        with tracer.start_as_current_span("request") as outer:
            await leaf_agent.inquire("x")
    spans = by_name(exporter.get_finished_spans())
    assert parent_of(spans["invoke_agent LEAF_AGENT"]) == outer.get_span_context().span_id


@miniagent
async def failing_agent(ctx: InteractionContext) -> None:
    raise ValueError("boom")


async def test_failed_call_sets_error_status(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        with pytest.raises(ValueError, match="boom"):
            await failing_agent.inquire("x")
    (span,) = exporter.get_finished_spans()
    assert span.name == "invoke_agent FAILING_AGENT"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    assert span.attributes is not None and span.attributes["error.type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None and event.attributes["exception.message"] == "boom"


class FakeCall(SimpleNamespace):
    __hash__ = object.__hash__


def fake_call(status: AgentCallStatus, error: BaseException | None) -> Any:
    return FakeCall(
        call_id="0" * 32,
        parent_call=None,
        agent_alias="FAKE",
        kwargs=None,
        status=AgentCallStatus.RUNNING,
        started_at=1000.0,
        ended_at=None,
        error=None,
        _end=(status, error),
    )


def test_cancelled_call_status_from_the_observer_methods(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The observer alone, driven like the core drives it: a cancelled call ends with status ERROR "cancelled"."""
    observer = OpenTelemetryObserver(tracer_provider=provider)
    call = fake_call(AgentCallStatus.CANCELLED, asyncio.CancelledError())
    observer.on_call_started(call)
    assert observer.span_of(call) is not None
    call.status, call.error = call._end
    call.ended_at = 1002.5
    observer.on_call_ended(call)
    assert observer.span_of(call) is None
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "cancelled"
    assert span.attributes is not None and span.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    assert (span.start_time, span.end_time) == (1000 * 10**9, 1002_500_000_000)


async def test_llm_request_span_follows_the_genai_conventions(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    llm = scripted_llm_agent(["Hello there, friend"], alias="BOT", model="fake-model", delay=0.01)

    @miniagent
    async def asker(ctx: InteractionContext) -> None:
        ctx.reply(llm.inquire("hi"))

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        message = (await asker.inquire())[0]
    assert message.text == "Hello there, friend"
    spans = by_name(exporter.get_finished_spans())
    chat = spans["chat fake-model"]
    assert parent_of(chat) == spans["invoke_agent BOT"].context.span_id
    assert parent_of(spans["invoke_agent BOT"]) == spans["invoke_agent ASKER"].context.span_id
    assert chat.kind is SpanKind.CLIENT
    attributes = dict(chat.attributes or {})
    ttfc = attributes.pop("gen_ai.response.time_to_first_chunk")
    assert isinstance(ttfc, float) and 0.005 < ttfc < 5
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "fake-model",
        "gen_ai.request.stream": True,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert chat.status.status_code is StatusCode.UNSET


async def test_llm_span_ends_when_the_stream_ends(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    llm = scripted_llm_agent(["one two three four"], alias="SLOW", model="m", delay=0.05)
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        replies = llm.inquire("hi")
        first = await anext(aiter(replies))
        await asyncio.sleep(0.06)  # the stream goes on
        assert "chat m" not in {span.name for span in exporter.get_finished_spans()}
        tokens = [token async for token in first]
    assert "".join(tokens) == "one two three four"
    chat = by_name(exporter.get_finished_spans())["chat m"]
    assert chat.end_time is not None and chat.start_time is not None
    assert (chat.end_time - chat.start_time) / 1e9 >= 0.15  # 4 tokens, 50 ms apart


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (  # Anthropic: its input_tokens leave the cached ones out
            {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 3},
            {"input_tokens": 125, "cache_read.input_tokens": 100, "cache_creation.input_tokens": 20},
        ),
        (  # OpenAI: its prompt_tokens count the cached ones
            {"prompt_tokens": 120, "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens": 3},
            {"input_tokens": 120, "cache_read.input_tokens": 100},
        ),
        ({"prompt_tokens": 9, "completion_tokens": 3}, {"input_tokens": 9}),
    ],
    ids=["anthropic-cached", "openai-cached", "uncached"],
)
async def test_llm_input_tokens_count_the_cached_ones(
    provider: TracerProvider, exporter: InMemorySpanExporter, usage: dict[str, Any], expected: dict[str, int]
) -> None:
    async def streamer(metadata: dict[str, Any]) -> Any:
        yield "a"
        metadata.update(usage=usage)

    @miniagent
    async def cached_llm(ctx: InteractionContext) -> None:
        reply_traced_stream(ctx, streamer)

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        await cached_llm.inquire()
    attributes = by_name(exporter.get_finished_spans())["chat m"].attributes
    assert attributes is not None
    usage_attributes = {
        key.removeprefix("gen_ai.usage."): value for key, value in attributes.items() if key.startswith("gen_ai.usage.")
    }
    assert usage_attributes == {**expected, "output_tokens": 3}


async def test_llm_usage_and_error_status(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async def good_streamer(metadata: dict[str, Any]) -> Any:
        yield "a"
        yield "b"
        metadata.update(id="resp-1", stop_reason="end_turn", usage={"input_tokens": 7, "output_tokens": 2})

    async def bad_streamer(metadata: dict[str, Any]) -> Any:
        yield "a"
        raise ConnectionError("reset")

    @miniagent
    async def custom_llm(ctx: InteractionContext, bad: bool = False) -> None:
        from miniagents import Message

        ctx.reply(
            Message.promise(
                start_asap=True,
                message_token_streamer=trace_llm_streamer(
                    bad_streamer if bad else good_streamer,
                    provider="anthropic",
                    model="claude-x",
                    stream=True,
                    request_parameters={"max_tokens": 100, "temperature": 0.5, "stop": "END", "user": "u"},
                ),
            )
        )

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        assert (await custom_llm.inquire())[0].text == "ab"
        with pytest.raises(ConnectionError):
            await custom_llm.inquire(bad=True)
    good, bad = [span for span in exporter.get_finished_spans() if span.name == "chat claude-x"]
    assert good.attributes is not None and bad.attributes is not None
    assert good.attributes["gen_ai.usage.input_tokens"] == 7
    assert good.attributes["gen_ai.usage.output_tokens"] == 2
    assert good.attributes["gen_ai.response.id"] == "resp-1"
    assert good.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert good.attributes["gen_ai.request.max_tokens"] == 100
    assert good.attributes["gen_ai.request.temperature"] == 0.5
    assert good.attributes["gen_ai.request.stop_sequences"] == ("END",)
    assert "gen_ai.request.user" not in good.attributes
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes["error.type"] == "ConnectionError"


async def test_message_content_only_when_opted_in(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    llm = scripted_llm_agent(["Paris."], alias="BOT", model="m")
    observer = OpenTelemetryObserver(tracer_provider=provider, capture_message_content=True)
    async with MiniAgents(observers=[observer]):
        await llm.inquire("Capital of France?", system="Be brief.")
    await observer.aflush()
    spans = by_name(exporter.get_finished_spans())
    chat = spans["chat m"].attributes or {}
    assert json.loads(str(chat["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}
    ]
    assert json.loads(str(chat["gen_ai.system_instructions"])) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(str(chat["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "stop"}
    ]
    call = spans["invoke_agent BOT"].attributes or {}
    assert json.loads(str(call["gen_ai.input.messages"]))[0]["parts"][0]["content"] == "Capital of France?"
    assert json.loads(str(call["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}]}
    ]
    assert json.loads(str(call["miniagents.agent_call.kwargs"])) == {"system": "Be brief."}


async def test_captured_content_is_utf8(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # (an attribute must be UTF-8 to be exported; a lone surrogate, e.g. half an emoji from a broken stream, is not)
    llm = scripted_llm_agent(["half \ud83d, pair \ud83d\ude00"], alias="BOT", model="m")
    observer = OpenTelemetryObserver(tracer_provider=provider, capture_message_content=True)
    async with MiniAgents(observers=[observer]):
        await llm.inquire("q \udcff")
    await observer.aflush()
    spans = by_name(exporter.get_finished_spans())
    for span in (spans["chat m"], spans["invoke_agent BOT"]):
        attributes = span.attributes or {}
        for name in ("gen_ai.input.messages", "gen_ai.output.messages"):
            str(attributes[name]).encode("utf-8")  # (strict)
        assert json.loads(str(attributes["gen_ai.input.messages"]))[0]["parts"][0]["content"] == "q \ufffd"
        assert json.loads(str(attributes["gen_ai.output.messages"]))[0]["parts"][0]["content"] == (
            "half \ufffd, pair \U0001f600"
        )


def test_content_capture_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_ENV_VAR, "true")
    assert OpenTelemetryObserver().capture_message_content is True
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_ENV_VAR, "false")
    assert OpenTelemetryObserver().capture_message_content is False
    assert OpenTelemetryObserver(capture_message_content=True).capture_message_content is True
    with pytest.raises(TypeError, match="tracer_provider must be"):
        OpenTelemetryObserver(tracer_provider="nope")  # type: ignore[arg-type]


async def test_tool_call_spans(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    @miniagent
    async def tool_user(ctx: InteractionContext) -> None:
        with trace_tool_call("get_weather", call_id="call_1", arguments={"city": "Paris"}) as tool:
            await asyncio.sleep(0)
            tool.set_result("sunny")
        with pytest.raises(KeyError), trace_tool_call("lookup", description="Looks up a key"):
            raise KeyError("k")
        ctx.reply("done")

    observer = OpenTelemetryObserver(tracer_provider=provider, capture_message_content=True)
    async with MiniAgents(observers=[observer]):
        await tool_user.inquire()
    await observer.aflush()
    spans = by_name(exporter.get_finished_spans())
    agent_span_id = spans["invoke_agent TOOL_USER"].context.span_id
    weather, lookup = spans["execute_tool get_weather"], spans["execute_tool lookup"]
    assert parent_of(weather) == parent_of(lookup) == agent_span_id
    assert dict(weather.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.call.arguments": '{"city": "Paris"}',
        "gen_ai.tool.call.result": "sunny",
    }
    assert weather.status.status_code is StatusCode.UNSET
    assert lookup.status.status_code is StatusCode.ERROR
    assert (lookup.attributes or {})["gen_ai.tool.description"] == "Looks up a key"
    assert (lookup.attributes or {})["error.type"] == "KeyError"


async def test_hooks_are_no_ops_without_an_observer(exporter: InMemorySpanExporter) -> None:
    async def streamer(metadata: dict[str, Any]) -> Any:
        yield "x"

    tracing._observers.clear()
    async with MiniAgents():
        assert trace_llm_streamer(streamer, provider="p", model="m", stream=True) is streamer
        assert trace_tool_call("t") is _NO_SPAN
        with trace_tool_call("t") as tool:
            tool.set_result("ignored")
        assert trace.get_current_span() is trace.INVALID_SPAN


@miniagent
async def sleepy_agent(ctx: InteractionContext) -> None:
    await asyncio.sleep(30)
    ctx.reply("never")


async def test_cancelled_call_sets_the_span_status(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        call = sleepy_agent.initiate_inquiry()
        replies = call.reply_sequence()
        await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(BaseException):  # noqa: B017 - whatever the core raises for a cancelled call
            await asyncio.wait_for(replies, 10)
    assert call.status == AgentCallStatus.CANCELLED
    (span,) = exporter.get_finished_spans()
    assert span.name == "invoke_agent SLEEPY_AGENT"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "cancelled"
    assert span.attributes is not None and span.attributes["error.type"].endswith("AgentCallCancelledError")


async def test_llm_span_keeps_its_parent_in_a_lazy_call(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A lazy call's request runs in whichever task pulls it; the span's parent is still the call's."""
    llm = scripted_llm_agent(["late tokens here"], alias="LAZY", model="m", delay=0.02)
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        promises = [mp async for mp in llm.inquire("hi", start_asap=False)]
        text = "".join([token async for token in promises[0]])
    assert text == "late tokens here"
    spans = by_name(exporter.get_finished_spans())
    assert parent_of(spans["chat m"]) == spans["invoke_agent LAZY"].context.span_id
    assert spans["chat m"].context.trace_id == spans["invoke_agent LAZY"].context.trace_id


async def test_the_chat_span_is_current_while_the_request_runs(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Spans an instrumented HTTP client starts inside the request become children of the chat span."""
    http_tracer = provider.get_tracer("http-client")
    seen_outside: list[Any] = []

    async def streamer(metadata: dict[str, Any]) -> Any:
        with http_tracer.start_as_current_span("POST /chat"):
            await asyncio.sleep(0)
            yield "a"
            yield "b"
        with http_tracer.start_as_current_span("after"):
            yield "c"

    @miniagent
    async def instrumented_llm(ctx: InteractionContext) -> None:
        reply_traced_stream(ctx, streamer)
        seen_outside.append(trace.get_current_span())

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        assert (await instrumented_llm.inquire())[0].text == "abc"
        assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaks into the consumer's context
    spans = by_name(exporter.get_finished_spans())
    chat_id = spans["chat m"].context.span_id
    assert parent_of(spans["POST /chat"]) == chat_id
    assert parent_of(spans["after"]) == chat_id
    # in the agent, outside the request, its call's span is current, not the chat span
    assert [span.get_span_context().span_id for span in seen_outside] == [
        spans["invoke_agent INSTRUMENTED_LLM"].context.span_id
    ]


async def test_the_call_span_is_current_in_the_agent_and_in_the_tasks_it_starts(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("user code")

    @miniagent
    async def worker_agent(ctx: InteractionContext) -> None:
        with tracer.start_as_current_span("work in the agent"):
            await asyncio.sleep(0)
        await asyncio.create_task(asyncio.sleep(0, trace.get_current_span()))  # (a task started by the agent)
        ctx.reply("done")

    @miniagent
    async def lazy_caller_agent(ctx: InteractionContext) -> None:
        ctx.reply(worker_agent.fork(alias="LAZY_WORKER").inquire(start_asap=False))  # started by the consumer

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        with tracer.start_as_current_span("request"):
            await worker_agent.inquire()
        await lazy_caller_agent.inquire()
    spans = exporter.get_finished_spans()
    work = [span for span in spans if span.name == "work in the agent"]
    workers = {span.name: span for span in spans if span.name.startswith("invoke_agent")}
    assert sorted(parent_of(span) for span in work) == sorted(
        workers[name].context.span_id for name in ("invoke_agent WORKER_AGENT", "invoke_agent LAZY_WORKER")
    )
    assert parent_of(workers["invoke_agent LAZY_WORKER"]) == workers["invoke_agent LAZY_CALLER_AGENT"].context.span_id


async def test_a_nested_context_with_its_own_observer_keeps_the_calls_in_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @miniagent
    async def outer_agent(ctx: InteractionContext) -> None:
        async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
            ctx.reply(await leaf_agent.inquire("x"))

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        await outer_agent.inquire()
    spans = exporter.get_finished_spans()
    outer = next(span for span in spans if span.name == "invoke_agent OUTER_AGENT")
    leaves = [span for span in spans if span.name == "invoke_agent LEAF_AGENT"]
    assert len(leaves) == 1 and parent_of(leaves[0]) == outer.context.span_id  # one span, though two observers see it
    assert {span.context.trace_id for span in spans} == {outer.context.trace_id}
    assert len(spans) == 2


async def test_observers_of_two_tracer_providers_each_trace_the_call(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    other_exporter = InMemorySpanExporter()
    other_provider = TracerProvider()
    other_provider.add_span_processor(SimpleSpanProcessor(other_exporter))

    @miniagent
    async def outer_agent(ctx: InteractionContext) -> None:
        async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=other_provider)]):
            ctx.reply(await leaf_agent.inquire("x"))

    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        await outer_agent.inquire()
    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "invoke_agent LEAF_AGENT",
        "invoke_agent OUTER_AGENT",
    ]
    (leaf,) = other_exporter.get_finished_spans()  # the nested context's own provider: its calls only
    assert leaf.name == "invoke_agent LEAF_AGENT"


async def test_an_agent_used_as_a_tool_is_traced_inside_its_tool_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from miniagents.ext.llm.testing import ScriptedToolCall

    @miniagent
    async def researcher(ctx: InteractionContext, topic: str) -> None:
        """Research a topic."""
        ctx.reply(f"facts about {topic}")

    llm = scripted_llm_agent(
        [ScriptedToolCall("researcher", {"topic": "owls"}), "Owls are birds."], alias="BOT", model="fake"
    ).fork(tools=[researcher])
    async with MiniAgents(observers=[OpenTelemetryObserver(tracer_provider=provider)]):
        assert str((await llm.inquire("owls?"))[-1]) == "Owls are birds."
    spans = exporter.get_finished_spans()
    tool = next(span for span in spans if span.name == "execute_tool researcher")
    researcher_span = next(span for span in spans if span.name == "invoke_agent RESEARCHER")
    bot = next(span for span in spans if span.name == "invoke_agent BOT")
    assert parent_of(researcher_span) == tool.context.span_id and parent_of(tool) == bot.context.span_id
