"""Layer 2: ``openai_agent`` against exact OpenAI wire formats, on a mock HTTP transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from miniagents import AgentCallCancelledError, MiniAgents
from miniagents.ext.llm import (
    AssistantMessage,
    LLMAPIStatusError,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    SystemMessage,
    ToolCallMessage,
    UserMessage,
)

pytest.importorskip("openai", reason='the openai extra is not installed: pip install "miniagents[openai]"')

import openai

from miniagents.ext.llm import openai as openai_module
from miniagents.ext.llm.openai import OpenAIMessage, openai_agent

NO_HANG = 10  # seconds: an error must surface well before this

BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-api-name"}


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}], **extra}


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def completion(message: dict[str, Any], finish_reason: str, **extra: Any) -> dict[str, Any]:
    """A chat completion that is not streamed, with one choice."""
    choice = {"index": 0, "message": message, "finish_reason": finish_reason}
    return {**BASE, "object": "chat.completion", "choices": [choice], **extra}


def answering(openai_mock: Any, response: dict[str, Any]) -> Any:
    """``openai_agent`` on a client whose every request gets ``response``."""
    return openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.json_response(200, response))
    )


async def first_message_promise(replies: Any) -> Any:
    message_promises = [mp async for mp in replies]
    assert len(message_promises) == 1
    return message_promises[0]


async def test_stream_roleless_first_chunk_and_usage_only_final_chunk(
    openai_mock: Any, sse_body: Any, start_asap: object
) -> None:
    body = sse_body(
        chunk({"content": "Hello"}),  # no role in the first chunk (W18: must not KeyError)
        chunk({"content": ", "}),
        chunk({"content": "world"}),
        chunk({}, finish_reason="stop"),
        {**BASE, "choices": [], "usage": USAGE},  # stream_options.include_usage: no choices (W18)
        done=True,
    )
    agent = openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.sse_response(body))
    )
    async with MiniAgents():
        replies = agent.inquire(
            [SystemMessage("sys msg"), UserMessage("Hi"), AssistantMessage("Earlier answer"), "plain"],
            system="Be brief.",
            max_tokens=50,
            temperature=0.0,
            stream_options={"include_usage": True},
            start_asap=start_asap,
        )
        message_promise = await first_message_promise(replies)
        tokens = [token async for token in message_promise]
        message = await message_promise

    assert tokens == ["Hello", ", ", "world"]
    assert message.text == "".join(tokens) == "Hello, world"
    assert isinstance(message, OpenAIMessage)
    assert (message.role, message.model, message.agent_alias) == ("assistant", "gpt-test", "OPENAI_AGENT")
    assert message.choices[0].finish_reason == "stop"
    assert message.id == "chatcmpl-1"
    assert (message.usage.prompt_tokens, message.usage.completion_tokens) == (12, 3)

    request = openai_mock.request_json()
    assert openai_mock.requests[-1].url.path == "/v1/chat/completions"
    assert request["model"] == "gpt-test"
    assert request["stream"] is True
    assert (request["max_tokens"], request["temperature"]) == (50, 0.0)
    assert request["stream_options"] == {"include_usage": True}
    assert "n" not in request
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "sys msg"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Earlier answer"},
        {"role": "user", "content": "plain"},
    ]


async def test_stream_role_chunk_and_metadata_merge(openai_mock: Any, sse_body: Any) -> None:
    body = sse_body(
        chunk({"role": "assistant", "content": ""}, system_fingerprint="fp_1"),
        chunk({"content": "Yes"}),
        chunk({}, finish_reason="length"),
        done=True,
    )
    agent = openai_agent.fork(
        model="gpt-test",
        alias="MY_GPT",
        async_client=openai_mock.client(lambda r: openai_mock.sse_response(body)),
    )
    async with MiniAgents():
        message_promise = await first_message_promise(agent.inquire("q", reply_metadata={"conversation": "c1"}))
        assert message_promise.preliminary_metadata.agent_alias == "MY_GPT"
        assert message_promise.preliminary_metadata.conversation == "c1"
        message = await message_promise
    assert message.text == "Yes"
    assert message.model == "gpt-test"  # the requested name wins over the API's model string
    assert message.agent_alias == "MY_GPT"
    assert message.conversation == "c1"
    assert message.system_fingerprint == "fp_1"
    assert message.choices[0].finish_reason == "length"
    assert message.role == "assistant"


async def test_non_stream_content_is_one_token(openai_mock: Any) -> None:
    response = completion({"role": "assistant", "content": "All at once."}, "stop", id="chatcmpl-2", usage=USAGE)
    async with MiniAgents():
        message_promise = await first_message_promise(answering(openai_mock, response).inquire("q", stream=False))
        tokens = [token async for token in message_promise]
        message = await message_promise
    assert tokens == ["All at once."]
    assert message.text == "All at once."
    assert message.choices[0].finish_reason == "stop"
    assert message.usage.total_tokens == 15
    assert message.id == "chatcmpl-2"
    assert openai_mock.request_json()["stream"] is False


async def test_non_stream_tool_calls_without_tools_are_replied_not_run(openai_mock: Any) -> None:
    tool_call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    response = completion({"role": "assistant", "content": None, "tool_calls": [tool_call]}, "tool_calls")
    async with MiniAgents(stream_llm_tokens_by_default=False):
        message_promise = await first_message_promise(answering(openai_mock, response).inquire("q"))
        tokens = [token async for token in message_promise]
        message = await message_promise
    # the agent has no tools: the call is shown to the caller (not dropped) and nothing is run
    assert tokens == ["{}"]
    assert isinstance(message, ToolCallMessage)
    assert (message.tool_call_id, message.tool_name, message.arguments) == ("call_1", "lookup", {})
    assert message.choices[0].finish_reason == "tool_calls"
    assert len(openai_mock.requests) == 1


async def test_a_lone_surrogate_in_the_history_is_sent_as_the_replacement_character(openai_mock: Any) -> None:
    # (half of an emoji that a broken stream cut in two stays in the answer's text; sent as the JSON escape
    # "\ud83d", a strict server refuses it, so every later turn of the conversation failed)
    agent = answering(openai_mock, completion({"role": "assistant", "content": "ok"}, "stop", usage=USAGE))
    history = [UserMessage("hi"), AssistantMessage("half \ud83d"), UserMessage("pair \ud83d\ude00")]
    async with MiniAgents():
        assert [m.text for m in await agent.inquire(history, stream=False)] == ["ok"]
    assert openai_mock.request_json()["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "half \ufffd"},
        {"role": "user", "content": "pair \U0001f600"},
    ]
    assert history[1].text == "half \ud83d"  # (the message keeps its text)


async def test_non_stream_without_choices_is_a_response_error(openai_mock: Any) -> None:
    response = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}
    agent = openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.json_response(200, response))
    )
    async with MiniAgents():
        message_promise = await first_message_promise(agent.inquire("q", stream=False))
        with pytest.raises(LLMResponseError, match="0 choices"):
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)


ERROR_CASES = [
    (
        401,
        openai.AuthenticationError,
        {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
    ),
    (429, openai.RateLimitError, {"error": {"message": "Rate limit reached", "type": "requests"}}),
    (500, openai.InternalServerError, {"error": {"message": "The server had an error", "type": "server_error"}}),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
@pytest.mark.parametrize(("status", "sdk_error", "body"), ERROR_CASES, ids=["401", "429", "500"])
async def test_http_errors_surface_at_token_level(
    openai_mock: Any, stream: bool, status: int, sdk_error: type[Exception], body: dict[str, Any]
) -> None:
    agent = openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.json_response(status, body))
    )
    async with MiniAgents():
        replies = agent.inquire("q", stream=stream)
        message_promise = await asyncio.wait_for(first_message_promise(replies), NO_HANG)  # the sequence is fine
        with pytest.raises(LLMAPIStatusError) as raised:
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
        error = raised.value
        with pytest.raises(LLMAPIStatusError) as raised_by_tokens:
            await asyncio.wait_for(_consume(message_promise), NO_HANG)
        assert raised_by_tokens.value is error
        with pytest.raises(LLMAPIStatusError):
            await replies  # awaiting the whole sequence raises too
    assert isinstance(error, LLMError)
    assert (error.provider, error.model, error.status_code) == ("openai", "gpt-test", status)
    assert isinstance(error.__cause__, sdk_error)
    assert str(status) in str(error)
    assert "openai" in str(error)
    assert "gpt-test" in str(error)
    assert body["error"]["message"] in str(error)
    assert len(openai_mock.requests) == 1  # max_retries=0: no retry


async def _consume(message_promise: Any) -> list[str]:
    return [token async for token in message_promise]


async def test_refused_connection_surfaces_at_token_level(closed_port: int) -> None:
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"http://127.0.0.1:{closed_port}/v1", max_retries=0
    ) as client:
        agent = openai_agent.fork(model="gpt-test", async_client=client)
        async with MiniAgents():
            message_promise = await first_message_promise(agent.inquire("q"))
            with pytest.raises(LLMConnectionError) as raised:
                await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    error = raised.value
    assert isinstance(error.__cause__, openai.APIConnectionError)
    assert error.status_code is None
    assert "openai" in str(error)
    assert "gpt-test" in str(error)


async def test_error_event_mid_stream_keeps_earlier_tokens(openai_mock: Any, sse_body: Any) -> None:
    body = sse_body(
        chunk({"role": "assistant", "content": "Partial"}),
        {"error": {"message": "The model is overloaded", "type": "server_error"}},
    )
    agent = openai_agent.fork(
        model="gpt-test", async_client=openai_mock.client(lambda r: openai_mock.sse_response(body))
    )
    async with MiniAgents():
        message_promise = await first_message_promise(agent.inquire("q"))
        tokens = []
        with pytest.raises(LLMError, match="overloaded") as raised:
            async for token in message_promise:
                tokens.append(token)
    assert tokens == ["Partial"]
    assert isinstance(raised.value.__cause__, openai.APIError)


def test_default_client_is_created_lazily_once_per_event_loop(
    monkeypatch: pytest.MonkeyPatch, openai_mock: Any, sse_body: Any
) -> None:
    created: list[Any] = []
    body = sse_body(chunk({"content": "ok"}), chunk({}, finish_reason="stop"), done=True)

    def fake_async_openai() -> Any:
        client = openai_mock.client(lambda r: openai_mock.sse_response(body))
        created.append(client)
        return client

    monkeypatch.setattr(openai, "AsyncOpenAI", fake_async_openai)
    monkeypatch.setattr(
        openai_module, "_default_clients", openai_module.ClientPerLoop(openai_module._new_default_client)
    )
    agent = openai_agent.fork(model="gpt-test")
    assert created == []  # nothing is created before an inquiry runs

    async def two_inquiries() -> list[str]:
        first, second = await asyncio.gather(agent.inquire("a"), agent.inquire("b"))
        return [first[0].text, second[0].text]

    results = [MiniAgents().run(two_inquiries()) for _ in range(2)]  # two event loops, one after the other (W18)
    assert results == [["ok", "ok"], ["ok", "ok"]]
    assert len(created) == 2
    assert created[0] is not created[1]
    assert len(openai_mock.requests) == 4


async def test_missing_api_key_is_an_llm_error_at_token_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setattr(
        openai_module, "_default_clients", openai_module.ClientPerLoop(openai_module._new_default_client)
    )
    async with MiniAgents():
        message_promise = await first_message_promise(openai_agent.inquire("q", model="gpt-test"))
        with pytest.raises(LLMError) as raised:
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    assert isinstance(raised.value.__cause__, openai.OpenAIError)


async def test_cancelling_the_call_closes_the_http_stream(openai_mock: Any) -> None:
    """`cancel()` stops the agent mid-answer: the response body is closed, no more chunks are read."""
    import json as json_module

    sent: list[int] = []
    closed = asyncio.Event()

    class SlowBody:
        def __aiter__(self) -> Any:
            return self.chunks()

        async def chunks(self) -> Any:
            try:
                for index in range(1000):
                    sent.append(index)
                    payload = json_module.dumps(chunk({"content": f"t{index} "}))
                    yield f"data: {payload}\n\n".encode()
                    await asyncio.sleep(0.005)
            finally:
                closed.set()  # httpx closes the body it reads when the response is closed

    def respond(request: Any) -> Any:
        return openai_mock.http.Response(200, headers={"content-type": "text/event-stream"}, content=SlowBody())

    agent = openai_agent.fork(model="gpt-test", async_client=openai_mock.client(respond))
    async with asyncio.timeout(NO_HANG), MiniAgents():
        replies = agent.inquire("count")
        message_promise = await anext(aiter(replies))
        tokens = []
        async for token in message_promise:
            tokens.append(token)
            if len(tokens) == 3:
                replies.cancel()
                break
        await asyncio.wait_for(closed.wait(), NO_HANG)
        with pytest.raises(AgentCallCancelledError):
            await message_promise
        with pytest.raises(AgentCallCancelledError):
            await replies
    assert len(sent) < 20  # the stream stopped being read at the cancel, not after 1000 chunks
