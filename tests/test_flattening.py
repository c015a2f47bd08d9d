from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniagents import InteractionContext, Message, MessageSequence, MiniAgents, RunObserver, miniagent
from miniagents.messages import MessagePromise, MessageSequencePromise


def make_sequence(items: Any, start_asap: object) -> MessageSequencePromise:
    sequence = MessageSequence(start_asap=start_asap)
    with sequence.message_appender:  # type: ignore[union-attr]
        sequence.message_appender.append(items)  # type: ignore[union-attr]
    return sequence.sequence_promise


async def texts_and_tokens(promise: MessageSequencePromise) -> tuple[list[str], list[str]]:
    texts, tokens = [], []
    async for message_promise in promise:
        tokens.append("".join([token async for token in message_promise]))
        texts.append((await message_promise).text)
    return texts, tokens


async def test_nested_hierarchy_flattens_in_order(start_asap: object) -> None:
    async with MiniAgents():

        def generator() -> Any:
            yield "msg7"
            yield make_sequence(["msg8"], start_asap)

        async def async_generator() -> AsyncIterator[Any]:
            yield {"text": "msg9"}
            yield [Message.promise(text="msg10", x=10)]

        inner = make_sequence(["msg4", [{"text": "msg5"}, Message(text="msg6")]], start_asap)
        promise = make_sequence(
            ["msg1", {"text": "msg2"}, [Message(text="msg3"), inner], generator(), async_generator()], start_asap
        )
        texts, tokens = await texts_and_tokens(promise)
        expected = [f"msg{number}" for number in range(1, 11)]
        assert texts == tokens == expected
        assert [message.text for message in await promise] == expected


async def test_error_in_inner_sequence_surfaces_after_earlier_messages(start_asap: object) -> None:
    async with MiniAgents(log_level_for_errors=logging.DEBUG):
        inner = make_sequence(["msg3", ValueError("inner failure"), "lost"], start_asap)
        promise = make_sequence(["msg1", "msg2", inner, "msg4"], start_asap)
        received = []
        with pytest.raises(ValueError, match="inner failure"):
            async for message_promise in promise:
                received.append((await message_promise).text)
        assert received == ["msg1", "msg2", "msg3"]
        with pytest.raises(ValueError, match="inner failure"):
            await promise


@miniagent
async def long_history_agent(ctx: InteractionContext) -> None:
    history = tuple(Message(text=f"h{index}") for index in range(500))
    ctx.reply((*history, Message(text="h500").as_promise, "tail", [Message(text="nested")], ValueError("stop"), "lost"))


async def test_a_long_tuple_reaches_consumers_and_observers_message_by_message(start_asap: object) -> None:
    # A collection of ready messages is taken in one step (see `_Flattener._next_batch_nowait`): every consumer
    # and every reply hook still sees each message in order, and an error in it ends the sequence at its place.
    seen: list[tuple[int, MessagePromise]] = []

    class Replies(RunObserver):
        def on_call_reply(self, call: Any, index: int, message_promise: MessagePromise) -> None:
            seen.append((index, message_promise))

    expected = [f"h{index}" for index in range(501)] + ["tail", "nested"]
    async with MiniAgents(observers=[Replies()], log_level_for_errors=logging.DEBUG):
        replies = long_history_agent.inquire(start_asap=start_asap)
        received = []
        with pytest.raises(ValueError, match="stop"):
            async for message_promise in replies:
                received.append((await message_promise).text)
        assert received == expected
        with pytest.raises(ValueError, match="stop"):
            await replies
        assert [index for index, _ in seen] == list(range(len(expected)))
        assert [(await message_promise).text for _, message_promise in seen] == expected


async def test_a_failed_message_among_ready_ones_raises_its_error_when_the_sequence_is_awaited(
    start_asap: object,
) -> None:
    # Awaiting a sequence takes the results of resolved message promises directly (see
    # `MessageSequencePromise._resolver`); a message promise that failed still raises its own error, at its place.
    async def failing_streamer(_: Any) -> AsyncIterator[str]:
        yield "partial "
        raise ValueError("the stream broke")

    async with MiniAgents(log_level_for_errors=logging.DEBUG):
        failed = Message.promise(message_token_streamer=failing_streamer, start_asap=True)
        with pytest.raises(ValueError, match="the stream broke") as first:
            await failed
        ready = [Message(text=f"m{index}") for index in range(3)]
        promise = make_sequence((*ready, failed, Message(text="after")), start_asap)
        with pytest.raises(ValueError, match="the stream broke") as raised:
            await promise
        assert raised.value is first.value
        received = []
        with pytest.raises(ValueError, match="the stream broke"):
            async for message_promise in promise:
                received.append((await message_promise).text)
        assert received == ["m0", "m1", "m2"]


@miniagent
async def replying_agent(ctx: InteractionContext, texts: list[str]) -> None:
    ctx.reply(texts)


# A random MessageType tree. Leaves are tagged so the expected depth-first order can be computed.
LEAF_KINDS = ("str", "dict", "message", "agent")
CONTAINER_KINDS = ("list", "tuple", "generator", "async_generator", "sequence")

trees = st.recursive(
    st.tuples(st.sampled_from(LEAF_KINDS), st.integers(min_value=1, max_value=3)),
    lambda children: st.tuples(st.sampled_from(CONTAINER_KINDS), st.lists(children, max_size=4)),
    max_leaves=25,
)


class Builder:
    def __init__(self, start_asap: object) -> None:
        self.start_asap = start_asap
        self.counter = 0
        self.expected: list[str] = []

    def next_texts(self, count: int) -> list[str]:
        texts = [f"m{self.counter + index}" for index in range(count)]
        self.counter += count
        self.expected.extend(texts)
        return texts

    def build(self, node: Any) -> Any:
        kind, payload = node
        if kind == "str":
            return self.next_texts(1)[0]
        if kind == "dict":
            return {"text": self.next_texts(1)[0], "kind": "dict"}
        if kind == "message":
            return Message(text=self.next_texts(1)[0])
        if kind == "agent":
            return replying_agent.inquire(start_asap=self.start_asap, texts=self.next_texts(payload))
        children = [self.build(child) for child in payload]
        if kind == "list":
            return children
        if kind == "tuple":
            return tuple(children)
        if kind == "generator":
            return (child for child in children)
        if kind == "async_generator":

            async def agen() -> AsyncIterator[Any]:
                for child in children:
                    yield child

            return agen()
        return make_sequence(children, self.start_asap)


@pytest.mark.parametrize("start_asap_setting", [True, False])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_random_structures_flatten_depth_first(tree: Any, start_asap_setting: bool) -> None:
    async def scenario() -> None:
        builder = Builder(start_asap_setting)
        promise = make_sequence(builder.build(tree), start_asap_setting)
        texts, tokens = await texts_and_tokens(promise)
        assert texts == builder.expected
        assert tokens == builder.expected

    MiniAgents(start_everything_asap_by_default=start_asap_setting).run(scenario())
