"""`MiniAgents(store=...)` records real runs: nested calls, streamed replies, failures, cancellations."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from miniagents import InteractionContext, Message, MiniAgents, RunObserver, current_agent_call, miniagent
from miniagents.ext.llm import AssistantMessage
from miniagents.store import (
    MessageStore,
    RecordingStore,
    SQLiteMessageStore,
    StoreRecorder,
    open_store,
    store_history_agent,
)
from miniagents.store import _recorder as recorder_module


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
    with pytest.raises(ValueError, match="is not a URL: write it as postgresql://"):
        open_store("postgresql:/localhost/db")  # (a mistake, not a SQLite file of that name)
    (tmp_path / "a_directory.db").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        async with MiniAgents(store=open_store(tmp_path / "a_directory.db")):
            pass


@pytest.mark.parametrize("read_only", ["file", "directory", "directory of a new file"])
async def test_a_sqlite_location_that_cannot_be_written_fails_early(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, read_only: str
) -> None:
    path = tmp_path / "runs.db"
    if read_only != "directory of a new file":
        async with open_store(path) as store:
            await store.aopen()  # the tables exist: SQLite itself then opens the file read-only without a word
    denied = path if read_only == "file" else tmp_path
    real_access = os.access
    # (as root, permission bits deny nothing: the operating system's answer is what is replaced)
    monkeypatch.setattr(os, "access", lambda p, mode: real_access(p, mode) and not (p == denied and mode == os.W_OK))
    expected = {"file": "database file is not writable", "directory": "WAL", "directory of a new file": "to create"}
    with pytest.raises(PermissionError, match=expected[read_only]):  # (before aiosqlite starts a thread)
        async with MiniAgents(store=open_store(path)):
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


@miniagent
async def held_agent(ctx: InteractionContext, ids: list[str], started: asyncio.Event, release: asyncio.Event) -> None:
    ids.append(ctx.agent_call.call_id)

    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "held"
        started.set()
        await release.wait()
        yield " and released"

    ctx.reply(Message.promise(message_token_streamer=tokens, role="assistant"))


@miniagent
async def echo_agent(ctx: InteractionContext, ids: list[str]) -> None:
    ids.append(ctx.agent_call.call_id)
    ctx.reply(f"echo: {await ctx.message_promises.as_single_promise()}")


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_run_through_a_store_logs_no_error(store: RecordingStore, caplog: pytest.LogCaptureFixture) -> None:
    # (PostgreSQL: the connection that entering the context opened was used by the writer, on another event loop,
    # and its first batch failed and was retried)
    ids: list[str] = []
    async with MiniAgents(store=store):
        for i in range(3):
            await echo_agent.fork(ids=ids).inquire(f"m{i}")
    assert [(await store.aload_call_tree(call_id)).status for call_id in ids] == ["finished"] * 3
    assert _errors(caplog) == []


async def test_contexts_sharing_a_store_each_write_theirs_and_leave_without_waiting_for_the_other(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    held_ids: list[str] = []
    echo_ids: list[str] = []

    async def hold() -> tuple[Message, ...]:
        async with MiniAgents(store=store):
            return await held_agent.fork(ids=held_ids, started=started, release=release).inquire()

    async def echo(n: int) -> None:
        async with MiniAgents(store=store):
            for i in range(n):
                await echo_agent.fork(ids=echo_ids).inquire(f"m{i}")

    async with asyncio.timeout(30):
        holding = asyncio.create_task(hold())
        await started.wait()
        await asyncio.gather(echo(20), echo(20))  # left while the other context still streams
        assert not holding.done()
        # what the two echo contexts recorded was written by the time they were left
        trees = [await store.aload_call_tree(call_id) for call_id in echo_ids]
        assert len(trees) == 40 and {tree.status for tree in trees} == {"finished"}
        assert sorted(tree.replies[0].text for tree in trees) == sorted([f"echo: m{i}" for i in range(20)] * 2)
        held = await store.aload_call_tree(held_ids[0])
        assert held.status == "running"
        release.set()
        assert [m.text for m in await holding] == ["held and released"]
    held = await store.aload_call_tree(held_ids[0])
    assert (held.status, held.replies[0].text) == ("finished", "held and released")  # complete, not partial
    assert _errors(caplog) == []


class _SlowSQLiteStore(SQLiteMessageStore):
    """Every write with rows takes ``delay`` seconds, and waits for ``gate`` (until set: a call that hangs)."""

    def __init__(self, path: Any, gate: threading.Event | None = None, delay: float = 0.0) -> None:
        super().__init__(path)
        self.gate, self.delay = gate, delay

    async def awrite(self, batch: Any) -> None:
        if len(batch):
            await asyncio.sleep(self.delay)
            if self.gate is not None:  # (a threading.Event: the writer's thread runs a loop of its own)
                await asyncio.to_thread(self.gate.wait)
        await super().awrite(batch)


async def test_an_interrupted_context_leaves_in_its_grace_and_the_writer_finishes_later(tmp_path: Any) -> None:
    store = _SlowSQLiteStore(tmp_path / "slow.db", delay=2.0)
    ids: list[str] = []

    async def run() -> None:
        async with MiniAgents(store=store):
            for i in range(3):
                await echo_agent.fork(ids=ids).inquire(f"m{i}")
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started < 1.9  # (the grace is 1 s; a write takes 2 s)
    async with asyncio.timeout(20):
        await store.aflush()  # the writer went on in the background
    assert [(await store.aload_call_tree(call_id)).status for call_id in ids] == ["finished"] * 3


async def test_leaving_a_context_gives_up_on_a_writer_that_makes_no_progress(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "_STALL_SECONDS", 0.2)
    gate = threading.Event()
    store = _SlowSQLiteStore(tmp_path / "stuck.db", gate=gate)
    try:
        async with asyncio.timeout(10):
            async with MiniAgents(store=store):
                await echo_agent.fork(ids=[]).inquire("m")
            assert "wrote nothing for 0.2 s" in caplog.text and store.observer().writing
    finally:
        gate.set()  # the database answers at last: everything is written
    async with asyncio.timeout(10):
        await store.aflush()
    assert not store.observer().writing and store.observer().failed_rows == 0


async def test_leaving_a_context_waits_for_what_an_agent_recorded_into_a_store_directly(tmp_path: Any) -> None:
    store = _SlowSQLiteStore(tmp_path / "history.db", delay=0.3)  # (each write takes 0.3 s)
    async with MiniAgents():  # the store observes nothing here: the history agent records into it itself
        history = await store_history_agent.fork(store=store, history_id="chat").inquire(
            [Message("q", role="user"), Message("a", role="assistant")]
        )
    assert [m.text for m in history] == ["q", "a"]
    assert not store.observer().writing  # written and closed by the time the context was left
    assert [m.text for m in await store.aload_history("chat")] == ["q", "a"]


@miniagent
async def plain_echo_agent(ctx: InteractionContext) -> None:
    ctx.reply(await ctx.message_promises)


class Unserializable(Message):
    def serialize(self) -> dict[str, Any]:
        raise RuntimeError("cannot serialize this one")


@miniagent
async def unserializable_agent(ctx: InteractionContext) -> None:
    ctx.reply(Unserializable(text="x"))


async def test_a_message_that_cannot_be_serialized_is_left_out_alone(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    async with MiniAgents(store=store):
        good, bad = plain_echo_agent.initiate_inquiry(), unserializable_agent.initiate_inquiry()
        good.send_message("hi")
        await good.reply_sequence(), await bad.reply_sequence()
    async with MiniAgents(store=store):  # the writer still writes
        later = plain_echo_agent.initiate_inquiry()
        later.send_message("again")
        await later.reply_sequence()
    assert [m.text for m in (await store.aload_call_tree(good.call_id)).replies] == ["hi"]
    assert (await store.aload_call_tree(bad.call_id)).status == "finished"  # its call, without the reply
    assert (await store.aload_call_tree(bad.call_id)).replies == ()
    assert [m.text for m in (await store.aload_call_tree(later.call_id)).replies] == ["again"]
    assert store.observer().failed_rows == 1
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"cannot record reply message 0 of {bad.call_id} (Unserializable) in {store!r}, left out: "
        "RuntimeError: cannot serialize this one"
    ]


async def test_messages_in_nested_lists_load_back_as_messages(store: RecordingStore) -> None:
    table = Message(text="table", rows=[[Message(text="cell")], []])
    async with MiniAgents(store=store):
        store.observer().record_message(table)
    assert table.hash_key != Message(text="table", rows=[[Message(text="cell").hash_key], []]).hash_key
    loaded = await store.aload_message(table.hash_key)
    assert loaded == table and loaded.rows[0][0] == Message(text="cell")  # type: ignore[attr-defined]


class RowsOnly:
    """A backend that is only a `MessageStore` (not an observer): the rows of a SQLite store."""

    def __init__(self, backing: SQLiteMessageStore) -> None:
        self.awrite, self.aclose = backing.awrite, backing.aclose
        self.aread_messages, self.aread_partials = backing.aread_messages, backing.aread_partials
        self.aread_calls, self.aread_root_calls, self.aread_slots = (
            backing.aread_calls,
            backing.aread_root_calls,
            backing.aread_slots,
        )


async def test_a_message_store_of_ones_own_records_through_a_store_recorder(tmp_path: Any) -> None:
    backing = SQLiteMessageStore(tmp_path / "other.db")
    backend = RowsOnly(backing)
    assert isinstance(backend, MessageStore) and not isinstance(backend, RunObserver)
    async with MiniAgents(store=StoreRecorder(backend)):
        replies = await plain_echo_agent.inquire("as a MessageStore")
    (run,) = await backing.aread_root_calls()
    assert (await backing.aload_call_tree(run)).replies == replies
    await backing.aclose()


@pytest.mark.parametrize(
    ("store", "hint"),
    [
        ("runs.db", r"got str: pass open_store\('runs.db'\)"),
        (RowsOnly(SQLiteMessageStore("unused.db")), r"got RowsOnly: pass StoreRecorder\(your_store\)"),
        (42, "got int: pass a RunObserver"),
    ],
)
def test_a_store_that_is_not_an_observer_is_a_type_error_that_says_what_to_pass(store: Any, hint: str) -> None:
    with pytest.raises(TypeError, match=f"store must be a RunObserver that records the run, {hint}"):
        MiniAgents(store=store)


class _BytesPerSecondStore(SQLiteMessageStore):
    """Every write takes as long as its messages' JSON at ``rate`` bytes per second; it notes the partials' text."""

    def __init__(self, path: Any, rate: float) -> None:
        super().__init__(path)
        self.rate = rate
        self.texts: list[tuple[float, str, str]] = []  # (when written, the text, the status) of each partial row

    async def awrite(self, batch: Any) -> None:
        await asyncio.sleep(sum(len(row.json) for row in batch.messages) / self.rate)
        await super().awrite(batch)
        self.texts += [(time.monotonic(), row.text_json, row.status) for row in batch.partials]


async def test_streaming_text_is_written_every_flush_interval_while_big_messages_are_written(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "_BATCH_BYTES", 200_000)
    store = _BytesPerSecondStore(tmp_path / "big.db", rate=5e6)  # 100 messages of 200 kB: 4 s of writing

    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        for i in range(150):
            await asyncio.sleep(0.02)
            yield f"t{i} "

    @miniagent
    async def streaming_agent(ctx: InteractionContext) -> None:
        ctx.reply(Message.promise(message_token_streamer=tokens))

    @miniagent
    async def big_agent(ctx: InteractionContext, n: int) -> None:
        ctx.reply(Message(text=f"{n}" + "y" * 200_000))

    async with MiniAgents(store=store):
        streamed = streaming_agent.inquire()
        await asyncio.sleep(0.3)
        for n in range(100):
            big_agent.inquire(n=n)
        await streamed
    streaming = [when for when, text, status in store.texts if text != '""' and status == "streaming"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(streaming)]
    # while it streamed, the text went in about every 0.5 s; one batch of all the big messages (4 s) held it up
    assert len(streaming) >= 4 and max(gaps) < 1.2, gaps


async def test_a_call_is_recorded_as_ended_after_the_replies_it_streamed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteMessageStore(tmp_path / "order.db")
    recorder = store.observer()
    pushed: list[tuple[Any, ...]] = []
    push = recorder._push

    def noting_push(*op: Any) -> None:
        pushed.append(op)
        push(*op)

    monkeypatch.setattr(recorder, "_push", noting_push)
    async with MiniAgents(store=store):
        replies = await writer_agent.inquire("owls", style="short")  # (a streamed reply)
    assert replies[0].text == "A short text about owls."
    completed = next(i for i, op in enumerate(pushed) if op[0] == "partial" and op[2] == "complete")
    ended = next(
        i for i, op in enumerate(pushed) if op[0] == "call" and op[3] == "WRITER_AGENT" and op[5] == "finished"
    )
    assert completed < ended  # (a crash between the two batches would leave a finished call with a partial reply)


@miniagent
async def unread_input_agent(
    ctx: InteractionContext, ids: list[str], started: asyncio.Event, release: asyncio.Event
) -> None:
    """Never reads its input: it waits, then replies."""
    ids.append(ctx.agent_call.call_id)
    started.set()
    await release.wait()
    ctx.reply("replied without reading")


@miniagent
async def half_streamed_agent(ctx: InteractionContext, gate: asyncio.Event) -> None:
    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "first half"
        await gate.wait()
        yield ", second half"

    ctx.reply(Message.promise(message_token_streamer=tokens))


async def test_inputs_are_stored_as_they_arrive_not_when_the_agent_reads_them(store: RecordingStore) -> None:
    """An agent that has not read its input (yet) must not cost the input in a crash (issue 11: after SIGKILL
    every completed message, and each partial text up to its last flush, is in the store). The input was recorded
    only as the agent read it, or after its function returned: a crash while it ran lost it."""
    started, release, gate = asyncio.Event(), asyncio.Event(), asyncio.Event()
    ids: list[str] = []
    async with asyncio.timeout(30), MiniAgents(store=store):
        call = unread_input_agent.fork(ids=ids, started=started, release=release).initiate_inquiry()
        call.send_message("plain input")
        call.send_message(half_streamed_agent.fork(gate=gate).inquire())
        replies = call.finish().reply_sequence()
        await started.wait()
        while True:  # (the streaming input's text is written every flush interval, 0.25 s)
            await store.observer().awrite_queued()
            running = await store.aload_call_tree(ids[0])
            if len(running.inputs) == 2 and running.inputs[1].text:
                break
            await asyncio.sleep(0.05)
        assert running.status == "running"
        assert [(m.text, getattr(m, "partial", False)) for m in running.inputs] == [
            ("plain input", False),
            ("first half", True),
        ]
        gate.set()
        release.set()
        assert [m.text for m in await replies] == ["replied without reading"]
    done = await store.aload_call_tree(ids[0])
    assert (done.status, [m.text for m in done.inputs]) == ("finished", ["plain input", "first half, second half"])


def test_a_store_url_s_scheme_is_case_insensitive_and_one_store_serves_every_spelling(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("asyncpg")
    from miniagents.store import PostgresMessageStore
    from miniagents.store._history import _resolve_store

    store = open_store("PostgreSQL://app@127.0.0.1:5432/runs")  # (RFC 3986: schemes are case-insensitive)
    assert isinstance(store, PostgresMessageStore)
    assert store.dsn == "postgresql://app@127.0.0.1:5432/runs"
    # the history agent keeps one store object (one writer, one claim) per store, however it is named
    assert _resolve_store("POSTGRESQL://app@127.0.0.1:5432/runs") is _resolve_store(
        "postgresql://app@127.0.0.1:5432/runs"
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.db").symlink_to(tmp_path / "chat.db")
    assert _resolve_store("chat.db") is _resolve_store(tmp_path / "chat.db") is _resolve_store("./link.db")
