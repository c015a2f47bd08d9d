"""Layer 2: ``anthropic_agent`` against the Anthropic wire format (mock HTTP transport), and the request building
rules of SPEC §6.3."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from miniagents import Message, MiniAgents
from miniagents.ext.llm import (
    AssistantMessage,
    LLMAPIStatusError,
    LLMConnectionError,
    LLMError,
    SystemMessage,
    ToolCallMessage,
    UserMessage,
)
from miniagents.ext.llm.anthropic import DEFAULT_MAX_TOKENS, AnthropicMessage, anthropic_agent, build_anthropic_request

NO_HANG = 10


def message_start(**message: Any) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-api-name",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
            **message,
        },
    }


def text_events(*texts: str, stop_reason: str = "end_turn") -> list[dict[str, Any]]:
    return [
        message_start(),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}} for text in texts),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    ]


async def first_message_promise(replies: Any) -> Any:
    message_promises = [mp async for mp in replies]
    assert len(message_promises) == 1
    return message_promises[0]


async def _consume(message_promise: Any) -> list[str]:
    return [token async for token in message_promise]


# --- request building (SPEC §6.3) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "system", "expected"),
    [
        pytest.param([], None, {"messages": [{"role": "user", "content": "/start"}]}, id="empty-gets-fake-user"),
        pytest.param([UserMessage("hi")], None, {"messages": [{"role": "user", "content": "hi"}]}, id="no-system-key"),
        pytest.param(
            [AssistantMessage("I start"), UserMessage("ok")],
            None,
            {
                "messages": [
                    {"role": "user", "content": "/start"},
                    {"role": "assistant", "content": "I start"},
                    {"role": "user", "content": "ok"},
                ]
            },
            id="assistant-first-gets-fake-user",
        ),
        pytest.param(
            [UserMessage("a"), Message("b"), AssistantMessage("c"), AssistantMessage("d"), UserMessage("e")],
            None,
            {
                "messages": [
                    {"role": "user", "content": "a\n\nb"},
                    {"role": "assistant", "content": "c\n\nd"},
                    {"role": "user", "content": "e"},
                ]
            },
            id="same-roles-merge",
        ),
        pytest.param(
            [SystemMessage("s1"), UserMessage("u"), SystemMessage("s2")],
            None,
            {"messages": [{"role": "user", "content": "u"}], "system": "s1\n\ns2"},
            id="system-messages-leave-the-conversation",
        ),
        pytest.param(
            [SystemMessage("s1"), UserMessage("u")],
            "agent system",
            {"messages": [{"role": "user", "content": "u"}], "system": "agent system\n\ns1"},
            id="agent-system-first",
        ),
        pytest.param(
            [SystemMessage("only system")],
            None,
            {"messages": [{"role": "user", "content": "/start"}], "system": "only system"},
            id="only-system-gets-fake-user",
        ),
        pytest.param(
            [UserMessage("u1"), SystemMessage("s"), UserMessage("u2")],
            None,
            {"messages": [{"role": "user", "content": "u1\n\nu2"}], "system": "s"},
            id="merge-across-removed-system",
        ),
    ],
)
def test_build_anthropic_request(messages: list[Message], system: str | None, expected: dict[str, Any]) -> None:
    assert build_anthropic_request(messages, system=system) == expected


def test_build_anthropic_request_custom_fake_user_and_delimiter() -> None:
    request = build_anthropic_request(
        [SystemMessage("a"), SystemMessage("b"), AssistantMessage("x"), AssistantMessage("y")],
        system="s",
        fake_first_user_message="(begin)",
        message_delimiter_for_same_role=" | ",
    )
    assert request == {
        "messages": [{"role": "user", "content": "(begin)"}, {"role": "assistant", "content": "x | y"}],
        "system": "s | a | b",
    }


def test_build_anthropic_request_sends_what_utf8_can_hold() -> None:
    # (a lone surrogate, e.g. half of an emoji a broken stream cut in two, stays in a message's text; the API reads
    # UTF-8, so every later turn of the conversation failed)
    request = build_anthropic_request(
        [UserMessage("hi"), AssistantMessage("half \ud83d"), UserMessage("a pair \ud83d\ude00")], system="s \udcff"
    )
    assert request == {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "half \ufffd"},
            {"role": "user", "content": "a pair \U0001f600"},
        ],
        "system": "s \ufffd",
    }


# --- the wire -------------------------------------------------------------------------------------------------


@pytest.fixture
def anthropic_sdk(anthropic_mock: Any) -> Any:
    return anthropic_mock.sdk


async def test_stream_event_stream(anthropic_mock: Any, sse_body: Any, start_asap: object) -> None:
    body = sse_body(*text_events("Hello", ", ", "world"), named=True)
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.sse_response(body))
    )
    async with MiniAgents():
        replies = agent.inquire(
            [SystemMessage("sys"), UserMessage("Hi"), UserMessage("again")], system="Be brief.", start_asap=start_asap
        )
        message_promise = await first_message_promise(replies)
        assert message_promise.preliminary_metadata.agent_alias == "ANTHROPIC_AGENT"
        tokens = await _consume(message_promise)
        message = await message_promise
    assert tokens == ["Hello", ", ", "world"]
    assert message.text == "".join(tokens)
    assert isinstance(message, AnthropicMessage)
    assert (message.role, message.model, message.agent_alias) == ("assistant", "claude-test", "ANTHROPIC_AGENT")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.id, message.type) == ("msg_1", "message")
    assert message.usage.output_tokens == 7

    request = anthropic_mock.request_json()
    assert anthropic_mock.requests[-1].url.path == "/v1/messages"
    assert request["stream"] is True
    assert request["model"] == "claude-test"
    assert request["max_tokens"] == DEFAULT_MAX_TOKENS == 1024
    assert request["system"] == "Be brief.\n\nsys"
    assert request["messages"] == [{"role": "user", "content": "Hi\n\nagain"}]


async def test_stream_empty_input_sends_the_fake_user_message_and_max_tokens_kwarg(
    anthropic_mock: Any, sse_body: Any
) -> None:
    body = sse_body(*text_events("ok", stop_reason="max_tokens"), named=True)
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.sse_response(body))
    )
    async with MiniAgents():
        (message,) = await agent.inquire(max_tokens=5, reply_metadata={"tag": "x"})
    assert message.stop_reason == "max_tokens"
    assert message.tag == "x"
    request = anthropic_mock.request_json()
    assert request["messages"] == [{"role": "user", "content": "/start"}]
    assert request["max_tokens"] == 5
    assert "system" not in request


async def test_non_stream_joins_text_blocks_and_replies_tool_use_blocks(anthropic_mock: Any) -> None:
    response = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "claude-api-name",
        "content": [
            {"type": "text", "text": "Let me check. "},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
            {"type": "text", "text": "Done."},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.json_response(200, response))
    )
    async with MiniAgents(stream_llm_tokens_by_default=False):
        text_promise, call_promise = [mp async for mp in agent.inquire("q")]
        tokens = await _consume(text_promise)
        message = await text_promise
        call = await call_promise
    assert tokens == ["Let me check. Done."]
    assert message.text == "Let me check. Done."
    assert message.stop_reason == "tool_use"
    assert message.model == "claude-test"
    assert "content" not in message.frozen_fields_and_values()
    # no tools were given: the tool_use block is shown, not run
    assert isinstance(call, ToolCallMessage)
    assert (call.tool_call_id, call.tool_name, call.arguments) == ("toolu_1", "lookup", {"q": "x"})
    assert anthropic_mock.request_json().get("stream") in (False, None)
    assert len(anthropic_mock.requests) == 1


async def test_non_stream_without_text_blocks_gives_empty_text(anthropic_mock: Any) -> None:
    response = {
        "id": "msg_3",
        "type": "message",
        "role": "assistant",
        "model": "claude-api-name",
        "content": [],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 0},
    }
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.json_response(200, response))
    )
    async with MiniAgents():
        message_promise = await first_message_promise(agent.inquire("q", stream=False))
        assert await _consume(message_promise) == []
        assert (await message_promise).text == ""


ERROR_CASES = [
    (401, "AuthenticationError", "authentication_error", "invalid x-api-key"),
    (429, "RateLimitError", "rate_limit_error", "Number of requests has exceeded your rate limit"),
    (500, "InternalServerError", "api_error", "Internal server error"),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
@pytest.mark.parametrize(("status", "sdk_error_name", "error_type", "detail"), ERROR_CASES, ids=["401", "429", "500"])
async def test_http_errors_surface_at_token_level(
    anthropic_mock: Any, stream: bool, status: int, sdk_error_name: str, error_type: str, detail: str
) -> None:
    body = {"type": "error", "error": {"type": error_type, "message": detail}}
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.json_response(status, body))
    )
    async with MiniAgents():
        replies = agent.inquire("q", stream=stream)
        message_promise = await asyncio.wait_for(first_message_promise(replies), NO_HANG)
        with pytest.raises(LLMAPIStatusError) as raised:
            await asyncio.wait_for(_consume(message_promise), NO_HANG)
        with pytest.raises(LLMAPIStatusError):
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    error = raised.value
    assert (error.provider, error.model, error.status_code) == ("anthropic", "claude-test", status)
    assert isinstance(error.__cause__, getattr(anthropic_mock.sdk, sdk_error_name))
    for part in ("anthropic", "claude-test", str(status), detail):
        assert part in str(error)
    assert len(anthropic_mock.requests) == 1


async def test_error_event_mid_stream_keeps_earlier_tokens(anthropic_mock: Any, sse_body: Any) -> None:
    events = text_events("Partial")[:4]  # message_start … the first delta, then an error event
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    body = sse_body(*events, named=True)
    agent = anthropic_agent.fork(
        model="claude-test", async_client=anthropic_mock.client(lambda r: anthropic_mock.sse_response(body))
    )
    async with MiniAgents():
        message_promise = await first_message_promise(agent.inquire("q"))
        tokens = []
        with pytest.raises(LLMError, match="Overloaded"):
            async for token in message_promise:
                tokens.append(token)
    assert tokens == ["Partial"]


async def test_refused_connection_surfaces_at_token_level(anthropic_sdk: Any, closed_port: int) -> None:
    async with anthropic_sdk.AsyncAnthropic(
        api_key="sk-test", base_url=f"http://127.0.0.1:{closed_port}", max_retries=0
    ) as client:
        agent = anthropic_agent.fork(model="claude-test", async_client=client)
        async with MiniAgents():
            message_promise = await first_message_promise(agent.inquire("q"))
            with pytest.raises(LLMConnectionError) as raised:
                await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    assert isinstance(raised.value.__cause__, anthropic_sdk.APIConnectionError)
    assert "anthropic" in str(raised.value)


def test_default_client_is_created_lazily_once_per_event_loop(
    monkeypatch: pytest.MonkeyPatch, anthropic_mock: Any, sse_body: Any
) -> None:
    from miniagents.ext.llm import anthropic as anthropic_module

    created: list[Any] = []
    body = sse_body(*text_events("ok"), named=True)

    def fake_async_anthropic() -> Any:
        client = anthropic_mock.client(lambda r: anthropic_mock.sse_response(body))
        created.append(client)
        return client

    monkeypatch.setattr(anthropic_mock.sdk, "AsyncAnthropic", fake_async_anthropic)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setattr(
        anthropic_module, "_default_clients", anthropic_module.ClientPerLoop(anthropic_module._new_default_client)
    )
    agent = anthropic_agent.fork(model="claude-test")

    async def two_inquiries() -> list[str]:
        replies = await asyncio.gather(agent.inquire("a"), agent.inquire("b"))
        return [reply[0].text for reply in replies]

    assert [MiniAgents().run(two_inquiries()) for _ in range(2)] == [["ok", "ok"], ["ok", "ok"]]
    assert len(created) == 2
    assert created[0] is not created[1]


async def test_without_a_key_the_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    async with MiniAgents():
        with pytest.raises(
            LLMError, match=r"anthropic request failed for model 'claude-x': no API key: set ANTHROPIC_API_KEY"
        ):
            await anthropic_agent.inquire("hi", model="claude-x")
