from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from miniagents import (
    AppenderClosedError,
    InteractionContext,
    Message,
    MiniAgent,
    MiniAgents,
    NoActiveContextError,
    RunObserver,
    miniagent,
)
from miniagents.promising.sentinels import DEFAULT


@miniagent
async def echo_agent(ctx: InteractionContext) -> None:
    async for message_promise in ctx.message_promises:
        ctx.reply(f"You said: {await message_promise}")


def make_sleepy_agents(log: list[str]) -> tuple[MiniAgent, MiniAgent]:
    @miniagent
    async def agent1(ctx: InteractionContext) -> None:
        log.append("agent1 start")
        await asyncio.sleep(0.05)
        log.append("agent1 end")
        ctx.reply("one")

    @miniagent
    async def agent2(ctx: InteractionContext) -> None:
        log.append("agent2 start")
        await asyncio.sleep(0.05)
        log.append("agent2 end")
        ctx.reply("two")

    return agent1, agent2


INTERLEAVED = ["agent1 start", "agent2 start", "agent1 end", "agent2 end"]
SEQUENTIAL = ["agent1 start", "agent1 end", "agent2 start", "agent2 end"]


async def test_parallel_interleaving_at_top_level(start_asap: object) -> None:
    log: list[str] = []
    agent1, agent2 = make_sleepy_agents(log)
    async with MiniAgents():
        replies1 = agent1.inquire(start_asap=start_asap)
        replies2 = agent2.inquire(start_asap=start_asap)
        assert [m.text for m in await replies1] == ["one"]
        assert [m.text for m in await replies2] == ["two"]
    assert log == (SEQUENTIAL if start_asap is False else INTERLEAVED)


async def test_parallel_interleaving_inside_an_aggregator(start_asap: object) -> None:
    log: list[str] = []
    agent1, agent2 = make_sleepy_agents(log)

    @miniagent
    async def aggregator(ctx: InteractionContext) -> None:
        ctx.reply([agent1.inquire(start_asap=start_asap), agent2.inquire(start_asap=start_asap)])

    async with MiniAgents():
        assert [m.text for m in await aggregator.inquire()] == ["one", "two"]
    assert log == (SEQUENTIAL if start_asap is False else INTERLEAVED)


async def test_global_lazy_context_runs_agents_one_after_the_other() -> None:
    log: list[str] = []
    agent1, agent2 = make_sleepy_agents(log)
    async with MiniAgents(start_everything_asap_by_default=False):
        replies = [agent1.inquire(start_asap=DEFAULT), agent2.inquire()]
        for reply in replies:
            await reply
    assert log == SEQUENTIAL


async def test_inquire_returns_immediately_and_runs_once(start_asap: object) -> None:
    runs: list[str] = []

    @miniagent
    async def counting(ctx: InteractionContext) -> None:
        runs.append("run")
        ctx.reply("r")

    async with MiniAgents():
        replies = counting.inquire(start_asap=start_asap)
        assert runs == []
        await replies
        await replies
        assert [m.text async for m in _texts(replies)] == ["r"]
        assert runs == ["run"]


async def _texts(replies: object):  # type: ignore[no-untyped-def]
    async for message_promise in replies:  # type: ignore[attr-defined]
        yield await message_promise


async def test_lazy_inquiry_nobody_consumes_never_runs() -> None:
    runs: list[str] = []

    @miniagent
    async def lazy(ctx: InteractionContext) -> None:
        runs.append("run")

    async with MiniAgents():
        lazy.inquire(start_asap=False)
    assert runs == []


async def test_fire_and_forget_runs_before_the_context_ends() -> None:
    done: list[str] = []

    @miniagent
    async def background(ctx: InteractionContext) -> None:
        await asyncio.sleep(0.01)
        done.append((await ctx.message_promises.as_single_promise()).text or "")

    async with MiniAgents():
        background.inquire(["a", "b"])
    assert done == ["a\n\nb"]


async def test_initiate_inquiry_and_auto_finish(start_asap: object) -> None:
    async with MiniAgents():
        call = echo_agent.initiate_inquiry(start_asap=start_asap)
        assert call.send_message("Hello").send_message("World") is call
        assert [m.text for m in await call.reply_sequence()] == ["You said: Hello", "You said: World"]
        with pytest.raises(AppenderClosedError):
            call.send_message("late")
        assert echo_agent.start_inquiry.__func__ is MiniAgent.initiate_inquiry  # type: ignore[attr-defined]

    # an AgentCall that is never finished does not hang the context (W2)
    async with MiniAgents():
        forgotten = echo_agent.start_inquiry(start_asap=True)
        forgotten.send_message("x")

    @miniagent
    async def forgetful(ctx: InteractionContext) -> None:
        inner = echo_agent.initiate_inquiry()
        inner.send_message("inner")
        ctx.reply(inner._reply_promise)  # replies with the unfinished call's replies

    async with MiniAgents():
        assert [m.text for m in await asyncio.wait_for(forgetful.inquire(), 5)] == ["You said: inner"]


async def test_agent_error_after_earlier_replies(start_asap: object, caplog: pytest.LogCaptureFixture) -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        ctx.reply("before")
        raise ValueError("agent failure")

    @miniagent
    async def aggregator(ctx: InteractionContext) -> None:
        ctx.reply(["first", failing.inquire(start_asap=start_asap), "after"])

    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents():
            replies = aggregator.inquire(start_asap=start_asap)
            received = []
            with pytest.raises(ValueError, match="agent failure") as first:
                async for message_promise in replies:
                    received.append((await message_promise).text)
            assert received == ["first", "before"]
            with pytest.raises(ValueError) as second:
                await replies
            assert first.value is second.value
    logged = [record for record in caplog.records if record.exc_info and isinstance(record.exc_info[1], ValueError)]
    assert logged == []  # the consumer retrieved it: it is not logged (W1)


async def test_errors_are_not_raised_in_the_caller_until_consumed(caplog: pytest.LogCaptureFixture) -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        raise RuntimeError("only in the log")

    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents():
            failing.inquire()
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == ["only in the log"]


async def test_finish_early_then_late_reply_and_late_error(caplog: pytest.LogCaptureFixture) -> None:
    late_reply_errors: list[BaseException] = []
    finished = asyncio.Event()

    @miniagent
    async def early(ctx: InteractionContext) -> None:
        ctx.reply("kept")
        ctx.finish_early()
        try:
            ctx.reply("too late")
        except AppenderClosedError as error:
            late_reply_errors.append(error)
        await finished.wait()
        raise KeyError("after finish_early")

    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents():
            replies = early.inquire()
            assert [m.text for m in await replies] == ["kept"]
            finished.set()
    assert len(late_reply_errors) == 1
    assert any(isinstance(r.exc_info[1], KeyError) for r in caplog.records if r.exc_info)


async def test_wait_for_and_afinish_early() -> None:
    order: list[str] = []

    async def side_job(name: str) -> None:
        await asyncio.sleep(0.01)
        order.append(name)

    async def failing_job() -> None:
        raise OSError("ignored but logged")

    @miniagent
    async def waiting(ctx: InteractionContext) -> None:
        ctx.wait_for(side_job("side"))
        ctx.wait_for(failing_job())
        ctx.reply("reply")

    @miniagent
    async def finishing(ctx: InteractionContext) -> None:
        ctx.wait_for(side_job("before close"))
        await ctx.afinish_early()
        order.append("closed")

    async with MiniAgents(log_level_for_errors=logging.DEBUG):
        replies = waiting.inquire()
        await replies
        assert order == ["side"]  # awaited before the reply sequence closed
        await finishing.inquire()
        assert order == ["side", "before close", "closed"]


async def test_function_kwargs_are_validated_copied_and_layered() -> None:
    seen: list[dict[str, object]] = []

    @miniagent(alias="KW")
    async def kw_agent(ctx: InteractionContext, **kwargs: object) -> None:
        seen.append(kwargs)

    shared_list: list[int] = []
    forked = kw_agent.fork(shared=shared_list, a=1).fork(a=2, b=3)
    original = {"nested": [1]}
    async with MiniAgents():
        await forked.inquire(b=4, d=original)
        with pytest.raises(ValidationError, match="set"):
            forked.inquire(bad={1, 2})
    assert seen[0]["shared"] is shared_list  # fork kwargs are not copied
    assert seen[0]["a"] == 2 and seen[0]["b"] == 4
    assert seen[0]["d"] == original and seen[0]["d"] is not original  # a deep copy, still a dict


def test_decorator_forms_alias_and_description() -> None:
    async def plain(ctx: InteractionContext) -> None:
        """Talks to    {AGENT_ALIAS}
        with {json: 1} braces."""

    bare = miniagent(plain)
    assert bare.alias == "PLAIN" == bare.__name__
    assert bare.description == "Talks to PLAIN with {json: 1} braces." == bare.__doc__
    configured = miniagent(alias="x", uppercase_func_name=False, normalize_spaces_in_docstring=False)(plain)
    assert configured.alias == "x"
    assert "\n" in (configured.description or "")
    lower = miniagent(uppercase_func_name=False)(plain)
    assert lower.alias == "plain"

    async def undocumented(ctx: InteractionContext) -> None:
        pass

    twice = miniagent(undocumented).fork().fork(alias="other")
    assert twice.description is None and twice.alias == "other"
    assert not callable(bare)


def test_non_async_agent_functions_are_rejected() -> None:
    def sync_agent(ctx: InteractionContext) -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        miniagent(sync_agent)  # type: ignore[arg-type]


async def test_reply_none_fails_at_the_call() -> None:
    errors: list[BaseException] = []

    @miniagent
    async def bad(ctx: InteractionContext) -> None:
        try:
            ctx.reply(None)  # type: ignore[arg-type]
        except TypeError as error:
            errors.append(error)
        ctx.reply([Message(text="ok")])

    async with MiniAgents():
        assert [m.text for m in await bad.inquire()] == ["ok"]
    assert "Unexpected message type" in str(errors[0])


def test_inquire_without_context() -> None:
    with pytest.raises(NoActiveContextError, match="async with MiniAgents"):
        echo_agent.inquire("x")


async def test_keyboard_interrupt_in_an_agent_reaches_the_consumer(start_asap: object) -> None:
    @miniagent
    async def interrupted(ctx: InteractionContext) -> None:
        ctx.reply("before")
        raise KeyboardInterrupt

    async with MiniAgents():
        replies = interrupted.inquire(start_asap=start_asap)
        received = []
        with pytest.raises(KeyboardInterrupt):
            async with asyncio.timeout(5):  # a hang would fail here, not stall the run
                async for message_promise in replies:
                    received.append((await message_promise).text)
        assert received == ["before"]
        with pytest.raises(KeyboardInterrupt):
            async with asyncio.timeout(5):
                await replies


async def test_agent_error_never_hangs_afinalize() -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        await asyncio.sleep(0)
        raise SystemError("boom")

    context = MiniAgents(log_level_for_errors=logging.DEBUG)
    async with asyncio.timeout(5):
        async with context:
            failing.inquire()
            failing.inquire(start_asap=False)
    assert not context.child_tasks


async def test_transparent_agent_and_messages_alias() -> None:
    @miniagent
    async def transparent(ctx: InteractionContext) -> None:
        assert ctx.messages is ctx.message_promises
        ctx.reply(ctx.message_promises)

    async with MiniAgents():
        assert [m.text for m in await transparent.inquire(echo_agent.inquire(["a"]))] == ["You said: a"]


async def test_call_ids_are_distinct_time_ordered_version_7_uuids() -> None:
    @miniagent
    async def quiet_agent(ctx: InteractionContext) -> None:
        pass

    before_ms = time.time_ns() // 1_000_000
    async with MiniAgents():
        calls = [quiet_agent.initiate_inquiry() for _ in range(2000)]
        ids = [call.call_id for call in calls]
        for call in calls:
            call.finish()
    after_ms = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert ids[0] == calls[0].call_id  # made once
    for call_id in ids:
        parsed = uuid.UUID(call_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (call_id, 7, uuid.RFC_4122)
        assert before_ms <= parsed.int >> 80 <= after_ms  # its first 48 bits: the Unix time in milliseconds
    timestamps = [uuid.UUID(call_id).int >> 80 for call_id in ids]
    assert timestamps == sorted(timestamps)


async def test_a_failing_observer_and_persist_handler_are_reported_with_the_agent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingObserver(RunObserver):
        def on_call_ended(self, call: Any) -> None:
            raise RuntimeError("observer boom")

    async def failing_handler(_: Any, message: Message) -> None:
        raise RuntimeError("handler boom")

    @miniagent
    async def leaf_agent(ctx: InteractionContext) -> None:
        ctx.reply("leaf")

    @miniagent
    async def root_agent(ctx: InteractionContext) -> None:
        ctx.reply(await leaf_agent.inquire())

    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents(observers=[FailingObserver()], on_persist_message=failing_handler):
            await root_agent.inquire()
    observer_lines = [r.getMessage() for r in caplog.records if "observer boom" in str(r.exc_info)]
    assert len(observer_lines) == 1  # (once per observer and method)
    assert "failed in on_call_ended for the agent LEAF_AGENT (called by ROOT_AGENT)" in observer_lines[0]
    handler_lines = [r.getMessage() for r in caplog.records if "handler boom" in str(r.exc_info)]
    assert (
        f"the on_persist_message handler {failing_handler.__qualname__!r} failed for Message (hash key "
        f"{Message('leaf').hash_key})"
    ) in handler_lines
    assert any(" of the agent LEAF_AGENT (hash key " in line for line in handler_lines)  # (its interaction nodes)
