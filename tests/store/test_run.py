"""`MiniAgents(store=...)` records real runs: nested calls, streamed replies, failures, cancellations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from miniagents import InteractionContext, Message, MiniAgents, current_agent_call, miniagent
from miniagents.ext.llm import AssistantMessage
from miniagents.store import RecordingStore, open_store


@miniagent
async def writer_agent(ctx: InteractionContext, style: str) -> None:
    topic = " ".join(message.text for message in await ctx.message_promises)

    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        for word in (f"A {style}", " text", f" about {topic}."):
            await asyncio.sleep(0)
            yield word

    ctx.reply(AssistantMessage.promise(message_token_streamer=tokens, model="fake-1"))


@miniagent
async def failing_agent(ctx: InteractionContext) -> None:
    await ctx.message_promises
    raise ValueError("no luck")


@miniagent
async def orchestrator_agent(ctx: InteractionContext, ids: list[str]) -> None:
    call = current_agent_call()
    assert call is not None
    ids.append(call.call_id)
    ctx.reply(writer_agent.inquire(ctx.message_promises, style="short"))
    try:
        await failing_agent.inquire("anything")
    except ValueError:
        ctx.reply(Message("the failing agent failed"))


async def test_a_run_is_recorded_and_loads_back_as_a_call_tree(store: RecordingStore) -> None:
    ids: list[str] = []
    async with MiniAgents(store=store):
        replies = await orchestrator_agent.fork(ids=ids).inquire("cats")
    assert [m.text for m in replies] == ["A short text about cats.", "the failing agent failed"]
    tree = await store.aload_call_tree(ids[0])
    assert (tree.agent_alias, tree.status, tree.parent_call_id) == ("ORCHESTRATOR_AGENT", "finished", None)
    assert tree.inputs == (Message("cats"),)
    assert tree.replies == replies
    assert type(tree.replies[0]) is AssistantMessage
    writer, failing = tree.children
    assert (writer.agent_alias, writer.status, writer.kwargs is not None and writer.kwargs.style) == (
        "WRITER_AGENT",
        "finished",
        "short",
    )
    assert writer.inputs == (Message("cats"),) and writer.replies == (replies[0],)
    assert (failing.agent_alias, failing.status, failing.error) == ("FAILING_AGENT", "failed", "ValueError: no luck")
    assert failing.inputs == (Message("anything"),) and failing.replies == ()
    assert failing.ended_at is not None and failing.ended_at >= failing.started_at


@miniagent
async def slow_agent(ctx: InteractionContext, started: asyncio.Event) -> None:
    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "so far"
        started.set()
        await asyncio.sleep(60)
        yield " never"

    ctx.reply(Message.promise(message_token_streamer=tokens, role="assistant"))


async def test_a_cancelled_call_is_recorded_with_its_partial_reply(store: RecordingStore) -> None:
    started = asyncio.Event()
    async with MiniAgents(store=store):
        call = slow_agent.fork(started=started).initiate_inquiry()
        call_id = call.call_id
        call.finish()
        await started.wait()
        call.cancel()
        with pytest.raises(BaseException):  # noqa: B017 - whichever cancellation error the core raises
            await call.reply_sequence()
    tree = await store.aload_call_tree(call_id)
    assert tree.status == "cancelled"
    [reply] = tree.replies
    assert (reply.text, reply.partial, reply.partial_status, reply.role) == ("so far", True, "failed", "assistant")


async def test_open_store_and_a_bad_location_fail_early(tmp_path: Any) -> None:
    store = open_store(tmp_path / "runs.db")
    async with MiniAgents(store=store):
        await writer_agent.inquire("dogs", style="long")
    with pytest.raises(ValueError, match="unknown store URL scheme"):
        open_store("mysql://localhost/db")
    with pytest.raises(ValueError, match="file path or a postgresql"):
        open_store("")
    (tmp_path / "a_directory.db").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        async with MiniAgents(store=open_store(tmp_path / "a_directory.db")):
            pass


async def test_the_recorder_keeps_writing_when_the_call_it_started_in_is_cancelled(store: RecordingStore) -> None:
    recorder = store.observer()  # (its methods run in the observed call's own task, see RunObserver.isolated)
    first = Message("recorded inside an agent")
    later = Message("recorded after that agent was cancelled")

    @miniagent
    async def recording_agent(ctx: InteractionContext) -> None:
        recorder.record_message(first)  # the first record starts the writer task, here
        ctx.reply("recorded")
        await asyncio.sleep(60)

    async with asyncio.timeout(10), MiniAgents():
        replies = recording_agent.inquire()
        async for message_promise in replies:
            await message_promise
            break
        replies.cancel()
        await asyncio.sleep(0)
        recorder.record_message(later)
        await recorder.aflush()
    rows = await store.aread_messages([first.hash_key, later.hash_key])
    assert set(rows) == {first.hash_key, later.hash_key}
