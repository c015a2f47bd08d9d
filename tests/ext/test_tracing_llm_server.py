"""``chat`` spans and error reports of `openai_agent` against a fake OpenAI-compatible server on 127.0.0.1.

The server is a small HTTP/1.1 server (``asyncio.start_server``) that answers each request from a script: SSE
chunks sent with chunked transfer encoding (so that cutting the connection is a broken stream, not an end),
pauses, a cut, or an HTTP error status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason='the tracing extra is not installed: pip install "miniagents[tracing]"')
pytest.importorskip("openai", reason='the openai extra is not installed: pip install "miniagents[openai]"')

import openai
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from miniagents import InteractionContext, MiniAgents, miniagent
from miniagents.ext.llm import LLMError
from miniagents.ext.llm.openai import openai_agent
from miniagents.ext.tracing import OpenTelemetryObserver

Step = dict[str, Any] | float | str
"""A chunk to send (a dict), a pause in seconds (a float), ``"cut"`` (abort the connection) or ``"hang"``."""


class FakeOpenAIServer:
    """Answers ``POST /v1/chat/completions``: a streamed script, a whole JSON completion, or an error status."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.completion: dict[str, Any] | None = None  # the answer of a request with "stream": false
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.request_received = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def astart(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def astop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = next(
            int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")
        )
        request = json.loads(await reader.readexactly(length))
        self.requests.append(request)
        self.request_received.set()
        if self.status != 200 or not request.get("stream"):
            body = json.dumps(
                self.completion if self.status == 200 else {"error": {"message": "overloaded", "type": "server_error"}}
            ).encode()
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        for step in self.script:
            if isinstance(step, float):
                await asyncio.sleep(step)
            elif step == "hang":
                await asyncio.Event().wait()
            elif step == "cut":
                writer.transport.abort()
                return
            else:
                data = f"data: {json.dumps(step)}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
        data = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        await writer.drain()


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "served", "choices": choices}


USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer()
    fake.base_url = await fake.astart()  # type: ignore[attr-defined]
    yield fake
    await fake.astop()


def bot(server: FakeOpenAIServer, alias: str = "BOT", model: str = "m1", **kwargs: Any) -> Any:
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)  # type: ignore[attr-defined]
    return openai_agent.fork(alias=alias, model=model, async_client=client, **kwargs)


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [span for span in exporter.get_finished_spans() if span.name == name]
    return span


# --- the chat span -------------------------------------------------------------------------------------------


async def test_time_to_first_chunk_waits_for_the_first_token_not_the_role_chunk(
    server: FakeOpenAIServer, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    """OpenAI sends a chunk with only ``role`` at once; the first token comes later: that is the time to measure."""
    server.script = [chunk({"role": "assistant", "content": ""}), 0.3, chunk({"content": "Hi"}), chunk({}, "stop")]
    async with MiniAgents(observers=[observer]):
        assert (await bot(server).inquire("hello"))[0].text == "Hi"
    ttfc = (named(exporter, "chat m1").attributes or {})["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttfc, float) and 0.3 <= ttfc < 10


async def test_no_time_to_first_chunk_without_streaming(
    server: FakeOpenAIServer, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    server.completion = {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 1,
        "model": "served",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Whole"}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    async with MiniAgents(observers=[observer]):
        assert (await bot(server).inquire("hello", stream=False))[0].text == "Whole"
    attributes = named(exporter, "chat m1").attributes or {}
    assert attributes["gen_ai.request.stream"] is False
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert "gen_ai.response.time_to_first_chunk" not in attributes  # a streaming-only measure


async def test_finish_reasons_survive_a_later_chunk_without_one(
    server: FakeOpenAIServer, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    """Some servers send the usage in a last chunk whose choice has ``finish_reason: null``."""
    server.script = [
        chunk({"role": "assistant", "content": "Hi"}),
        chunk({}, "length"),
        {**chunk({}), "usage": USAGE},
    ]
    async with MiniAgents(observers=[observer]):
        message = (await bot(server).inquire("hello"))[0]
    assert message.choices[0].finish_reason == "length"  # (what the message itself says)
    attributes = named(exporter, "chat m1").attributes or {}
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (9, 2)


async def test_request_parameters_have_the_conventions_types(
    server: FakeOpenAIServer, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    """temperature, top_p, penalties are doubles, max_tokens and seed ints, whatever number type was passed."""
    server.script = [chunk({"content": "ok"}), chunk({}, "stop")]
    async with MiniAgents(observers=[observer]):
        await bot(server).inquire("hello", temperature=1, top_p=1, presence_penalty=0, max_tokens=5, seed=7)
    assert server.requests[0]["temperature"] == 1  # (sent as given)
    attributes = named(exporter, "chat m1").attributes or {}
    for name in ("temperature", "top_p", "presence_penalty"):
        value = attributes[f"gen_ai.request.{name}"]
        assert type(value) is float, (name, value)
    assert (attributes["gen_ai.request.max_tokens"], attributes["gen_ai.request.seed"]) == (5, 7)
    assert type(attributes["gen_ai.request.max_tokens"]) is int and type(attributes["gen_ai.request.seed"]) is int


async def test_a_stream_cut_mid_way_fails_the_chat_span(
    server: FakeOpenAIServer, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    server.script = [chunk({"role": "assistant", "content": "Hal"}), 0.05, "cut"]
    async with MiniAgents(observers=[observer]):
        with pytest.raises(LLMError, match="openai"):
            await bot(server).inquire("hello")
    chat = named(exporter, "chat m1")
    assert chat.kind is SpanKind.CLIENT
    assert chat.status.status_code is StatusCode.ERROR
    assert (chat.attributes or {})["error.type"] == "miniagents.ext.llm.errors.LLMConnectionError"
    assert "gen_ai.response.time_to_first_chunk" in (chat.attributes or {})  # a token came before the cut
    assert named(exporter, "invoke_agent BOT").status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("before_the_first_token", [True, False], ids=["before_first_token", "mid_stream"])
async def test_a_cancelled_llm_call_ends_its_chat_span_as_cancelled(
    server: FakeOpenAIServer,
    observer: OpenTelemetryObserver,
    exporter: InMemorySpanExporter,
    before_the_first_token: bool,
) -> None:
    server.script = ["hang"] if before_the_first_token else [chunk({"content": "one "}), "hang"]
    async with MiniAgents(observers=[observer]):
        call = bot(server).initiate_inquiry()
        call.send_message("hello")
        replies = call.reply_sequence()
        await asyncio.wait_for(server.request_received.wait(), 10)
        if not before_the_first_token:
            async for message in replies:
                assert await anext(aiter(message)) == "one "
                break
        call.cancel()
        with pytest.raises(BaseException):  # noqa: B017 - whatever the cancelled call raises
            await asyncio.wait_for(replies, 10)
    chat = named(exporter, "chat m1")
    assert chat.end_time is not None
    assert chat.status.status_code is StatusCode.ERROR and chat.status.description == "cancelled"
    assert ("gen_ai.response.time_to_first_chunk" in (chat.attributes or {})) is not before_the_first_token
    call_span = named(exporter, "invoke_agent BOT")
    assert call_span.status.description == "cancelled"
    assert chat.parent is not None and chat.parent.span_id == call_span.context.span_id


async def test_parallel_llm_calls_each_get_their_own_parent(
    server: FakeOpenAIServer, observer: OpenTelemetryObserver, exporter: InMemorySpanExporter
) -> None:
    server.script = [chunk({"content": "a"}), 0.05, chunk({"content": "b"}), chunk({}, "stop")]

    @miniagent
    async def fan_out(ctx: InteractionContext) -> None:
        ctx.reply([bot(server, alias="ONE", model="m-one").inquire("x"), bot(server, alias="TWO").inquire("y")])

    async with MiniAgents(observers=[observer]):
        assert [m.text for m in await fan_out.inquire()] == ["ab", "ab"]
    fan = named(exporter, "invoke_agent FAN_OUT")
    one, two = named(exporter, "invoke_agent ONE"), named(exporter, "invoke_agent TWO")
    assert one.parent is not None and one.parent.span_id == fan.context.span_id
    assert two.parent is not None and two.parent.span_id == fan.context.span_id
    chat_one, chat_two = named(exporter, "chat m-one"), named(exporter, "chat m1")
    assert chat_one.parent is not None and chat_one.parent.span_id == one.context.span_id
    assert chat_two.parent is not None and chat_two.parent.span_id == two.context.span_id
    assert len({span.context.trace_id for span in exporter.get_finished_spans()}) == 1


# --- errors that say where -------------------------------------------------------------------------------------


def framework_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("miniagents")]


@pytest.mark.parametrize("failure", ["status_500", "cut"])
@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
async def test_an_unretrieved_llm_error_names_the_agent_its_callers_the_provider_and_the_model(
    server: FakeOpenAIServer,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    traced: bool,
) -> None:
    if failure == "status_500":
        server.status = 500
    else:
        server.script = [chunk({"content": "Hal"}), 0.02, "cut"]
    llm = bot(server, alias="WRITER", model="model-x")

    @miniagent
    async def editor(ctx: InteractionContext) -> None:
        ctx.reply(llm.inquire(ctx.message_promises))

    @miniagent
    async def chief(ctx: InteractionContext) -> None:
        ctx.reply(editor.inquire("draft"))

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observers = [OpenTelemetryObserver(tracer_provider=provider)] if traced else []
    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents(observers=observers):
            chief.inquire()  # nobody retrieves the replies: the error is logged when the context ends
    (record,) = framework_errors(caplog)
    assert "the agent WRITER (called by EDITOR <- CHIEF)" in record.getMessage()
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert isinstance(error, LLMError) and (error.provider, error.model) == ("openai", "model-x")
    assert "openai" in str(error) and "'model-x'" in str(error)
    if traced:
        assert named(exporter, "chat model-x").status.status_code is StatusCode.ERROR
