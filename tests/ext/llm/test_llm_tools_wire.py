"""Tool calls and structured output in the exact OpenAI and Anthropic wire formats, on mock HTTP transports."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pydantic
import pytest

from miniagents import MiniAgents
from miniagents.ext.llm import LLMError, LLMOutputError, ToolCallMessage, ToolResultMessage, UserMessage
from miniagents.ext.llm.output import apartial_outputs

NO_HANG = 10


def get_weather(city: str) -> str:
    """Get the current weather of a city."""
    return f"sunny in {city}"


class Verdict(pydantic.BaseModel):
    verdict: str
    score: int


# --- OpenAI --------------------------------------------------------------------------------------------------

BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-api-name"}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def tool_call_delta(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    call: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        call.update(id=call_id, type="function")
    return chunk({"tool_calls": [call]})


def openai_tool_turn(sse_body: Any) -> bytes:
    return sse_body(
        chunk({"role": "assistant", "content": None}),
        tool_call_delta(0, "", "call_a", "get_weather"),
        tool_call_delta(0, '{"ci'),
        tool_call_delta(0, 'ty": "Paris"}'),
        tool_call_delta(1, "", "call_b", "get_weather"),
        tool_call_delta(1, '{"city": "Rome"}'),
        chunk({}, finish_reason="tool_calls"),
        done=True,
    )


async def test_openai_streamed_tool_call_deltas_become_tool_call_messages(openai_mock: Any, sse_body: Any) -> None:
    from miniagents.ext.llm.openai import OpenAIMessage, openai_agent

    bodies = [
        openai_tool_turn(sse_body),
        sse_body(chunk({"content": "Sunny in both."}), chunk({}, finish_reason="stop"), done=True),
    ]
    client = openai_mock.client(lambda request: openai_mock.sse_response(bodies.pop(0)))
    agent = openai_agent.fork(model="gpt-test", async_client=client, tools=[get_weather], tool_choice="required")
    async with MiniAgents():
        message_promises = [mp async for mp in agent.inquire(UserMessage("Weather in Paris and Rome?"))]
        first_call_tokens = [token async for token in message_promises[0]]
        messages = [await mp for mp in message_promises]

    assert first_call_tokens == ['{"ci', 'ty": "Paris"}']  # the argument JSON as the API streamed it
    assert [type(m) for m in messages] == [
        ToolCallMessage,
        ToolCallMessage,
        ToolResultMessage,
        ToolResultMessage,
        OpenAIMessage,
    ]
    assert [(m.tool_call_id, m.tool_name, m.arguments) for m in messages[:2]] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Rome"}),
    ]
    assert messages[0].choices[0].finish_reason == "tool_calls"
    assert messages[-1].text == "Sunny in both."

    first, second = openai_mock.request_json(0), openai_mock.request_json(1)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather of a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    assert first["tool_choice"] == "required"
    assert second["tool_choice"] == "auto"  # forced once only
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny in Paris"},
        {"role": "tool", "tool_call_id": "call_b", "content": "sunny in Rome"},
    ]


async def test_openai_structured_output_through_response_format(openai_mock: Any, sse_body: Any) -> None:
    from miniagents.ext.llm.openai import OpenAIMessage, openai_agent

    body = sse_body(
        chunk({"content": '{"verdict": "go'}),
        chunk({"content": 'od", "score": 9}'}),
        chunk({}, finish_reason="stop"),
        done=True,
    )
    client = openai_mock.client(lambda request: openai_mock.sse_response(body))
    agent = openai_agent.fork(model="gpt-test", async_client=client, output_type=Verdict)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in agent.inquire("Judge")]
        partials = [p async for p in apartial_outputs(message_promise)]
        message = await message_promise
    assert isinstance(message, OpenAIMessage)
    assert message.output == Verdict(verdict="good", score=9)
    assert partials == [Verdict(verdict="good", score=9)]  # `score` is required: nothing validates before it
    # every field is required: the schema can be strict as it is, with extra keys ruled out
    assert openai_mock.request_json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Verdict",
            "schema": {
                "properties": {
                    "verdict": {"title": "Verdict", "type": "string"},
                    "score": {"title": "Score", "type": "integer"},
                },
                "required": ["verdict", "score"],
                "title": "Verdict",
                "type": "object",
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


class Draft(pydantic.BaseModel):
    verdict: str
    score: int = 0


class Review(pydantic.BaseModel):
    verdict: str
    note: str | None = None


async def test_openai_structured_output_with_a_defaulted_field_is_not_strict(openai_mock: Any, sse_body: Any) -> None:
    from miniagents.ext.llm.openai import openai_agent

    body = sse_body(chunk({"content": '{"verdict": "good"}'}), chunk({}, finish_reason="stop"), done=True)
    client = openai_mock.client(lambda request: openai_mock.sse_response(body))
    agent = openai_agent.fork(model="gpt-test", async_client=client, output_type=Draft)
    async with MiniAgents():
        (message,) = await agent.inquire("Judge")
    assert message.output == Draft(verdict="good", score=0)
    # strict mode would make `score` required, so the model could no longer leave it to its default: the schema
    # goes out as pydantic made it, without "strict"
    assert openai_mock.request_json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Draft",
            "schema": {
                "properties": {
                    "verdict": {"title": "Verdict", "type": "string"},
                    "score": {"default": 0, "title": "Score", "type": "integer"},
                },
                "required": ["verdict"],
                "title": "Draft",
                "type": "object",
            },
        },
    }


async def test_openai_structured_output_with_a_none_default_is_strict_and_nullable(
    openai_mock: Any, sse_body: Any
) -> None:
    from miniagents.ext.llm.openai import openai_agent

    body = sse_body(chunk({"content": '{"verdict": "good", "note": null}'}), chunk({}, finish_reason="stop"), done=True)
    client = openai_mock.client(lambda request: openai_mock.sse_response(body))
    agent = openai_agent.fork(model="gpt-test", async_client=client, output_type=Review)
    async with MiniAgents():
        (message,) = await agent.inquire("Judge")
    assert message.output == Review(verdict="good", note=None)
    # `note` may be null, and null is its default: required and nullable means the same, so strict mode is used
    assert openai_mock.request_json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Review",
            "schema": {
                "properties": {
                    "verdict": {"title": "Verdict", "type": "string"},
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Note"},
                },
                "required": ["verdict", "note"],
                "title": "Review",
                "type": "object",
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


async def test_openai_invalid_structured_output_is_an_output_error(openai_mock: Any, sse_body: Any) -> None:
    from miniagents.ext.llm.openai import openai_agent

    body = sse_body(chunk({"content": '{"verdict": "good"'}), chunk({}, finish_reason="length"), done=True)
    client = openai_mock.client(lambda request: openai_mock.sse_response(body))
    agent = openai_agent.fork(model="gpt-test", async_client=client, output_type=Verdict)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in agent.inquire("Judge")]
        with pytest.raises(LLMOutputError) as raised:
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    assert (raised.value.provider, raised.value.model, raised.value.raw_text) == (
        "openai",
        "gpt-test",
        '{"verdict": "good"',
    )


@pytest.mark.parametrize(
    ("bad_chunk", "cause"),
    [("{not json", json.JSONDecodeError), ("[1, 2]", AttributeError)],
    ids=["malformed", "wrong-shape"],
)
async def test_openai_broken_chunks_are_llm_errors_naming_provider_and_model(
    openai_mock: Any, sse_body: Any, bad_chunk: str, cause: type[Exception]
) -> None:
    from miniagents.ext.llm.openai import openai_agent

    body = sse_body(chunk({"content": "Hel"}), bad_chunk, done=True)
    client = openai_mock.client(lambda request: openai_mock.sse_response(body))
    agent = openai_agent.fork(model="gpt-test", async_client=client)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in agent.inquire("Hi")]
        tokens = []
        with pytest.raises(LLMError) as raised:
            async for token in message_promise:
                tokens.append(token)
    assert tokens == ["Hel"]
    assert (raised.value.provider, raised.value.model) == ("openai", "gpt-test")
    assert "openai" in str(raised.value) and "gpt-test" in str(raised.value)
    error: BaseException | None = raised.value
    while error is not None and not isinstance(error, cause):
        error = error.__cause__
    assert isinstance(error, cause)


# --- Anthropic -----------------------------------------------------------------------------------------------


def anthropic_events(*blocks: tuple[str, Any], stop_reason: str) -> list[dict[str, Any]]:
    """``("text", ["a", "b"])`` or ``("tool_use", (id, name, ["{\\"ci", ...]))`` blocks, as stream events."""
    events: list[dict[str, Any]] = [
        {
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
            },
        }
    ]
    for index, (kind, payload) in enumerate(blocks):
        if kind == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            events.extend(
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}
                for t in payload
            )
        else:
            call_id, name, pieces = payload
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
                }
            )
            events.extend(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": p},
                }
                for p in pieces
            )
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 9},
        }
    )
    events.append({"type": "message_stop"})
    return events


async def test_anthropic_tool_use_and_input_json_delta_become_tool_call_messages(
    anthropic_mock: Any, sse_body: Any
) -> None:
    from miniagents.ext.llm.anthropic import AnthropicMessage, anthropic_agent

    bodies = [
        sse_body(
            *anthropic_events(
                ("text", ["Checking."]),
                ("tool_use", ("toolu_1", "get_weather", ['{"city": ', '"Oslo"}'])),
                stop_reason="tool_use",
            ),
            named=True,
        ),
        sse_body(*anthropic_events(("text", ["Sunny."]), stop_reason="end_turn"), named=True),
    ]
    client = anthropic_mock.client(lambda request: anthropic_mock.sse_response(bodies.pop(0)))
    agent = anthropic_agent.fork(
        model="claude-test", async_client=client, tools=[get_weather], parallel_tool_calls=False
    )
    async with MiniAgents():
        message_promises = [mp async for mp in agent.inquire("Weather in Oslo?", system="Be brief.")]
        call_tokens = [token async for token in message_promises[1]]
        messages = [await mp for mp in message_promises]

    assert call_tokens == ['{"city": ', '"Oslo"}']
    assert [type(m) for m in messages] == [AnthropicMessage, ToolCallMessage, ToolResultMessage, AnthropicMessage]
    assert messages[0].text == "Checking."
    assert messages[0].stop_reason == "tool_use"
    assert (messages[1].tool_call_id, messages[1].arguments) == ("toolu_1", {"city": "Oslo"})
    assert messages[-1].text == "Sunny."

    first, second = anthropic_mock.request_json(0), anthropic_mock.request_json(1)
    assert first["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather of a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    assert first["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert second["system"] == "Be brief."
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny in Oslo"}]},
    ]


async def test_anthropic_structured_output_through_a_forced_tool(anthropic_mock: Any, sse_body: Any) -> None:
    from miniagents.ext.llm.anthropic import AnthropicMessage, anthropic_agent

    body = sse_body(
        *anthropic_events(
            ("tool_use", ("toolu_9", "final_output", ['{"verdict": "ok",', ' "score": 3}'])), stop_reason="tool_use"
        ),
        named=True,
    )
    client = anthropic_mock.client(lambda request: anthropic_mock.sse_response(body))
    agent = anthropic_agent.fork(model="claude-test", async_client=client, output_type=Verdict)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in agent.inquire("Judge")]
        tokens = [token async for token in message_promise]
        message = await message_promise
    assert tokens == ['{"verdict": "ok",', ' "score": 3}']
    assert isinstance(message, AnthropicMessage)
    assert message.output == Verdict(verdict="ok", score=3)
    request = anthropic_mock.request_json()
    assert request["tool_choice"] == {"type": "tool", "name": "final_output"}
    assert request["tools"][0]["name"] == "final_output"
    assert request["tools"][0]["input_schema"]["required"] == ["verdict", "score"]
