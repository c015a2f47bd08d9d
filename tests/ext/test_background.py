"""`start_detached`: observers' background work, outside every agent call and as the framework's own work."""

from __future__ import annotations

import asyncio
import logging

import pytest

from miniagents import InteractionContext, MessageSequencePromise, MiniAgents, current_agent_call, miniagent
from miniagents.ext._background import start_detached


async def test_an_error_only_detached_work_awaited_is_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        raise ValueError("only an observer saw this")

    seen: list[str] = []

    async def watch(replies: MessageSequencePromise) -> None:  # as the view publisher does with what it shows
        try:
            await replies
        except ValueError as error:
            seen.append(str(error))

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            start_detached(watch(failing.inquire()))
    assert seen == ["only an observer saw this"]
    logged = [record.getMessage() for record in caplog.records if record.exc_info]
    assert len(logged) == 1 and "FAILING" in logged[0] and "never retrieved" in logged[0]


async def test_detached_work_is_not_cancelled_with_the_call_that_started_it() -> None:
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.05)
        done.append("done")

    @miniagent
    async def starter(ctx: InteractionContext) -> None:
        start_detached(work())
        await asyncio.sleep(60)

    async with asyncio.timeout(10), MiniAgents():
        replies = starter.inquire()
        await asyncio.sleep(0.01)
        replies.cancel()
    assert done == ["done"]


async def test_detached_work_runs_in_the_context_and_outside_every_call() -> None:
    seen: list[object] = []

    async def work() -> None:
        seen.extend([MiniAgents.get_current(), current_agent_call()])

    @miniagent
    async def starter(ctx: InteractionContext) -> None:
        assert current_agent_call() is not None
        start_detached(work())

    async with MiniAgents() as context:
        await starter.inquire()
    assert seen == [context, None]
