"""Loading stored messages back: Frozen values, partial metadata, missing and broken rows, class names, depth.

Run against SQLite and a real PostgreSQL server (the `store` fixture's two params), except the deep nesting one.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from miniagents import Frozen, Message, MiniAgents
from miniagents.store import (
    CallRow,
    MessageRegistry,
    MessageRow,
    RecordingStore,
    SlotRow,
    SQLiteMessageStore,
    StoreBatch,
    aload_message,
)


class Knobs(Frozen):
    """A `Frozen` subclass (not a message) used as the type of a message's field."""

    temperature: float = 0.5
    about: Message | None = None


class Request(Message):
    """A message with `Frozen`-typed fields, one of them a tuple."""

    knobs: Knobs
    more: tuple[Knobs, ...] = ()


class LoadingTwin(Message):
    """One of two message classes with this name (the other is made below, in another module)."""

    side: str = "here"


_OTHER_TWIN = type("LoadingTwin", (Message,), {"__module__": "somewhere.else", "__qualname__": "LoadingTwin"})


class LoadingRedefined(Message):
    """Defined twice in this module (as a reloaded module or a notebook cell run again would): the newest counts."""

    version: int = 1


_FIRST_DEFINITION = LoadingRedefined


class LoadingRedefined(Message):  # type: ignore[no-redef]
    """The second definition, the one this module holds."""

    version: int = 2


def _row(data: dict[str, Any]) -> MessageRow:
    """A message row as the recorder writes it: its key is the sha256 of the sorted JSON, cut to 40 characters."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
    return MessageRow(hashlib.sha256(text.encode()).hexdigest()[:40], data["class_"], text)


def _call(call_id: str, kwargs: Frozen | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        call_id=call_id,
        parent_call=None,
        agent_alias="AGENT",
        kwargs=kwargs,
        status="running",
        started_at=time.time(),
        ended_at=None,
        error=None,
    )


async def test_frozen_values_inside_messages_load_as_their_own_classes(store: RecordingStore) -> None:
    # (they loaded as generic *messages* of that name: text fields added, the hash key changed, and a field
    # declared with the class made the whole message fall back to a generic one)
    async with MiniAgents():
        messages = [
            Request("r", knobs=Knobs(temperature=0.1)),
            Request("r2", knobs=Knobs(about=Message("inner")), more=(Knobs(), Knobs(temperature=1.0))),
            Message("extra", knobs=Knobs(temperature=0.2), deep={"k": Knobs(about=Message("x"))}),
        ]
        recorder = store.observer()
        for message in messages:
            recorder.record_message(message)
        await recorder.aflush()
        for message in messages:
            loaded = await store.aload_message(message.hash_key)
            assert type(loaded) is type(message)
            assert loaded == message
            assert loaded.hash_key == message.hash_key
        loaded = await store.aload_message(messages[1].hash_key)
        assert isinstance(loaded, Request) and type(loaded.knobs) is Knobs and loaded.knobs.about == Message("inner")


async def test_a_frozen_value_of_an_unknown_class_loads_as_a_generic_frozen_and_keeps_the_hash_key(
    store: RecordingStore,
) -> None:
    row = _row({"class_": "Message", "text": "t", "text_template": None, "cfg": {"class_": "GoneKnobs", "level": 3}})
    await store.awrite(StoreBatch(messages=[row]))
    loaded = await aload_message(store, row.hash_key)
    cfg = loaded.cfg  # type: ignore[attr-defined]
    assert isinstance(cfg, Frozen) and not isinstance(cfg, Message)
    assert (type(cfg).__name__, cfg.class_, cfg.level) == ("GoneKnobs", "GoneKnobs", 3)
    assert loaded.hash_key == row.hash_key


async def test_call_kwargs_and_partial_metadata_holding_messages_and_frozen_values_load(store: RecordingStore) -> None:
    # (partial metadata was not resolved at all: a message or a Frozen subclass in it failed the whole load)
    async with MiniAgents():
        recorder = store.observer()
        call = _call("call-1", kwargs=Frozen(knobs=Knobs(temperature=0.3), topic=Message("cats")))
        recorder.on_call_started(call)
        partial = recorder.open_partial(
            "call-1", "reply", 0, Frozen(role="assistant", reply_to=Message("q"), knobs=Knobs()), "Message"
        )
        partial.append("so far")
        await recorder.awrite_queued()
        tree = await store.aload_call_tree("call-1")
        partial.fail()
        await recorder.aflush()
    assert tree.kwargs == Frozen(knobs=Knobs(temperature=0.3), topic=Message("cats"))
    assert type(tree.kwargs.knobs) is Knobs  # type: ignore[union-attr]
    (reply,) = tree.replies
    fields = (reply.text, reply.role, reply.partial, reply.partial_status)  # type: ignore[attr-defined]
    assert fields == ("so far", "assistant", True, "streaming")
    assert reply.reply_to == Message("q") and type(reply.knobs) is Knobs  # type: ignore[attr-defined]


async def test_a_nested_message_without_a_row_is_a_key_error_that_names_it(store: RecordingStore) -> None:
    # (it loaded as a plain field ``child__hash_key`` holding the key: the nested message silently gone)
    missing = Message("never stored")
    parent = _row({"class_": "Message", "text": "p", "text_template": None, "child__hash_key": missing.hash_key})
    await store.awrite(StoreBatch(messages=[parent]))
    with pytest.raises(KeyError) as raised:
        await store.aload_message(parent.hash_key)
    text = str(raised.value)
    assert parent.hash_key in text and "(Message)" in text and "'child'" in text and missing.hash_key in text


async def test_a_slot_whose_partial_row_is_missing_fails_instead_of_shifting_the_other_messages(
    store: RecordingStore,
) -> None:
    # (the slot was skipped, and the messages after it were given to the wrong slots and calls)
    x, y = Message("X"), Message("Y")
    now = time.time()
    await store.awrite(
        StoreBatch(
            messages=[MessageRow(x.hash_key, "Message", x.serialized), MessageRow(y.hash_key, "Message", y.serialized)],
            calls=[
                CallRow("c1", None, "A", None, "finished", now, now, None),
                CallRow("c2", "c1", "B", None, "finished", now + 1, now + 1, None),
            ],
            slots=[
                SlotRow("c1", "input", 0, None, "lost-partial"),
                SlotRow("c1", "reply", 0, x.hash_key, None),
                SlotRow("c2", "input", 0, y.hash_key, None),
            ],
        )
    )
    with pytest.raises(KeyError, match=r"the input message 0 of 'c1' is the partial message 'lost-partial'"):
        await store.aload_call_tree("c1")
    tree = await store.aload_call_tree("c2")  # (a tree without it loads)
    assert tree.inputs == (y,)


async def test_a_slot_whose_message_row_is_missing_names_the_slot(store: RecordingStore) -> None:
    now = time.time()
    gone = Message("gone")
    await store.awrite(
        StoreBatch(
            calls=[CallRow("c1", None, "A", None, "finished", now, now, None)],
            slots=[SlotRow("c1", "reply", 2, gone.hash_key, None)],
        )
    )
    with pytest.raises(KeyError, match=rf"the reply message 2 of 'c1' is the message '{gone.hash_key}'"):
        await store.aload_call_tree("c1")


@pytest.mark.parametrize(
    ("json_text", "problem"),
    [
        ("{broken", "has broken JSON"),
        ('["a list"]', "has JSON that is not an object"),
        ('{"text": "no class"}', "has no class_ in its JSON"),
        ('{"class_": "Message", "text": 5}', "cannot be loaded, not even as a generic Message"),
    ],
)
async def test_a_broken_row_is_a_value_error_naming_its_hash_key_and_class(
    store: RecordingStore, json_text: str, problem: str
) -> None:
    key = "b" * 40
    await store.awrite(StoreBatch(messages=[MessageRow(key, "Message", json_text)]))
    with pytest.raises(ValueError, match=rf"the stored message '{key}' \(Message\) {problem}"):
        await store.aload_message(key)


async def test_a_name_two_modules_share_is_a_lookup_error_until_one_is_registered(store: RecordingStore) -> None:
    # (it loaded silently as a generic message, neither of the two classes)
    async with MiniAgents():
        twin = LoadingTwin("t", side="there")
        store.observer().record_message(twin)
        await store.aflush()
    with pytest.raises(LookupError) as raised:
        await store.aload_message(twin.hash_key)
    text = str(raised.value)
    assert twin.hash_key in text and "somewhere.else.LoadingTwin" in text and f"{__name__}.LoadingTwin" in text
    assert "MessageRegistry" in text
    loaded = await store.aload_message(twin.hash_key, MessageRegistry([LoadingTwin]))
    assert type(loaded) is LoadingTwin and loaded == twin
    assert type(await store.aload_message(twin.hash_key, MessageRegistry([_OTHER_TWIN]))) is _OTHER_TWIN


async def test_a_class_defined_again_in_its_module_loads_as_the_newest_definition(store: RecordingStore) -> None:
    # (both definitions counted: the name was ambiguous, and the message loaded as a generic one)
    assert _FIRST_DEFINITION is not LoadingRedefined and _FIRST_DEFINITION.__qualname__ == LoadingRedefined.__qualname__
    async with MiniAgents():
        message = LoadingRedefined("new")
        store.observer().record_message(message)
        await store.aflush()
    loaded = await store.aload_message(message.hash_key)
    assert type(loaded) is LoadingRedefined and loaded == message and loaded.version == 2  # type: ignore[attr-defined]


async def test_messages_nested_deeper_than_the_recursion_limit_allows_load(tmp_path: Path) -> None:
    # (loading took two Python frames per level of nesting: a RecursionError at about 500 levels)
    depth = sys.getrecursionlimit() // 2 + 100
    rows = []
    message = Message("leaf")
    rows.append(MessageRow(message.hash_key, "Message", message.serialized))
    for level in range(depth):
        message = Message(f"level {level}", previous=message)
        rows.append(MessageRow(message.hash_key, "Message", message.serialized))  # (each key from the one before)
    store = SQLiteMessageStore(tmp_path / "deep.db")
    try:
        await store.awrite(StoreBatch(messages=rows))
        loaded = await store.aload_message(message.hash_key)
    finally:
        await store.aclose()
    assert loaded.hash_key == message.hash_key
    for _ in range(depth):
        loaded = loaded.previous  # type: ignore[attr-defined]
    assert loaded == Message("leaf")


async def test_store_history_agent_takes_one_file_under_two_spellings_as_one_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ("chat.db" and "./chat.db" made two store objects on one file: the second was refused the history it
    # shares with the first, as if another process wrote it)
    from miniagents.store import store_history_agent

    monkeypatch.chdir(tmp_path)
    async with MiniAgents():
        await store_history_agent.fork(store="spelled.db", history_id="h").inquire(Message("one"))
        replies = await store_history_agent.fork(store="./spelled.db", history_id="h").inquire(Message("two"))
        also = await store_history_agent.fork(store=tmp_path / "spelled.db", history_id="h").inquire(Message("3"))
    assert [m.text for m in replies] == ["one", "two"]
    assert [m.text for m in also] == ["one", "two", "3"]
