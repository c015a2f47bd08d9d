"""agent_chain, agent_loop, user_agent, dialog_loop and prompt_agent (SPEC §6.4)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import miniagents.ext.aggregator_agents as aggregator_agents_compat
from miniagents import InteractionContext, Message, MiniAgent, MiniAgents, miniagent
from miniagents.ext import AWAIT, CLEAR, _user_agent, agent_aggregators
from miniagents.ext.agent_aggregators import (
    agent_chain,
    agent_loop,
    console_user_agent,
    dialog_loop,
    prompt_agent,
    user_agent,
)
from miniagents.ext.history_agents import InMemoryChatHistory, in_memory_history_agent
from miniagents.ext.llm import AssistantMessage, SystemMessage, UserMessage
from miniagents.ext.misc_agents import console_echo_agent, console_prompt_agent


@pytest.fixture(params=[True, False], ids=["asap", "lazy"])
def asap(request: pytest.FixtureRequest) -> bool:
    """Run with the context's start_everything_asap_by_default True and False."""
    return bool(request.param)


def texts(messages: Any) -> list[str | None]:
    return [message.text for message in messages]


def prefix_agent(prefix: str, log: list[str] | None = None) -> MiniAgent:
    """Replies with each incoming message prefixed; logs when it starts and ends."""

    async def prefixer(ctx: InteractionContext) -> None:
        if log is not None:
            log.append(f"{prefix} start")
        async for message_promise in ctx.message_promises:
            ctx.reply(f"{prefix}{await message_promise}")
        if log is not None:
            log.append(f"{prefix} end")

    return miniagent(prefixer, alias=prefix.upper())


def recording_agent(inputs: list[list[str | None]], reply: Any = None) -> MiniAgent:
    """Records the texts it gets on each inquiry; replies with ``reply`` (if not None)."""

    @miniagent
    async def recorder(ctx: InteractionContext) -> None:
        inputs.append(texts(await ctx.message_promises))
        if reply is not None:
            ctx.reply(reply)

    return recorder


# agent_chain


async def test_chain_applies_the_agents_in_order(asap: bool) -> None:
    async with MiniAgents(start_everything_asap_by_default=asap):
        chain = agent_chain.fork(agents=[prefix_agent("a:"), None, prefix_agent("b:")])
        assert texts(await chain.inquire(["x", "y"])) == ["b:a:x", "b:a:y"]


async def test_chain_await_finishes_everything_before_the_next_agent(asap: bool) -> None:
    log: list[str] = []
    async with MiniAgents(start_everything_asap_by_default=asap):
        chain = agent_chain.fork(agents=[prefix_agent("a:", log), AWAIT, prefix_agent("b:", log)])
        assert texts(await chain.inquire("x")) == ["b:a:x"]
    assert log == ["a: start", "a: end", "b: start", "b: end"]


async def test_chain_clear_drops_the_messages(asap: bool) -> None:
    inputs: list[list[str | None]] = []
    async with MiniAgents(start_everything_asap_by_default=asap):
        chain = agent_chain.fork(agents=[prefix_agent("a:"), CLEAR, recording_agent(inputs, reply="fresh")])
        assert texts(await chain.inquire("x")) == ["fresh"]
    assert inputs == [[]]


@pytest.mark.parametrize("steps", [[CLEAR], [prefix_agent("a:"), CLEAR], [AWAIT], []], ids=str)
async def test_chain_ending_with_no_messages_replies_nothing(steps: list[Any], asap: bool) -> None:
    async with MiniAgents(start_everything_asap_by_default=asap):
        chain = agent_chain.fork(agents=[CLEAR, *steps])
        assert await chain.inquire("x") == ()


async def test_chain_without_steps_passes_the_input_through() -> None:
    async with MiniAgents():
        assert texts(await agent_chain.fork(agents=[]).inquire(["x", "y"])) == ["x", "y"]


@pytest.mark.parametrize("bad_step", ["text", 42, prefix_agent])
async def test_chain_rejects_a_bad_step_before_inquiring_anything(bad_step: Any, asap: bool) -> None:
    inputs: list[list[str | None]] = []
    async with MiniAgents(start_everything_asap_by_default=asap):
        chain = agent_chain.fork(agents=[recording_agent(inputs, reply="r"), AWAIT, bad_step])
        with pytest.raises(ValueError, match="agent_chain accepts MiniAgents, AWAIT, CLEAR and None"):
            await chain.inquire("x")
    assert inputs == []


# agent_loop


def counting_agent(rounds: list[list[str | None]], stop_after: int, error: BaseException) -> MiniAgent:
    """Records its input and replies with the next round number; raises ``error`` on round ``stop_after``."""

    @miniagent
    async def counter(ctx: InteractionContext) -> None:
        rounds.append(texts(await ctx.message_promises))
        if len(rounds) == stop_after:
            raise error
        ctx.reply(f"round {len(rounds)}")

    return counter


async def test_loop_feeds_each_round_into_the_next_until_keyboard_interrupt(asap: bool) -> None:
    rounds: list[list[str | None]] = []
    async with MiniAgents(start_everything_asap_by_default=asap):
        loop = agent_loop.fork(
            agents=[counting_agent(rounds, 4, KeyboardInterrupt()), AWAIT, prefix_agent("seen ")],
            raise_keyboard_interrupt=False,
        )
        assert await loop.inquire("start") == ()
    assert rounds == [["start"], ["seen round 1"], ["seen round 2"], ["seen round 3"]]


async def test_loop_raises_keyboard_interrupt_by_default() -> None:
    rounds: list[list[str | None]] = []
    async with MiniAgents():
        loop = agent_loop.fork(agents=[counting_agent(rounds, 2, KeyboardInterrupt()), AWAIT])
        with pytest.raises(KeyboardInterrupt):
            await loop.inquire()
    assert rounds == [[], ["round 1"]]


async def test_loop_ends_with_any_other_error_even_when_keyboard_interrupts_are_swallowed() -> None:
    rounds: list[list[str | None]] = []
    async with MiniAgents():
        loop = agent_loop.fork(
            agents=[counting_agent(rounds, 3, RuntimeError("boom")), AWAIT], raise_keyboard_interrupt=False
        )
        with pytest.raises(RuntimeError, match="boom"):
            await loop.inquire()
    assert len(rounds) == 3


@pytest.mark.parametrize(
    ("agents_factory", "message"),
    [
        (lambda agent: [agent], "at least one AWAIT"),
        (lambda agent: [agent, CLEAR], "at least one AWAIT"),
        (lambda agent: [AWAIT, None, CLEAR], "at least one MiniAgent"),
        (lambda agent: [agent, AWAIT, "oops"], "agent_loop accepts MiniAgents, AWAIT, CLEAR and None"),
    ],
    ids=["no-await", "only-clear", "no-agent", "bad-step"],
)
async def test_loop_rejects_bad_steps_before_inquiring_anything(agents_factory: Any, message: str) -> None:
    inputs: list[list[str | None]] = []
    async with MiniAgents():
        loop = agent_loop.fork(agents=agents_factory(recording_agent(inputs, reply="r")))
        with pytest.raises(ValueError, match=message):
            await loop.inquire()
    assert inputs == []


# prompt_agent


async def test_prompt_agent_wraps_the_input_and_passes_kwargs() -> None:
    @miniagent
    async def target(ctx: InteractionContext, suffix: str = "") -> None:
        ctx.reply([*texts(await ctx.message_promises), suffix])

    async with MiniAgents():
        wrapped = prompt_agent.fork(target_agent=target, prompt_prefix=["p1", "p2"], prompt_suffix="s1")
        assert texts(await wrapped.inquire(["m1", "m2"], suffix="!")) == ["p1", "p2", "m1", "m2", "s1", "!"]
        assert texts(await prompt_agent.fork(target_agent=target).inquire("m")) == ["m", ""]


# user_agent


def scripted_prompt_agent(answers: list[BaseException | str]) -> MiniAgent:
    """Like console_prompt_agent without a console: passes its input on, then replies the next answer."""

    @miniagent
    async def scripted_prompt(ctx: InteractionContext) -> None:
        ctx.reply(ctx.message_promises)
        await ctx.message_promises
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        ctx.reply(UserMessage(answer))

    return scripted_prompt


async def test_user_agent_chains_echo_prompt_and_history() -> None:
    echoed: list[list[str | None]] = []
    history: list[Message] = []

    @miniagent
    async def echo(ctx: InteractionContext) -> None:
        ctx.reply(ctx.message_promises)
        echoed.append(texts(await ctx.message_promises))

    async with MiniAgents():
        user = user_agent.fork(
            echo_agent=echo,
            prompt_agent=scripted_prompt_agent(["first", "second"]),
            history_agent=in_memory_history_agent.fork(message_list=history),
        )
        assert texts(await user.inquire()) == ["first"]
        assert texts(await user.inquire("answer 1")) == ["first", "answer 1", "second"]
    assert texts(history) == ["first", "answer 1", "second"]
    assert echoed == [[], ["answer 1"]]
    assert [getattr(message, "role", None) for message in history] == ["user", None, "user"]


async def test_user_agent_accepts_a_chat_history_object() -> None:
    chat_history = InMemoryChatHistory()
    async with MiniAgents():
        user = user_agent.fork(prompt_agent=scripted_prompt_agent(["hello"]), chat_history=chat_history)
        assert texts(await user.inquire("greeting")) == ["greeting", "hello"]
        assert texts(await chat_history.aload_chat_history()) == ["greeting", "hello"]


async def test_user_agent_without_any_steps_passes_the_input_through() -> None:
    async with MiniAgents():
        assert texts(await user_agent.fork(history_agent=None).inquire(["a", "b"])) == ["a", "b"]


def test_console_user_agent_is_user_agent_with_the_console_agents() -> None:
    assert console_user_agent.func is user_agent.func
    assert console_user_agent._partial_kwargs["echo_agent"] is console_echo_agent
    assert console_user_agent._partial_kwargs["prompt_agent"] is console_prompt_agent
    history_default = inspect.signature(user_agent.func).parameters["history_agent"].default
    assert history_default is _user_agent._default_history_agent
    assert history_default.func is in_memory_history_agent.func


# dialog_loop


def echoing_llm_agent(calls: list[list[tuple[str | None, str | None]]]) -> MiniAgent:
    """A fake LLM: records (role, text) of its input, streams back ``reply to <last text>`` in two tokens."""

    @miniagent
    async def fake_llm(ctx: InteractionContext) -> None:
        messages = await ctx.message_promises
        calls.append([(getattr(message, "role", None), message.text) for message in messages])

        async def tokens(_: dict[str, Any]) -> Any:
            yield "reply to "
            yield str(messages[-1].text)

        ctx.reply(AssistantMessage.promise(message_token_streamer=tokens, model="fake-1", agent_alias="FAKE_LLM"))

    return fake_llm


async def test_dialog_gives_the_prompt_to_the_assistant_on_every_turn_but_not_to_the_history(asap: bool) -> None:
    calls: list[list[tuple[str | None, str | None]]] = []
    history: list[Message] = []
    async with MiniAgents(start_everything_asap_by_default=asap):
        dialog = dialog_loop.fork(
            assistant_agent=echoing_llm_agent(calls),
            user_agent=user_agent.fork(prompt_agent=scripted_prompt_agent(["hi", "bye", KeyboardInterrupt()])),
            history_agent=in_memory_history_agent.fork(message_list=history),
        )
        assert await dialog.inquire(SystemMessage("be nice")) == ()
    assert calls == [
        [("system", "be nice"), ("user", "hi")],
        [("system", "be nice"), ("user", "hi"), ("assistant", "reply to hi"), ("user", "bye")],
    ]
    assert [(getattr(m, "role", None), m.text) for m in history] == [
        ("user", "hi"),
        ("assistant", "reply to hi"),
        ("user", "bye"),
        ("assistant", "reply to bye"),
    ]


async def test_dialog_prompt_at_the_end() -> None:
    calls: list[list[tuple[str | None, str | None]]] = []
    async with MiniAgents():
        await dialog_loop.fork(
            assistant_agent=echoing_llm_agent(calls),
            user_agent=user_agent.fork(
                prompt_agent=scripted_prompt_agent(["hi", KeyboardInterrupt()]),
                history_agent=in_memory_history_agent.fork(message_list=[]),
            ),
            prompt_at_the_end=True,
        ).inquire(["answer briefly", SystemMessage("be nice")])
    assert calls == [[("user", "hi"), (None, "answer briefly"), ("system", "be nice")]]


async def test_dialog_without_prompt_messages_inquires_the_assistant_directly() -> None:
    calls: list[list[tuple[str | None, str | None]]] = []
    async with MiniAgents():
        await dialog_loop.fork(
            assistant_agent=echoing_llm_agent(calls),
            user_agent=user_agent.fork(
                prompt_agent=scripted_prompt_agent(["hi", KeyboardInterrupt()]),
                history_agent=in_memory_history_agent.fork(message_list=[]),
            ),
        ).inquire()
    assert calls == [[("user", "hi")]]


async def test_dialog_propagates_errors_other_than_keyboard_interrupt() -> None:
    async with MiniAgents():
        dialog = dialog_loop.fork(
            assistant_agent=echoing_llm_agent([]),
            user_agent=user_agent.fork(prompt_agent=scripted_prompt_agent([EOFError()]), history_agent=None),
        )
        with pytest.raises(EOFError):
            await dialog.inquire()


@pytest.mark.parametrize("field", ["assistant_agent", "user_agent"])
async def test_dialog_rejects_a_non_agent(field: str) -> None:
    kwargs: dict[str, Any] = {"assistant_agent": echoing_llm_agent([]), field: "not an agent"}
    async with MiniAgents():
        with pytest.raises(ValueError, match=f"dialog_loop needs a MiniAgent as {field}"):
            await dialog_loop.fork(**kwargs).inquire()


def test_aggregator_agents_is_a_compat_alias() -> None:
    for name in agent_aggregators.__all__:
        assert getattr(aggregator_agents_compat, name) is getattr(agent_aggregators, name)
    assert aggregator_agents_compat.__all__ == agent_aggregators.__all__
