"""The compatibility loops of miniagents.utils: achain_loop and adialog_loop."""

from __future__ import annotations

from typing import Any

import pytest

from miniagents import InteractionContext, Message, MiniAgents, miniagent
from miniagents.promising.sentinels import AWAIT, CLEAR
from miniagents.utils import achain_loop, adialog_loop


class Stop(Exception):
    pass


@miniagent
async def counter_agent(ctx: InteractionContext) -> None:
    texts = [message.text for message in await ctx.message_promises]
    ctx.reply(f"{len(texts)}:{'|'.join(texts)}")


async def test_achain_loop_feeds_each_round_into_the_next_with_callables_and_clear() -> None:
    rounds: list[Any] = []

    def record(messages: tuple[Message, ...] | None) -> Any:
        rounds.append(None if messages is None else [m.text for m in messages])
        if len(rounds) == 3:
            raise Stop
        return messages

    async with MiniAgents():
        with pytest.raises(Stop):
            await achain_loop([counter_agent, AWAIT, record, None], initial_input="start")
        assert rounds == [["1:start"], ["1:1:start"], ["1:1:1:start"]]
        rounds.clear()
        with pytest.raises(Stop):
            await achain_loop([CLEAR, counter_agent, AWAIT, record])
        assert rounds == [["0:"], ["0:"], ["0:"]]


async def test_achain_loop_rejects_bad_steps_before_running() -> None:
    runs: list[str] = []

    @miniagent
    async def never(ctx: InteractionContext) -> None:
        runs.append("ran")

    async with MiniAgents():
        with pytest.raises(ValueError, match="at least one AWAIT"):
            await achain_loop([never])
        with pytest.raises(ValueError, match=r"achain_loop accepts .* got 'oops'"):
            await achain_loop([never, AWAIT, "oops"])
    assert runs == []


async def test_adialog_loop_alternates_user_and_assistant() -> None:
    turns: list[str] = []

    @miniagent
    async def user(ctx: InteractionContext) -> None:
        async for message_promise in ctx.message_promises:
            turns.append(f"assistant: {await message_promise}")
        if len(turns) >= 3:
            raise Stop
        ctx.reply(f"question {len(turns)}")

    @miniagent
    async def assistant(ctx: InteractionContext) -> None:
        ctx.reply(f"answer to {(await ctx.message_promises.as_single_promise()).text}")

    async with MiniAgents():
        with pytest.raises(Stop):
            await adialog_loop(user, assistant)
    assert turns == [
        "assistant: answer to question 0",
        "assistant: answer to question 1",
        "assistant: answer to question 2",
    ]
