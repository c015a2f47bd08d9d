"""The paths a reply can take (benchmarks issue): single messages go straight into the reply sequence, anything
that needs flattening over time goes through a driver task, and both must keep the same order and error semantics.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from miniagents import (
    AgentCall,
    AgentCallCancelledError,
    InteractionContext,
    Message,
    MessagePromise,
    MiniAgents,
    RunObserver,
    miniagent,
)
from miniagents.messages import MessageSequence
from miniagents.promising.ext.frozen import Frozen


@miniagent
async def two_agent(ctx: InteractionContext) -> None:
    ctx.reply("two")


@miniagent
async def mixed_agent(ctx: InteractionContext) -> None:
    ctx.reply("one")  # straight into the sequence
    ctx.reply(two_agent.inquire())  # needs flattening over time: the driver takes over from here
    ctx.reply("three")  # queues up behind the nested sequence
    await asyncio.sleep(0.01)
    ctx.reply(Message("four"))  # the driver waits at the top level again: straight in
    ctx.reply(["five", Message.promise(text="six")])


async def test_mixed_replies_keep_their_order(start_asap: object) -> None:
    async with MiniAgents():
        replies = mixed_agent.inquire(start_asap=start_asap)
        streamed = [(await promise).text async for promise in replies]
        assert streamed == ["one", "two", "three", "four", "five", "six"]
        assert [message.text for message in await replies] == streamed


async def test_observers_see_mixed_replies_in_order_on_both_paths(start_asap: object) -> None:
    # Single messages on the direct path are reported from there; once the driver takes over, the reply
    # sequence's piece hook reports them: the indices run on across the switch, each message promise once.
    seen: dict[str, list[tuple[int, MessagePromise]]] = {}

    class Replies(RunObserver):
        def on_call_reply(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
            seen.setdefault(call.agent_alias, []).append((index, message_promise))

    async with MiniAgents(observers=[Replies()]):
        replies = mixed_agent.inquire(start_asap=start_asap)
        streamed = [promise async for promise in replies]
        await replies
    reported = seen["MIXED_AGENT"]
    assert [index for index, _ in reported] == list(range(6))
    assert [promise for _, promise in reported] == streamed
    assert [(await promise).text for _, promise in reported] == ["one", "two", "three", "four", "five", "six"]
    assert [index for index, _ in seen["TWO_AGENT"]] == [0]


async def test_a_reply_streams_before_the_agent_returns(start_asap: object) -> None:
    gate = asyncio.Event()

    @miniagent
    async def slow_agent(ctx: InteractionContext) -> None:
        ctx.reply("first")
        await gate.wait()
        ctx.reply("second")

    async with MiniAgents():
        replies = slow_agent.inquire(start_asap=start_asap)
        iterator = replies.__aiter__()
        first = await asyncio.wait_for(iterator.__anext__(), 1)
        assert (await first).text == "first"
        gate.set()
        assert [message.text for message in await replies] == ["first", "second"]


async def test_replies_then_an_error_then_nothing(start_asap: object, caplog: pytest.LogCaptureFixture) -> None:
    error = ValueError("boom")

    @miniagent
    async def failing_agent(ctx: InteractionContext) -> None:
        ctx.reply("before")
        raise error

    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents():
            replies = failing_agent.inquire(start_asap=start_asap)
            seen = []
            with pytest.raises(ValueError) as raised:
                async for promise in replies:
                    seen.append((await promise).text)
            assert raised.value is error
            assert seen == ["before"]
            with pytest.raises(ValueError) as again:
                await replies
            assert again.value is error
    assert not any(record.exc_info is not None and record.exc_info[1] is error for record in caplog.records)


async def test_an_exception_replied_ends_the_sequence(start_asap: object) -> None:
    error = KeyError("stop here")

    @miniagent
    async def agent(ctx: InteractionContext) -> None:
        ctx.reply("kept")
        ctx.reply(error)
        ctx.reply("lost")

    async with MiniAgents():
        seen = []
        with pytest.raises(KeyError) as raised:
            async for promise in agent.inquire(start_asap=start_asap):
                seen.append((await promise).text)
        assert raised.value is error
        assert seen == ["kept"]


async def test_a_consumer_cancelled_while_resolving_leaves_the_work_to_the_background() -> None:
    gate = asyncio.Event()

    @miniagent
    async def agent(ctx: InteractionContext) -> None:
        async def tokens(_: dict[str, object]):  # type: ignore[no-untyped-def]
            await gate.wait()
            yield "done"

        ctx.reply(Message.promise(message_token_streamer=tokens))

    async with MiniAgents():
        replies = agent.inquire()
        waiting = asyncio.ensure_future(replies.aresolve())
        await asyncio.sleep(0.01)  # the agent has returned; the sequence waits for its message
        waiting.cancel()
        await asyncio.sleep(0)
        gate.set()
    assert replies.is_resolved
    assert [message.text for message in await replies] == ["done"]


async def test_finished_calls_are_freed_without_the_garbage_collector() -> None:
    """A finished inquiry keeps no reference cycles alive except message <-> its `as_promise` (by design)."""
    async with MiniAgents():
        await two_agent.inquire("hello")
        gc.collect()
        gc.disable()
        try:
            gc.set_debug(gc.DEBUG_SAVEALL)
            for _ in range(20):
                await two_agent.inquire("hello")
            gc.collect()
            leaked = {type(obj).__name__ for obj in gc.garbage} - {"Message", "MessagePromise", "list", "dict", "set"}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert not {"AgentCall", "InteractionContext", "MessageSequencePromise", "StreamAppender"} & leaked


def test_a_text_only_message_is_what_validation_makes() -> None:
    fast = Message("héllo")
    validated = Message.__new__(Message)
    Frozen.__init__(validated, text="héllo")  # type: ignore[call-arg]  # through pydantic validation
    for name in ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__"):
        assert getattr(fast, name) == getattr(validated, name)
    assert list(fast.__dict__) == list(validated.__dict__)
    assert fast == validated and hash(fast) == hash(validated) and fast.hash_key == validated.hash_key
    assert str(fast) == "héllo" and fast.full_json == validated.full_json and repr(fast) == repr(validated)
    assert Message(text="x", role="user").role == "user"  # other fields: the validated way  # type: ignore[attr-defined]


async def test_resolved_promises_are_awaited_without_a_resolver_run() -> None:
    error = RuntimeError("stored")
    async with MiniAgents():
        promise = MessagePromise(prefill_message=Message("ready"))
        assert (await promise).text == "ready"
        sequence = MessageSequence.turn_into_sequence_promise([error])
        for _ in range(2):
            with pytest.raises(RuntimeError) as raised:
                await sequence
            assert raised.value is error


@pytest.mark.parametrize("how", ["return", "finish_early", "raise", "cancel"])
async def test_replies_still_streaming_at_the_end_are_resolved_in_the_background(how: str) -> None:
    gate = asyncio.Event()
    resolved: list[object] = []

    async def tokens(_: dict[str, object]):  # type: ignore[no-untyped-def]
        await gate.wait()
        yield "late"

    @miniagent
    async def agent(ctx: InteractionContext) -> None:
        ctx.reply(Message.promise(message_token_streamer=tokens))
        if how == "finish_early":
            ctx.finish_early()
            await asyncio.sleep(0.05)
        elif how == "raise":
            raise ValueError("after the reply")
        elif how == "cancel":
            await asyncio.sleep(10)

    async def on_resolved(promise: object, result: object) -> None:
        if promise is replies:
            resolved.append(result)

    async with MiniAgents(on_promise_resolved=on_resolved):
        replies = agent.inquire()
        await asyncio.sleep(0.01)
        if how == "cancel":  # the call, with the message it still streams
            replies.cancel()
            await asyncio.sleep(0)
        gate.set()
    if how == "cancel":  # the replies end with the cancellation (an error, never a CancelledError)
        assert len(resolved) == 1 and isinstance(resolved[0], AgentCallCancelledError)
        return
    assert len(resolved) == 1
    if how == "raise":
        assert isinstance(resolved[0], ValueError)
    else:
        assert [message.text for message in resolved[0]] == ["late"]  # type: ignore[attr-defined]
