"""The message store suite, run against SQLite and a real PostgreSQL server (the `store` fixture's two params)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from miniagents import Frozen, Message, MiniAgents
from miniagents.ext.llm import AssistantMessage, UserMessage
from miniagents.store import (
    MessageRegistry,
    MessageRow,
    MessageStore,
    RecordingStore,
    StoreBatch,
    StoreRecorder,
    aload_message,
)
from tests.polling import promise_made, wait_until


class Note(Message):
    """A message class with declared fields."""

    author: str
    stars: int = 0


class Thread(Message):
    """A message that holds other messages."""

    first: Message
    rest: tuple[Any, ...] = ()


def _call(call_id: str, alias: str, parent: Any = None, kwargs: Frozen | None = None) -> SimpleNamespace:
    """A stand-in for `miniagents.AgentCall` with the attributes the recorder reads."""
    return SimpleNamespace(
        call_id=call_id,
        parent_call=parent,
        agent_alias=alias,
        kwargs=kwargs,
        status="running",
        started_at=time.time(),
        ended_at=None,
        error=None,
    )


def _end(call: SimpleNamespace, status: str, error: BaseException | None = None) -> None:
    call.status, call.ended_at, call.error = status, time.time(), error


def test_stores_implement_the_protocol(store: RecordingStore) -> None:
    assert isinstance(store, MessageStore)


async def test_messages_load_back_as_their_own_classes_with_nested_messages(store: RecordingStore) -> None:
    async with MiniAgents():
        inner = Note("inner", author="ann", stars=3)
        messages = [
            Message("plain"),
            UserMessage("hi"),
            AssistantMessage("hello", model="m-1"),
            Note("a note", author="bob"),
            Message("extras", tags=["a", "b"], meta={"k": 1, "nested": {"x": None}}, ratio=0.5),
            Thread("thread", first=inner, rest=["not a message", Message("second"), 7, {"m": inner}]),
            Message("text with a NUL \x00 and ünïcödé 😀"),
        ]
        recorder = store.observer()
        for message in messages:
            recorder.record_message(message)
            recorder.record_message(message)  # recorded again: stored once
        await recorder.aflush()
        for message in messages:
            loaded = await store.aload_message(message.hash_key)
            assert type(loaded) is type(message)
            assert loaded == message
            assert loaded.hash_key == message.hash_key
        thread = await store.aload_message(messages[5].hash_key)
        assert isinstance(thread, Thread) and thread.first == inner and thread.rest[1] == Message("second")
        rows = await store.aread_messages([message.hash_key for message in messages] + [inner.hash_key])
        assert len(rows) == len(messages) + 1  # the nested ones are rows of their own
        assert {row.schema_version for row in rows.values()} == {1}


async def test_an_unknown_class_loads_as_a_generic_message_with_its_fields(store: RecordingStore) -> None:
    row = MessageRow("k" * 40, "GoneMessage", '{"class_": "GoneMessage", "text": "old", "score": 2}')
    await store.awrite(StoreBatch(messages=[row]))
    loaded = await aload_message(store, "k" * 40)
    assert isinstance(loaded, Message)
    assert (type(loaded).__name__, loaded.class_, loaded.text, loaded.score) == ("GoneMessage", "GoneMessage", "old", 2)
    with pytest.raises(KeyError, match="no stored message"):
        await store.aload_message("missing")
    # a registry decides the class by name
    registry = MessageRegistry([Note])
    note_row = MessageRow("n" * 40, "Note", '{"class_": "Note", "text": "x", "author": "a", "stars": 1}')
    await store.awrite(StoreBatch(messages=[note_row]))
    assert await store.aload_message("n" * 40, registry) == Note("x", author="a", stars=1)


async def test_a_call_tree_loads_by_its_root(store: RecordingStore) -> None:
    async with MiniAgents():
        recorder = store.observer()
        root = _call("root", "ORCHESTRATOR", kwargs=Frozen(topic="cats", limit=3))
        child = _call("child", "WRITER", parent=root)
        grandchild = _call("grandchild", "SEARCH", parent=child)
        second = _call("second", "CRITIC", parent=root)
        recorder.on_call_started(root)
        recorder.on_call_input(root, 0, UserMessage("write about cats").as_promise)
        recorder.on_call_started(child)
        recorder.on_call_input(child, 0, Message("cats").as_promise)
        recorder.on_call_input(child, 1, Message("short").as_promise)
        recorder.on_call_started(grandchild)
        recorder.on_call_input(grandchild, 0, Message("cats").as_promise)
        recorder.on_call_reply(grandchild, 0, Message("cats are cats").as_promise)
        _end(grandchild, "finished")
        recorder.on_call_ended(grandchild)
        recorder.on_call_reply(child, 0, AssistantMessage("Cats purr.", model="m").as_promise)
        _end(child, "finished")
        recorder.on_call_ended(child)
        recorder.on_call_started(second)
        _end(second, "failed", ValueError("no critique"))
        recorder.on_call_ended(second)
        recorder.on_call_reply(root, 0, AssistantMessage("Cats purr.", model="m").as_promise)
        _end(root, "cancelled")
        recorder.on_call_ended(root)
        await recorder.aflush()
    tree = await store.aload_call_tree("root")
    assert (tree.agent_alias, tree.status, tree.parent_call_id) == ("ORCHESTRATOR", "cancelled", None)
    assert tree.kwargs == Frozen(topic="cats", limit=3)
    assert tree.inputs == (UserMessage("write about cats"),)
    assert tree.replies == (AssistantMessage("Cats purr.", model="m"),)
    assert tree.ended_at is not None and tree.ended_at >= tree.started_at
    assert [c.call_id for c in tree.children] == ["child", "second"]
    writer, critic = tree.children
    assert [m.text for m in writer.inputs] == ["cats", "short"]
    assert (writer.status, writer.parent_call_id) == ("finished", "root")
    assert [(c.agent_alias, c.status, [m.text for m in c.replies]) for c in writer.children] == [
        ("SEARCH", "finished", ["cats are cats"])
    ]
    assert (critic.status, critic.error, critic.inputs, critic.replies) == ("failed", "ValueError: no critique", (), ())
    subtree = await store.aload_call_tree("child")
    assert [c.call_id for c in subtree.children] == ["grandchild"]
    with pytest.raises(KeyError, match="no stored agent call"):
        await store.aload_call_tree("nope")


async def test_a_streaming_message_is_stored_as_partial_and_completed(store: RecordingStore) -> None:
    go_on = asyncio.Event()
    sent = asyncio.Event()

    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "Hel"
        yield "lo"
        sent.set()
        await go_on.wait()
        yield " world"

    async with MiniAgents():
        recorder = StoreRecorder(store, flush_interval=0.05)
        call = _call("c1", "LLM")
        recorder.on_call_started(call)
        promise = AssistantMessage.promise(message_token_streamer=tokens, model="m")
        recorder.on_call_reply(call, 0, promise)
        await sent.wait()
        deadline = time.monotonic() + 10
        try:
            while True:  # the partial text reaches the store within a flush interval or two
                with contextlib.suppress(KeyError):  # (the call itself may not be written yet)
                    replies = (await store.aload_call_tree("c1")).replies
                    if replies and replies[0].text == "Hello":
                        break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        finally:
            go_on.set()
        assert (replies[0].partial, replies[0].partial_status, replies[0].model) == (True, "streaming", "m")
        message = await promise
        _end(call, "finished")
        recorder.on_call_ended(call)
        await recorder.aflush()
    tree = await store.aload_call_tree("c1")
    assert tree.replies == (message,)
    assert type(tree.replies[0]) is AssistantMessage and not hasattr(tree.replies[0], "partial")


async def test_a_failed_stream_keeps_its_text_marked_failed(store: RecordingStore) -> None:
    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "half an "
        raise ConnectionError("gone")

    async with MiniAgents():
        recorder = store.observer()
        call = _call("c2", "LLM")
        recorder.on_call_started(call)
        promise = Message.promise(message_token_streamer=tokens, role="assistant")
        recorder.on_call_reply(call, 0, promise)
        with pytest.raises(ConnectionError):
            await promise
        _end(call, "failed", ConnectionError("gone"))
        recorder.on_call_ended(call)
        await recorder.aflush()
    [reply] = (await store.aload_call_tree("c2")).replies
    assert (reply.text, reply.partial, reply.partial_status, reply.role) == ("half an ", True, "failed", "assistant")


class _Flaky:
    """A store wrapper whose writes fail as the test says."""

    def __init__(self, store: RecordingStore, fail_times: int = 0, poison: str | None = None) -> None:
        self.store = store
        self.fail_times = fail_times
        self.poison = poison
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def awrite(self, batch: StoreBatch) -> None:
        self.attempts += 1
        if self.attempts <= self.fail_times:
            raise OSError("disk hiccup")
        if self.poison and any(row.hash_key == self.poison for row in batch.messages):
            raise ValueError("this row cannot be written")
        await self.store.awrite(batch)


async def test_the_writer_retries_a_failing_batch_and_drops_nothing(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(store, fail_times=2)
    async with MiniAgents():
        recorder = StoreRecorder(flaky, retry_delays=(0, 0, 0))  # type: ignore[arg-type]
        messages = [Message(f"m{i}") for i in range(50)]
        with caplog.at_level(logging.ERROR, logger="miniagents.store"):
            for message in messages:
                recorder.record_message(message)
            await recorder.aflush()
    assert len(await store.aread_messages([m.hash_key for m in messages])) == 50
    assert [r.message.count("disk hiccup") for r in caplog.records] == [1, 1]
    assert recorder.failed_rows == 0


async def test_one_bad_row_costs_only_itself(store: RecordingStore, caplog: pytest.LogCaptureFixture) -> None:
    bad = Message("bad")
    flaky = _Flaky(store, poison=bad.hash_key)
    async with MiniAgents():
        recorder = StoreRecorder(flaky, retry_delays=(0,))  # type: ignore[arg-type]
        messages = [Message(f"m{i}") for i in range(20)]
        with caplog.at_level(logging.ERROR, logger="miniagents.store"):
            for message in [*messages[:10], bad, *messages[10:]]:
                recorder.record_message(message)
            await recorder.aflush()
            recorder.record_message(Message("after"))
            await recorder.aflush()
    assert len(await store.aread_messages([m.hash_key for m in [*messages, Message("after")]])) == 21
    assert await store.aread_messages([bad.hash_key]) == {}
    assert recorder.failed_rows == 1
    assert any("gave up" in record.message for record in caplog.records)


class _Rejecting(_Flaky):
    """Every write with rows fails; an empty one (a bare transaction) too when ``dead``."""

    def __init__(self, store: RecordingStore, dead: bool) -> None:
        super().__init__(store)
        self.dead = dead

    async def awrite(self, batch: StoreBatch) -> None:
        self.attempts += 1
        if len(batch) or self.dead:
            raise OSError("disk full")
        await self.store.awrite(batch)


@pytest.mark.parametrize("dead", [False, True], ids=["rows-fail", "store-dead"])
async def test_a_store_that_takes_nothing_costs_a_bounded_number_of_tries(
    store: RecordingStore, caplog: pytest.LogCaptureFixture, dead: bool
) -> None:
    # (each split part used to get every retry, with back-off: about 3.5 s per row with the default delays)
    rejecting = _Rejecting(store, dead)
    async with asyncio.timeout(10), MiniAgents():
        recorder = StoreRecorder(rejecting, retry_delays=(0, 0, 0, 0))  # type: ignore[arg-type]
        with caplog.at_level(logging.ERROR, logger="miniagents.store"):
            for i in range(20):
                recorder.record_message(Message(f"m{i}"))
            await recorder.aflush()
            first_attempts = rejecting.attempts
            recorder.record_message(Message("later"))
            await recorder.aflush()
    assert recorder.failed_rows == 21
    if dead:  # five tries and an empty write that fails too: given up; the next batch: a single try
        assert (first_attempts, rejecting.attempts) == (5 + 1, 6 + 1)
    else:  # five tries, the empty write, then each half once, down to every single row (2 * 20 - 2); the next
        # batch (one row) gets its five tries: the store takes writes
        assert (first_attempts, rejecting.attempts) == (5 + 1 + 38, 44 + 5)
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 2 and gave_up[0].startswith("gave up writing 20 of 20 rows")
    assert len([r for r in caplog.records if "(try " in r.getMessage()]) == (6 if dead else 10)


class _DownForTheFirstBatch(_Flaky):
    """The first write fails: a batch of one row with one try is given up at once."""

    async def awrite(self, batch: StoreBatch) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise OSError("connection refused")
        await self.store.awrite(batch)


async def test_a_message_given_up_with_one_batch_is_written_with_the_next_that_holds_it(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next batch is built while the one before is written: it must not count on that one's messages.
    from miniagents.store import _recorder

    monkeypatch.setattr(_recorder, "_BATCH_LIMIT", 2)  # (one message per batch)
    down = _DownForTheFirstBatch(store)
    message = Message("recorded twice")
    async with MiniAgents():
        recorder = StoreRecorder(down, retry_delays=())  # type: ignore[arg-type]
        recorder.record_message(message)
        recorder.record_message(message)
        await recorder.aflush()
    assert recorder.failed_rows == 1
    assert set(await store.aread_messages([message.hash_key])) == {message.hash_key}


async def test_a_message_with_a_lone_surrogate_is_stored_and_loads_back_the_same(store: RecordingStore) -> None:
    # (a broken stream or a file read with "surrogateescape" can leave one in a text; UTF-8 cannot encode it)
    message = Note("broken \ud800 text", author="\udcff")
    async with MiniAgents():
        recorder = StoreRecorder(store)
        recorder.record_message(message)
        await recorder.aflush()
    assert recorder.failed_rows == 0
    loaded = await store.aload_message(message.hash_key, MessageRegistry([Note]))
    assert loaded == message and loaded.hash_key == message.hash_key


async def test_histories_keep_messages_in_order(store: RecordingStore) -> None:
    async with MiniAgents():
        recorder = store.observer()
        for index, message in enumerate([UserMessage("q1"), AssistantMessage("a1"), UserMessage("q2")]):
            recorder.record_message_promise("chat-1", "history", index, message.as_promise)
        recorder.record_message_promise("chat-2", "history", 0, UserMessage("other").as_promise)
        await recorder.aflush()
    assert [m.text for m in await store.aload_history("chat-1")] == ["q1", "a1", "q2"]
    assert await store.aload_history("chat-3") == []


async def test_a_second_store_object_reads_what_the_first_wrote(store_factory: Any) -> None:
    first, second = store_factory(), store_factory()
    async with first, MiniAgents():
        first.observer().record_message(Note("shared", author="x"))
    async with second:
        assert await second.aload_message(Note("shared", author="x").hash_key) == Note("shared", author="x")


async def test_store_history_agent_keeps_the_conversation_across_processes(store_factory: Any) -> None:
    from miniagents.store import store_history_agent

    first = store_factory()
    async with first, MiniAgents():
        agent = store_history_agent.fork(store=first, history_id="chat")
        assert [m.text for m in await agent.inquire(UserMessage("q1"))] == ["q1"]
        replies = await agent.inquire([AssistantMessage("a1", model="m"), UserMessage("q2", no_history=True)])
        assert replies == (UserMessage("q1"), AssistantMessage("a1", model="m"))
        assert await agent.fork(only_write=True).inquire(UserMessage("q3")) == ()
    second = store_factory()  # a new process would make a new store object
    async with second, MiniAgents():
        replies = await store_history_agent.fork(store=second, history_id="chat").inquire(AssistantMessage("a3"))
    assert replies == (UserMessage("q1"), AssistantMessage("a1", model="m"), UserMessage("q3"), AssistantMessage("a3"))
    assert all(not hasattr(message, "partial") for message in replies)


async def test_store_history_agent_makes_the_loaded_promises_while_the_input_is_awaited(store_factory: Any) -> None:
    from miniagents.store import store_history_agent

    first = store_factory()
    async with first, MiniAgents():
        await store_history_agent.fork(store=first, history_id="long", only_write=True).inquire(
            [UserMessage(f"q{i}") for i in range(500)]
        )
    second = store_factory()
    async with second, MiniAgents():
        call = store_history_agent.fork(store=second, history_id="long").initiate_inquiry()  # the user is "typing"
        loaded = await second.ahistory("long")  # (the agent's list: one per store object and history)
        await wait_until(lambda: all(map(promise_made, loaded)))
        promises = [message.as_promise for message in loaded]
        call.send_message(UserMessage("new"))
        replies = await call.reply_sequence()
    assert [m.text for m in replies] == [f"q{i}" for i in range(500)] + ["new"]
    assert all(reply.as_promise is promise for reply, promise in zip(replies[:500], promises, strict=True))


def test_drivers_are_imported_lazily_and_missing_ones_name_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import miniagents.store\n"
        "assert 'aiosqlite' not in sys.modules and 'asyncpg' not in sys.modules, 'imported eagerly'\n"
        "sys.modules['aiosqlite'] = None\n"
        "sys.modules['asyncpg'] = None\n"
        "for location in ('x.db', 'postgresql://h/db'):\n"
        "    try:\n"
        "        miniagents.store.open_store(location)\n"
        "    except ImportError as error:\n"
        "        print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'pip install "miniagents[sqlite]"' in result.stdout
    assert 'pip install "miniagents[postgres]"' in result.stdout


async def test_a_big_batch_is_written_whole(store: RecordingStore) -> None:
    # More rows than one SQLite statement takes (4,096 messages, 4,096 slots), with a rest of every size class.
    count = 4096 + 2048 + 511
    async with MiniAgents():
        recorder = store.observer()
        for index in range(count):
            recorder.record_message_promise("big", "history", index, Message(f"message {index}").as_promise)
        await recorder.aflush()
    history = await store.aload_history("big")
    assert [message.text for message in history] == [f"message {index}" for index in range(count)]


def test_sqlite_statements_take_every_row_within_the_limits_in_a_few_sizes() -> None:
    from miniagents.store._sqlite_writer import MAX_PARAMETERS, MOST_ROWS, rows_per_statement, statement_sizes

    for columns in (4, 5, 7, 8):
        most = rows_per_statement(columns)
        assert most * columns <= MAX_PARAMETERS and most <= MOST_ROWS
        assert 2 * most * columns > MAX_PARAMETERS or 2 * most > MOST_ROWS
        for rows in (1, 2, 3, most - 1, most, most + 1, 3 * most + 777):
            sizes = statement_sizes(rows, most)
            assert all(size == most for size in sizes[:-1]) and sizes[-1] <= most
            assert sizes[-1] & (sizes[-1] - 1) == 0  # a power of two: one of a few cached statements
            assert sum(sizes[:-1]) < rows <= sum(sizes)  # the last one is filled up, by less than half
            assert sizes[-1] == most or rows - sum(sizes[:-1]) > sizes[-1] // 2
        assert statement_sizes(0, most) == []


async def test_sqlite_binds_none_as_null_through_an_identity_adapter(tmp_path: Any) -> None:
    import sqlite3

    from miniagents.store import SQLiteMessageStore

    async with SQLiteMessageStore(tmp_path / "runs.db") as store:
        await store.aopen()
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    with sqlite3.connect(tmp_path / "other.db") as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.execute("INSERT INTO t VALUES (?)", (None,))
        assert connection.execute("SELECT x IS NULL FROM t").fetchone() == (1,)


async def test_batches_cut_anywhere_in_the_queue_keep_every_operation_whole(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The queue is flat (an operation's kind, then its values): a batch that ends in the middle of an operation
    # takes the rest of it. With a limit of 7 values, batches end inside calls, slots, messages and partials.
    from miniagents.store import _recorder

    monkeypatch.setattr(_recorder, "_BATCH_LIMIT", 7)

    async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
        yield "str"
        await asyncio.sleep(0)
        yield "eamed"

    async with MiniAgents():
        recorder = StoreRecorder(store, flush_interval=0.05)
        calls = [_call(f"call-{index}", f"AGENT_{index}") for index in range(20)]
        streamed = AssistantMessage.promise(message_token_streamer=tokens, model="m")
        for index, call in enumerate(calls):
            recorder.on_call_started(call)
            recorder.record_message(Note(f"note {index}", author="a", stars=index))
            recorder.on_call_input(call, 0, Message(f"in {index}").as_promise)
            recorder.on_call_reply(call, 0, streamed if index == 7 else Message(f"out {index}").as_promise)
            _end(call, "finished")
            recorder.on_call_ended(call)
        await recorder.aflush()
    for index, call in enumerate(calls):
        tree = await store.aload_call_tree(call.call_id)
        assert (tree.agent_alias, tree.status) == (f"AGENT_{index}", "finished")
        assert [message.text for message in tree.inputs] == [f"in {index}"]
        assert [message.text for message in tree.replies] == ["streamed" if index == 7 else f"out {index}"]
    for index in range(20):
        note = Note(f"note {index}", author="a", stars=index)
        assert await store.aload_message(note.hash_key, MessageRegistry([Note])) == note


def test_a_batch_keeps_its_rows_flat_and_gives_them_back_as_rows() -> None:
    message = MessageRow("k" * 40, "Message", '{"class_": "Message", "text": "x"}')
    batch = StoreBatch(messages=[message])
    batch.add("slots", ("owner", "history", 0, message.hash_key, None))
    batch.add("slots", ("owner", "history", 1, None, "partial-1"))
    assert batch.values["slots"] == ["owner", "history", 0, "k" * 40, None, "owner", "history", 1, None, "partial-1"]
    assert batch.messages == (message,)
    assert [row.partial_id for row in batch.slots] == [None, "partial-1"]
    assert (len(batch), batch.row_count("slots"), batch.calls, batch.partials) == (3, 2, (), ())
    assert [table for table, _ in batch.tables()] == ["messages", "slots"]
    with pytest.raises(ValueError, match="a row of calls has 8 values, got 2"):
        batch.add("calls", ("id", None))
    with pytest.raises(ValueError, match="no table 'rows' in a StoreBatch"):
        batch.add("rows", ("x",))
    assert len(batch) == 3  # nothing of a bad row is kept


async def test_a_history_is_claimed_by_one_store_object_at_a_time(store_factory: Any) -> None:
    from miniagents.store import HistoryInUseError

    first, second = store_factory(), store_factory()  # (as two processes would have)
    await first.aclaim_history("chat")
    await first.aclaim_history("chat")  # (held already: nothing to do)
    with pytest.raises(HistoryInUseError, match=r"'chat' of .* is being written by another process"):
        await second.aclaim_history("chat")
    await second.aclaim_history("notes")  # another history is free
    await first.arelease_history("chat")
    await second.aclaim_history("chat")
    for history_id in ("chat", "notes"):
        await second.arelease_history(history_id)
    await first.arelease_history("notes")  # (not held: nothing to do)


async def test_store_history_agent_claims_its_history_until_the_store_is_left(store_factory: Any) -> None:
    from miniagents.store import HistoryInUseError, store_history_agent

    first, second = store_factory(), store_factory()  # (as two processes would have)
    async with first:
        async with MiniAgents():
            await store_history_agent.fork(store=first, history_id="chat").inquire(UserMessage("from the first"))
        async with MiniAgents():
            with pytest.raises(HistoryInUseError, match="'chat'"):
                await store_history_agent.fork(store=second, history_id="chat").inquire(UserMessage("lost"))
            other = await store_history_agent.fork(store=second, history_id="notes").inquire(UserMessage("n"))
            assert [m.text for m in other] == ["n"]  # another history is free
    async with second, MiniAgents():  # the first left its store: the history is free again
        replies = await store_history_agent.fork(store=second, history_id="chat").inquire(UserMessage("second"))
    assert [m.text for m in replies] == ["from the first", "second"]  # nothing of the refused turn was written


async def test_a_history_claimed_again_is_read_again(store_factory: Any) -> None:
    from miniagents.store import store_history_agent

    first, second = store_factory(), store_factory()  # (as two processes would have)
    async with first, MiniAgents():
        await store_history_agent.fork(store=first, history_id="chat").inquire(UserMessage("a"))
    async with second, MiniAgents():  # the first left its store: the second appends in the meantime
        await store_history_agent.fork(store=second, history_id="chat").inquire(UserMessage("b"))
    async with first, MiniAgents():  # the first's store again: not its list of before, which misses "b"
        replies = await store_history_agent.fork(store=first, history_id="chat").inquire(UserMessage("c"))
    assert [m.text for m in replies] == ["a", "b", "c"]
    async with store_factory() as third:
        assert [m.text for m in await third.aload_history("chat")] == ["a", "b", "c"]  # "b" was not overwritten


async def test_concurrent_turns_of_one_store_object_share_its_claim(store_factory: Any) -> None:
    from miniagents.store import HistoryInUseError, store_history_agent

    store = store_factory()
    async with store, MiniAgents():
        agent = store_history_agent.fork(store=store, history_id="chat", only_write=True)
        await asyncio.gather(*(agent.inquire(UserMessage(f"m{i}")) for i in range(5)))  # (all claim at once)
        with pytest.raises(HistoryInUseError):
            await store_factory().aclaim_history("chat")  # still held (once: left with the store)
    async with store_factory() as other:
        assert sorted(m.text for m in await other.aload_history("chat")) == [f"m{i}" for i in range(5)]
