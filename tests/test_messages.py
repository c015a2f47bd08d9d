from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniagents import Message, MessagePromise, MessageSequence, MiniAgents
from miniagents.utils import join_messages


def test_message_hash_vectors_and_nested_references() -> None:
    m1, m2, m3 = Message(text="nested_text"), Message(text="nested_text2"), Message(text="nested_text3")
    assert m1.hash_key == "47e977f85cff13ea8980cf3d76959caec8a4984a"
    assert m2.hash_key == "91868c8c8398b49deb9a04a73c4ea95bdb2eaa65"
    assert m3.hash_key == "25a897f6457abf51fad6a28d86905918bb610038"
    message = Message(text="root", child=m3, extra_field=[15, {"role": "user", "nested_nested": (m1, m2)}])
    serialized = message.serialize()
    assert serialized["child__hash_key"] == m3.hash_key
    assert serialized["extra_field"] == (
        15,
        {"class_": "Frozen", "role": "user", "nested_nested__hash_keys": (m1.hash_key, m2.hash_key)},
    )
    assert list(message.sub_messages()) == [m3, m1, m2]


def test_mixed_tuples_reference_only_the_messages() -> None:
    m1 = Message(text="a")
    message = Message(items=["plain", m1, {"k": 1}])
    assert message.serialize()["items__hash_keys"] == ("plain", m1.hash_key, {"class_": "Frozen", "k": 1})


def test_message_string_forms() -> None:
    assert str(Message("hi", role="user")) == "hi"
    assert Message("hi").text == "hi"
    assert str(Message(text_template="Hi {name}", name="Bob")) == "Hi Bob"
    assert str(Message(role="user")) == '{"class_":"Message","text":null,"text_template":null,"role":"user"}'


async def test_as_promise_is_cached_and_resolved() -> None:
    async with MiniAgents():
        message = Message(text="x")
        assert message.as_promise is message.as_promise
        assert await message.as_promise is message
        assert [token async for token in message.as_promise] == ["x"]
        promise = Message.promise(text="msg10", x=10)
        assert (await promise).x == 10  # type: ignore[attr-defined]


async def test_streamed_message_promise(start_asap: object) -> None:
    seen_metadata: list[dict[str, Any]] = []

    async def streamer(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        seen_metadata.append(dict(metadata_so_far))
        yield "Hel"
        yield "lo"
        metadata_so_far["finish_reason"] = "stop"
        metadata_so_far["role"] = "overridden?"

    async with MiniAgents():
        promise = Message.promise(start_asap=start_asap, message_token_streamer=streamer, role="assistant")
        assert promise.preliminary_metadata.role == "assistant"  # type: ignore[attr-defined]
        assert [token async for token in promise] == ["Hel", "lo"]
        message = await promise
        assert message.text == "Hello"
        assert message.finish_reason == "stop"  # type: ignore[attr-defined]
        assert message.role == "assistant"  # type: ignore[attr-defined]  # preliminary metadata wins
        assert seen_metadata == [{"role": "assistant"}]


async def test_streamer_putting_text_into_metadata_is_an_error() -> None:
    async def streamer(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        metadata_so_far["text"] = "nope"
        yield "x"

    async with MiniAgents(log_level_for_errors=logging.DEBUG):
        with pytest.raises(ValueError, match="'text'"):
            await MessagePromise(message_token_streamer=streamer)


async def test_no_tokens_give_empty_text() -> None:
    async def streamer(_: dict[str, Any]) -> AsyncIterator[str]:
        return
        yield  # pragma: no cover

    async with MiniAgents():
        assert (await MessagePromise(message_token_streamer=streamer)).text == ""


async def test_sequence_await_replay_and_single_promise(start_asap: object) -> None:
    async with MiniAgents():
        sequence = MessageSequence(start_asap=start_asap)
        with sequence.message_appender:  # type: ignore[union-attr]
            sequence.message_appender.append(["one", {"text": "two", "role": "user"}])  # type: ignore[union-attr]
        promise = sequence.sequence_promise
        messages = await promise
        assert messages is await promise
        assert messages is await promise.aresolve_messages()
        assert [m.text for m in messages] == ["one", "two"]
        assert [str(await mp) async for mp in promise] == ["one", "two"]
        single = promise.as_single_promise()
        assert [token async for token in single] == ["one", "\n\n", "two"]
        assert (await single).text == "one\n\ntwo"


async def test_turn_into_sequence_promise_passes_promises_through() -> None:
    async with MiniAgents():
        promise = MessageSequence.turn_into_sequence_promise(["a", "b"])
        assert MessageSequence.turn_into_sequence_promise(promise) is promise
        with pytest.raises(TypeError, match="Unexpected message type"):
            MessageSequence.turn_into_sequence_promise(["a", None])  # type: ignore[list-item]


async def test_join_messages() -> None:
    async with MiniAgents():
        joined = join_messages(["Hello", "World"], delimiter=" ")
        assert [token async for token in joined] == ["Hello", " ", "World"]
        message = await joined
        assert message.text == "Hello World"
        assert [m.text for m in message.original_messages] == ["Hello", "World"]  # type: ignore[attr-defined]
        empty = await join_messages([])
        assert empty.text == "" and empty.original_messages == ()  # type: ignore[attr-defined]
        with_metadata = join_messages(
            [Message("a", role="user", x=1), Message("\n\nb", x=2)],
            role="joined",
            strip_leading_newlines=True,
            delimiter="|",
        )
        assert with_metadata.preliminary_metadata.role == "joined"  # type: ignore[attr-defined]
        joined_message = await with_metadata
        assert joined_message.text == "a|b"
        assert joined_message.x == 2 and joined_message.role == "joined"  # type: ignore[attr-defined]


async def test_freezing_at_submission_ignores_later_mutation() -> None:
    async with MiniAgents():
        sequence = MessageSequence()
        items = ["a"]
        with sequence.message_appender:  # type: ignore[union-attr]
            from miniagents.messages import freeze_message_type

            sequence.message_appender.append(freeze_message_type(items))  # type: ignore[union-attr]
            items.append("b")
        assert [m.text for m in await sequence.sequence_promise] == ["a"]
    await asyncio.sleep(0)


@given(st.text())
def test_a_text_only_message_serializes_as_the_json_encoder_does(text: str) -> None:
    # `Message.serialized` writes the JSON of text-only messages itself; the hash keys must not change.
    message = Message(text)
    expected = json.dumps(message.serialize(), ensure_ascii=False, sort_keys=True)
    assert message.serialized == expected
    assert message.hash_key == hashlib.sha256(expected.encode("utf-8")).hexdigest()[:40]


class _ReplyWithAttachment(Message):  # (module level: pickle finds classes by name)
    attachment: Message


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
async def test_a_message_used_in_a_run_pickles_and_copies_with_fresh_caches(how: str) -> None:
    persisted = asyncio.Event()

    async def persist(_promise: Any, message: Message) -> None:
        if message.text == "hi":
            persisted.set()

    async with MiniAgents(on_persist_message=persist) as context:
        original = _ReplyWithAttachment(text="hi", attachment=Message("a", role="user"), tags=("x", {"k": 1}))
        promise = original.as_promise
        assert await promise is original
        async with asyncio.timeout(5):
            await persisted.wait()  # the persist worker runs in the background
        assert original.persisted_by(context)
        copied = {
            "pickle": lambda: pickle.loads(pickle.dumps(original)),
            "copy": lambda: copy.copy(original),
            "deepcopy": lambda: copy.deepcopy(original),
        }[how]()
        assert copied == original and copied is not original
        assert copied.hash_key == original.hash_key and str(copied) == "hi"
        assert copied.attachment == original.attachment and copied.tags == original.tags  # type: ignore[attr-defined]
        assert not copied.persisted_by(context)  # a different instance: persisted once of its own
        assert copied.as_promise is not promise and await copied.as_promise is copied  # its own promise
        assert original.as_promise is promise
