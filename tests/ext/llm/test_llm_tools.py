"""The agent loop on the fakes: tools, tool-call messages, structured output, max_turns, chains of LLM agents."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Literal

import pydantic
import pytest

from miniagents import AgentCallStatus, InteractionContext, MiniAgent, MiniAgents, RunObserver, miniagent
from miniagents.errors import AgentCallCancelledError
from miniagents.ext import agent_chain
from miniagents.ext.llm import (
    AssistantMessage,
    LLMError,
    LLMMaxTurnsError,
    LLMOutputError,
    LLMResponseError,
    LLMToolError,
    SystemMessage,
    ToolCallMessage,
    ToolResultMessage,
    UserMessage,
)
from miniagents.ext.llm.output import StructuredOutputMessage, apartial_outputs
from miniagents.ext.llm.testing import FakeLLMMessage, ScriptedToolCall, function_llm_agent, scripted_llm_agent
from miniagents.ext.llm.tools import Tool, tool, tool_result_text

NO_HANG = 10


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    """Get the current weather of a city.

    Args:
        city: the city's name,
            in English.
        unit: the temperature unit.

    Returns:
        A short description.
    """
    return f"sunny, 21 {unit} in {city}"


async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_tool_schema_and_description_come_from_signature_and_docstring() -> None:
    weather = tool(get_weather)
    assert weather.name == "get_weather"
    assert weather.description == "Get the current weather of a city."
    assert weather.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city's name, in English."},
            "unit": {"default": "C", "enum": ["C", "F"], "type": "string", "description": "the temperature unit."},
        },
        "required": ["city"],
    }
    renamed = tool(name="sum_two", description="Sums.")(add)
    assert (renamed.name, renamed.description) == ("sum_two", "Sums.")

    @miniagent
    async def search_agent(ctx: InteractionContext, query: str, limit: int = 3) -> None:
        """Search the web."""
        ctx.reply(f"{limit} results for {query}")

    search = tool(search_agent)
    assert (search.name, search.description) == ("search_agent", "Search the web.")
    assert search.parameters["required"] == ["query"]
    assert set(search.parameters["properties"]) == {"query", "limit"}


def test_bad_tools_fail_early_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tool name"):
        tool(name="has space")(add)

    def positional(a: int, /) -> int:
        return a

    with pytest.raises(TypeError, match="positional-only"):
        tool(positional)
    assert tool_result_text({"t": 1}) == '{"t":1}'


async def test_a_tool_round_trip_streams_calls_runs_tools_and_sends_results_back() -> None:
    fake = scripted_llm_agent(
        [
            [
                "Let me check. ",
                ScriptedToolCall("get_weather", {"city": "Paris"}),
                ScriptedToolCall("add", {"a": 2, "b": 3}),
            ],
            "Sunny, and 5.",
        ]
    )
    llm = fake.fork(tools=[get_weather, add])
    async with MiniAgents():
        message_promises = [mp async for mp in llm.inquire(UserMessage("Weather? And 2+3?"))]
        call_tokens = [token async for token in message_promises[1]]
        messages = [await mp for mp in message_promises]

    assert [type(m).__name__ for m in messages] == [
        "FakeLLMMessage",
        "ToolCallMessage",
        "ToolCallMessage",
        "ToolResultMessage",
        "ToolResultMessage",
        "FakeLLMMessage",
    ]
    assert call_tokens == ['{"city": ', '"Paris"}']  # the argument JSON, as the model streamed it
    first_call = messages[1]
    assert isinstance(first_call, ToolCallMessage)
    assert (first_call.tool_call_id, first_call.tool_name, first_call.arguments) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert first_call.agent_alias == "SCRIPTED_LLM"
    assert messages[0].choices[0].finish_reason == "tool_calls"  # the turn's metadata is on its first message
    results = messages[3:5]
    assert [(r.tool_call_id, r.text, r.is_error) for r in results] == [
        ("call_1", "sunny, 21 C in Paris", False),
        ("call_2", "5", False),
    ]
    assert messages[-1].text == "Sunny, and 5."
    assert messages[-1].choices[0].finish_reason == "stop"

    # what the "model" saw in its second turn: the calls in one assistant message, then the results
    second = fake.prompts[1]
    assert second[0] == {"role": "user", "content": "Weather? And 2+3?"}
    assert second[1]["role"] == "assistant" and second[1]["content"] == "Let me check. "
    assert [c["function"]["name"] for c in second[1]["tool_calls"]] == ["get_weather", "add"]
    assert second[2:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C in Paris"},
        {"role": "tool", "tool_call_id": "call_2", "content": "5"},
    ]
    assert [t["function"]["name"] for t in fake.requests[0]["tools"]] == ["get_weather", "add"]


async def test_the_tools_of_one_turn_run_concurrently_as_agent_calls() -> None:
    both_started = asyncio.Event()
    running = 0

    async def slow(name: str) -> str:
        """Wait until both calls run."""
        nonlocal running
        running += 1
        if running == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), NO_HANG)
        return name

    persisted: list[Any] = []
    llm = scripted_llm_agent(
        [[ScriptedToolCall("slow", {"name": "x"}), ScriptedToolCall("slow", {"name": "y"})], "done"]
    ).fork(tools=[slow])

    async def record(_: Any, message: Any) -> None:
        persisted.append(message)

    async with MiniAgents(on_persist_message=record):
        messages = await asyncio.wait_for(llm.inquire("go"), NO_HANG)
    assert [str(m) for m in messages if isinstance(m, ToolResultMessage)] == ["x", "y"]
    # each tool call is an inquiry of the tool's agent: its reply is persisted like any agent's
    assert {"x", "y"} <= {str(m) for m in persisted}


async def test_tool_errors_go_back_to_the_model_or_are_raised_by_option() -> None:
    def broken(x: int) -> str:
        """Always fails."""
        raise RuntimeError(f"broken with {x}")

    script = [
        [
            ScriptedToolCall("broken", {"x": 1}),
            ScriptedToolCall("broken", {"x": "not a number"}),
            ScriptedToolCall("nope", {}),
            ScriptedToolCall("broken", "{not json"),
        ],
        "I could not do it.",
    ]
    llm = scripted_llm_agent(script).fork(tools=[broken])
    async with MiniAgents():
        messages = await llm.inquire("try")
    results = [m for m in messages if isinstance(m, ToolResultMessage)]
    assert all(r.is_error for r in results)
    assert results[0].text == "Error: RuntimeError: broken with 1"
    assert results[1].text.startswith("Error: invalid arguments:")
    assert "there is no tool named 'nope'" in results[2].text
    assert "not valid JSON" in results[3].text
    assert str(messages[-1]) == "I could not do it."

    raising = scripted_llm_agent([ScriptedToolCall("broken", {"x": 7})]).fork(tools=[broken], raise_tool_errors=True)
    async with MiniAgents():
        replies = raising.inquire("try")
        seen = []
        with pytest.raises(LLMToolError, match="broken with 7") as raised:
            async for message_promise in replies:
                seen.append(await message_promise)
    assert raised.value.tool_name == "broken"
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert [type(m) for m in seen] == [ToolCallMessage]  # the call was streamed before the error


async def test_max_turns_is_a_named_error_after_the_messages_so_far() -> None:
    fake = scripted_llm_agent([ScriptedToolCall("add", {"a": 1, "b": 1})] * 3)
    llm = fake.fork(tools=[add], max_turns=2)
    async with MiniAgents():
        seen = []
        with pytest.raises(LLMMaxTurnsError, match="max_turns=2") as raised:
            async for message_promise in llm.inquire("loop"):
                seen.append(await message_promise)
    assert raised.value.max_turns == 2
    assert [type(m).__name__ for m in seen] == ["ToolCallMessage", "ToolResultMessage", "ToolCallMessage"]
    assert len(fake.prompts) == 2
    with pytest.raises(ValueError, match="max_turns"):
        async with MiniAgents():
            await scripted_llm_agent(["x"]).inquire("x", max_turns=0)


async def test_a_forced_tool_choice_is_forced_in_the_first_turn_only() -> None:
    fake = scripted_llm_agent([ScriptedToolCall("add", {"a": 1, "b": 2}), "3"])
    llm = fake.fork(tools=[add], tool_choice="add", parallel_tool_calls=False)
    async with MiniAgents():
        await llm.inquire("1+2")
    assert fake.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert fake.requests[0]["parallel_tool_calls"] is False
    assert fake.requests[1]["tool_choice"] == "auto"
    with pytest.raises(ValueError, match="tool_choice='nope' names no tool"):
        async with MiniAgents():
            await fake.fork(tools=[add], tool_choice="nope").inquire("x")


async def test_a_miniagent_is_a_tool_and_its_replies_are_the_result() -> None:
    @miniagent
    async def lookup_agent(ctx: InteractionContext, topic: str) -> None:
        """Look a topic up."""
        ctx.reply(f"{topic}: part one")
        ctx.reply("part two")

    llm = scripted_llm_agent([ScriptedToolCall("lookup_agent", {"topic": "owls"}), "ok"]).fork(tools=[lookup_agent])
    async with MiniAgents():
        messages = await llm.inquire("owls?")
    (result,) = [m for m in messages if isinstance(m, ToolResultMessage)]
    assert result.text == "owls: part one\n\npart two"


class Verdict(pydantic.BaseModel):
    verdict: Literal["accept", "revise"]
    score: int = 0
    notes: list[str] = []


async def test_structured_output_streams_partial_values_and_validates_the_final_one() -> None:
    answer = '{"verdict": "revise", "score": 6, "notes": ["too long", "no sources"]}'
    fake = scripted_llm_agent([answer])
    llm = fake.fork(output_type=Verdict)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in llm.inquire("Judge it")]
        partials = [partial async for partial in apartial_outputs(message_promise)]
        message = await message_promise
    assert isinstance(message, FakeLLMMessage)
    assert isinstance(message, StructuredOutputMessage)
    assert message.output == Verdict(verdict="revise", score=6, notes=["too long", "no sources"])
    assert message.text == answer
    assert message.class_ == "FakeLLMMessage"
    assert partials[-1] == message.output
    assert Verdict(verdict="revise", score=6, notes=["too "]) in partials  # a list item while it streams
    assert all(isinstance(p, Verdict) for p in partials)
    assert fake.requests[0]["response_format"]["json_schema"]["name"] == "Verdict"
    assert fake.requests[0]["response_format"]["json_schema"]["schema"]["required"] == ["verdict"]


async def test_a_non_object_output_type_is_wrapped_on_the_wire() -> None:
    fake = scripted_llm_agent(['{"response": [3, 1, 2]}'])
    async with MiniAgents():
        (message,) = await fake.fork(output_type=list[int]).inquire("numbers")
    assert message.output == [3, 1, 2]
    assert fake.requests[0]["response_format"]["json_schema"]["schema"]["required"] == ["response"]


async def test_invalid_structured_output_is_a_named_error_with_the_raw_text() -> None:
    llm = scripted_llm_agent(['{"verdict": "maybe"}']).fork(output_type=Verdict)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in llm.inquire("Judge it")]
        with pytest.raises(LLMOutputError, match="no valid Verdict") as raised:
            await message_promise
    assert raised.value.raw_text == '{"verdict": "maybe"}'
    assert isinstance(raised.value.__cause__, pydantic.ValidationError)
    assert isinstance(raised.value, LLMResponseError)


async def test_structured_output_after_tool_calls() -> None:
    llm = scripted_llm_agent([ScriptedToolCall("add", {"a": 2, "b": 2}), '{"verdict": "accept", "score": 4}']).fork(
        tools=[add], output_type=Verdict
    )
    async with MiniAgents():
        messages = await llm.inquire("2+2, then judge")
    assert messages[-1].output == Verdict(verdict="accept", score=4)


async def test_json_tool_calling_for_models_without_native_tools() -> None:
    """``tool_calling="json"``: the tools go into a response-format schema and the JSON answer is decoded."""

    def answer(prompt: list[dict[str, Any]]) -> str:
        if prompt[-1]["role"] == "user" and prompt[-1]["content"].startswith("The tool add returned: 5"):
            return '{"response": "It is 5."}'
        return '{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}'

    fake = function_llm_agent(answer)
    llm = fake.fork(tools=[add], tool_calling="json", tool_choice="required")
    async with MiniAgents():
        message_promises = [mp async for mp in llm.inquire("2+3?")]
        final_tokens = [token async for token in message_promises[-1]]
        messages = [await mp for mp in message_promises]
    assert [type(m).__name__ for m in messages] == ["ToolCallMessage", "ToolResultMessage", "FakeLLMMessage"]
    assert messages[0].arguments == {"a": 2, "b": 3}
    assert "".join(final_tokens) == messages[-1].text == "It is 5."
    assert len(final_tokens) > 1  # the answer streams out of the JSON string as it comes
    first, second = fake.requests
    assert "tools" not in first
    schema = first["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["tool_calls"]  # required: the answer must be a call
    assert schema["properties"]["tool_calls"]["items"]["properties"]["name"]["const"] == "add"
    assert [s["required"] for s in second["response_format"]["json_schema"]["schema"]["anyOf"]] == [
        ["tool_calls"],
        ["response"],
    ]
    assert "You can call tools" in fake.prompts[0][0]["content"]
    assert json.loads(fake.prompts[1][2]["content"]) == {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}


async def test_a_chain_of_llm_agents_hands_each_answer_on_as_a_user_turn() -> None:
    researcher = scripted_llm_agent(["Owls hunt at night."], alias="RESEARCHER")
    writer = scripted_llm_agent(["Owls: night hunters.", "again"], alias="WRITER")
    async with MiniAgents():
        messages = await agent_chain.fork(agents=[researcher, writer.fork(system="Write.")]).inquire(
            UserMessage("owls")
        )
    assert [str(m) for m in messages] == ["Owls: night hunters."]
    assert writer.prompts == [
        [{"role": "system", "content": "Write."}, {"role": "user", "content": "Owls hunt at night."}]
    ]

    # the agent's own earlier answers stay assistant turns; other_agents_as_user=False keeps the old behaviour
    history = [
        UserMessage("hi"),
        AssistantMessage("hello", agent_alias="WRITER"),
        AssistantMessage("x", agent_alias="R"),
    ]
    async with MiniAgents():
        await writer.fork(alias="WRITER").inquire([*history, SystemMessage("s")])
        old = scripted_llm_agent(["ok"], alias="WRITER")
        await old.inquire(history, other_agents_as_user=False)
    assert [d["role"] for d in writer.prompts[-1]] == ["user", "assistant", "user", "system"]
    assert [d["role"] for d in old.prompts[-1]] == ["user", "assistant", "assistant"]


async def test_a_cancelled_llm_agent_cancels_its_running_tools() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> str:
        """Never returns."""
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    llm = scripted_llm_agent([ScriptedToolCall("forever")]).fork(tools=[forever])
    async with MiniAgents():
        call = llm.initiate_inquiry()
        call.send_message("go")
        replies = call.reply_sequence()
        await asyncio.wait_for(started.wait(), NO_HANG)
        call.cancel()
        await asyncio.wait_for(cancelled.wait(), NO_HANG)  # the tool's agent call was cancelled with its caller
        with pytest.raises(AgentCallCancelledError):
            await asyncio.wait_for(replies.aresolve(), NO_HANG)
    assert call.status == AgentCallStatus.CANCELLED


async def test_tool_calls_are_agent_calls_under_the_llm_agents_call() -> None:
    calls: list[Any] = []

    class Recorder(RunObserver):
        def on_call_ended(self, call: Any) -> None:
            calls.append(call)

    llm = scripted_llm_agent(
        [[ScriptedToolCall("add", {"a": 1, "b": 2}), ScriptedToolCall("add", {"a": 3, "b": 4})], "ok"]
    )
    async with MiniAgents(observers=[Recorder()]):
        await llm.fork(tools=[add]).inquire("sum")
    tool_calls = [c for c in calls if c.agent_alias == "add"]
    (llm_call,) = [c for c in calls if c.agent_alias == "SCRIPTED_LLM"]
    assert len(tool_calls) == 2
    assert all(c.parent_call is llm_call for c in tool_calls)
    assert sorted(sorted(c.kwargs.frozen_fields_and_values().items()) for c in tool_calls) == [
        [("a", 1), ("b", 2)],
        [("a", 3), ("b", 4)],
    ]
    assert all(c.status == AgentCallStatus.FINISHED for c in calls)


def test_tool_sources_and_duplicate_names() -> None:
    class Source:
        async def alist_tools(self) -> list[Tool]:
            return [tool(add)]

    async def main() -> None:
        llm = scripted_llm_agent([ScriptedToolCall("add", {"a": 1, "b": 1}), "2"]).fork(tools=[Source()])
        messages = await llm.inquire("1+1")
        assert [str(m) for m in messages if isinstance(m, ToolResultMessage)] == ["2"]
        with pytest.raises(ValueError, match="two tools are named 'add'"):  # (misuse: the reply sequence fails)
            await scripted_llm_agent(["x"]).fork(tools=[add, Source()]).inquire("x")

    MiniAgents().run(main())


def test_tools_are_fork_only_and_inquire_kwargs_must_be_freezable() -> None:
    async def main() -> None:
        with pytest.raises(pydantic.ValidationError):
            scripted_llm_agent(["x"]).inquire("x", tools=[add])

    MiniAgents().run(main())
    assert isinstance(scripted_llm_agent(["x"]).fork(tools=[add]), MiniAgent)


async def test_achain_loop_over_llm_agents_passes_each_answer_as_the_next_user_turn() -> None:
    from miniagents.promising.sentinels import AWAIT
    from miniagents.utils import achain_loop

    class Stop(Exception):
        pass

    researcher = scripted_llm_agent(["Notes about owls."], alias="RESEARCHER")
    writer = scripted_llm_agent(["A paragraph about owls."], alias="WRITER")
    seen: list[Any] = []

    def stopper(messages: Any) -> Any:
        seen.extend(messages)  # resolved by the AWAIT before
        raise Stop

    async with MiniAgents():
        with pytest.raises(Stop):
            await achain_loop([researcher, writer, AWAIT, stopper], initial_input=UserMessage("owls"))
    assert writer.prompts == [[{"role": "user", "content": "Notes about owls."}]]
    assert [str(m) for m in seen] == ["A paragraph about owls."]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('{"answer": "3"}', 'neither "tool_calls" nor a string "response"'),
        ('{"tool_calls": "add"}', '"tool_calls" is not a list of objects'),
        ('{"tool_calls": ["add"]}', '"tool_calls" is not a list of objects'),
        ('{"tool_calls": [1]}', '"tool_calls" is not a list of objects'),
    ],
)
async def test_json_tool_calling_refuses_an_answer_of_another_shape(answer: str, why: str) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    agent = scripted_llm_agent([answer, '{"response": "3"}']).fork(tools=[add], tool_calling="json")
    async with MiniAgents():
        with pytest.raises(LLMResponseError, match=re.escape(f"gave no valid JSON answer ({why}): {answer!r}")):
            await agent.inquire("1+2?")


@pytest.mark.parametrize(
    ("tools", "error", "message"),
    [
        ([lambda a: a], ValueError, "a tool name must match"),
        ([tool_result_text, tool_result_text], ValueError, "two tools are named 'tool_result_text'"),
        ([42], TypeError, "a tool must be a function, a MiniAgent, a Tool or a tool source, got 42"),
    ],
)
async def test_misused_tools_fail_the_inquiry_with_the_usual_errors(
    tools: list[Any], error: type, message: str
) -> None:
    agent = scripted_llm_agent(["never asked"]).fork(tools=tools)
    async with MiniAgents():
        with pytest.raises(error, match=re.escape(message)):  # (not an LLMError: nothing failed at the model)
            await agent.inquire("hi")


async def test_a_tool_source_that_fails_to_list_its_tools_is_reported_like_the_model() -> None:
    class BrokenSource:
        async def alist_tools(self) -> list[Tool]:
            raise ConnectionError("the server went away")

    agent = scripted_llm_agent(["never asked"]).fork(tools=[BrokenSource()])
    async with MiniAgents():
        (failed,) = [message_promise async for message_promise in agent.inquire("hi")]
        with pytest.raises(LLMError, match="could not list the tools: ConnectionError: the server went away"):
            await failed
