"""Layer 1: agent logic on the fake LLM agents of ``miniagents.ext.llm.testing``."""

from __future__ import annotations

import asyncio
import doctest

import pytest

import miniagents.ext.llm.testing as testing_module
from miniagents import InteractionContext, Message, MiniAgent, MiniAgents, miniagent
from miniagents.ext.llm import AssistantMessage, SystemMessage, UserMessage
from miniagents.ext.llm.testing import (
    FakeLLMAgent,
    FakeLLMMessage,
    function_llm_agent,
    scripted_llm_agent,
    split_into_tokens,
)


async def collect_tokens(message_promise: object) -> list[str]:
    return [token async for token in message_promise]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello there!", ["Hello ", "there!"]),
        ("  leading", ["  ", "leading"]),
        ("a\n\nb  c ", ["a\n\n", "b  ", "c "]),
        ("", []),
        ("one", ["one"]),
    ],
)
def test_split_into_tokens_joins_back(text: str, tokens: list[str]) -> None:
    assert split_into_tokens(text) == tokens
    assert "".join(tokens) == text


async def test_scripted_agent_streams_word_tokens_and_assistant_metadata(start_asap: object) -> None:
    llm = scripted_llm_agent(["Hello there, friend!"], model="fake-model")
    async with MiniAgents():
        replies = llm.inquire(UserMessage("Hi"), start_asap=start_asap)
        message_promises = [mp async for mp in replies]
        assert len(message_promises) == 1
        (message_promise,) = message_promises
        assert message_promise.preliminary_metadata.role == "assistant"
        assert message_promise.preliminary_metadata.agent_alias == "SCRIPTED_LLM"
        tokens = await collect_tokens(message_promise)
        message = await message_promise
    assert tokens == ["Hello ", "there, ", "friend!"]
    assert message.text == "".join(tokens)
    assert isinstance(message, FakeLLMMessage)
    assert isinstance(message, AssistantMessage)
    assert (message.role, message.model, message.agent_alias) == ("assistant", "fake-model", "SCRIPTED_LLM")
    assert message.choices[0].finish_reason == "stop"


async def test_scripted_agent_replays_in_order_and_records_prompts() -> None:
    llm = scripted_llm_agent(["first", "second"])
    async with MiniAgents():
        first = await llm.inquire([SystemMessage("Be nice."), "Question 1"])
        second = await llm.inquire(Message("Question 2", role="user"), system="You are a bot.")
    assert [m.text for m in (*first, *second)] == ["first", "second"]
    assert isinstance(llm, FakeLLMAgent)
    assert llm.prompts == [
        [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Question 1"}],
        [{"role": "system", "content": "You are a bot."}, {"role": "user", "content": "Question 2"}],
    ]


async def test_exhausted_script_fails_at_token_level() -> None:
    llm = scripted_llm_agent(["only one"])
    async with MiniAgents():
        await llm.inquire("a")
        replies = llm.inquire("b")
        (message_promise,) = [mp async for mp in replies]  # the sequence itself does not fail
        with pytest.raises(IndexError, match="ran out of scripted replies"):
            await message_promise
        with pytest.raises(IndexError):
            await collect_tokens(message_promise)


async def test_scripted_exception_is_raised_at_token_level_after_nothing() -> None:
    boom = RuntimeError("provider down")
    llm = scripted_llm_agent([boom, "recovered"])
    async with MiniAgents():
        (message_promise,) = [mp async for mp in llm.inquire("a")]
        with pytest.raises(RuntimeError) as raised:
            await message_promise
        assert raised.value is boom
        assert [m.text for m in await llm.inquire("b")] == ["recovered"]


async def test_function_agent_sync_and_async_functions() -> None:
    def shout(prompt: list[dict[str, str]]) -> str:
        return prompt[-1]["content"].upper()

    async def count(prompt: list[dict[str, str]]) -> str:
        await asyncio.sleep(0)
        return f"{len(prompt)} messages"

    shouter = function_llm_agent(shout)
    counter = function_llm_agent(count, alias="COUNTER", model="counter-1")
    async with MiniAgents():
        (loud,) = await shouter.inquire("hello world")
        (counted,) = await counter.inquire(["a", "b", "c"], system="sys")
    assert loud.text == "HELLO WORLD"
    assert (loud.agent_alias, loud.model) == ("FUNCTION_LLM", "function-llm")
    assert counted.text == "4 messages"
    assert (counted.agent_alias, counted.model) == ("COUNTER", "counter-1")
    assert counter.prompts[0][0] == {"role": "system", "content": "sys"}


async def test_function_agent_error_and_bad_return_type() -> None:
    def broken(prompt: list[dict[str, str]]) -> str:
        raise ValueError("bad prompt")

    not_text = function_llm_agent(lambda prompt: 42)  # type: ignore[arg-type,return-value]
    async with MiniAgents():
        (message_promise,) = [mp async for mp in function_llm_agent(broken).inquire("x")]
        with pytest.raises(ValueError, match="bad prompt"):
            await message_promise
        with pytest.raises(TypeError, match="returned int"):
            await not_text.inquire("x")


async def test_stream_false_gives_one_token_and_context_default_applies() -> None:
    llm = scripted_llm_agent(["one two three", "four five", "six seven"])
    async with MiniAgents():
        (mp,) = [mp async for mp in llm.inquire("x", stream=False)]
        assert await collect_tokens(mp) == ["one two three"]
    async with MiniAgents(stream_llm_tokens_by_default=False):
        (mp,) = [mp async for mp in llm.inquire("x")]
        assert await collect_tokens(mp) == ["four five"]
        (mp,) = [mp async for mp in llm.inquire("x", stream=True)]
        assert await collect_tokens(mp) == ["six ", "seven"]


async def test_tokens_arrive_before_the_message_is_complete() -> None:
    llm = scripted_llm_agent(["slow reply with several tokens"], delay=0.02)
    async with MiniAgents():
        # the reply sequence ends with the agent loop: take the message as soon as it starts
        message_promise = await anext(aiter(llm.inquire("x")))
        iterator = aiter(message_promise)
        assert await anext(iterator) == "slow "
        assert not message_promise.is_resolved
        rest = [token async for token in iterator]
        assert rest == ["reply ", "with ", "several ", "tokens"]
        assert (await message_promise).text == "slow reply with several tokens"


async def test_reply_metadata_model_override_and_ignored_llm_kwargs() -> None:
    llm = scripted_llm_agent(["ok"])
    async with MiniAgents():
        (message,) = await llm.inquire(
            "x", model="other-model", max_tokens=10, temperature=0.0, reply_metadata={"tag": "t1"}
        )
    assert (message.model, message.tag) == ("other-model", "t1")


async def test_forks_share_the_script_and_the_prompt_record() -> None:
    llm = scripted_llm_agent(["a", "b"])
    forked = llm.fork(system="forked system")
    async with MiniAgents():
        assert (await llm.inquire("1"))[0].text == "a"
        assert (await forked.inquire("2"))[0].text == "b"
    assert [prompt[0]["content"] for prompt in llm.prompts] == ["1", "forked system"]


async def test_concurrent_inquiries_both_complete() -> None:
    llm = function_llm_agent(lambda prompt: f"{prompt[-1]['content']} " * 3, delay=0.01)
    async with MiniAgents():
        sequences = [llm.inquire(name) for name in ("a", "b")]
        messages = await asyncio.gather(*sequences)
    assert [m[0].text for m in messages] == ["a a a ", "b b b "]


async def test_user_agent_under_test_with_a_fake_llm() -> None:
    """How a user tests their own agent: inject the fake LLM, check the output and what the LLM was asked."""

    def make_summarizer(llm: MiniAgent) -> MiniAgent:
        @miniagent
        async def summarizer(ctx: InteractionContext) -> None:
            text = await ctx.message_promises.as_single_promise()
            ctx.reply(llm.inquire(f"Summarize: {text}", system="One sentence."))
            ctx.reply("-- end of summary --")

        return summarizer

    llm = scripted_llm_agent(["Short."])
    async with MiniAgents():
        replies = await make_summarizer(llm).inquire(["Part one.", "Part two."])
    assert [str(m) for m in replies] == ["Short.", "-- end of summary --"]
    assert llm.prompts == [
        [
            {"role": "system", "content": "One sentence."},
            {"role": "user", "content": "Summarize: Part one.\n\nPart two."},
        ]
    ]


def test_module_docstring_examples_run() -> None:
    results = doctest.testmod(testing_module, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0
    assert results.failed == 0
