"""Cancellation: `cancel()`, scoped inquiries, consumers that are cancelled, and what persistence records."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from miniagents import (
    AgentCallCancelledError,
    AgentCallStatus,
    AgentReplyNode,
    InteractionContext,
    Message,
    MessagePromise,
    MiniAgents,
    MiniAgentsError,
    RunObserver,
    WorkCancelledError,
    miniagent,
)


class Steps:
    """Counts the steps of slow work and lets a test wait until some have happened."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.changed = asyncio.Event()

    def step(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        self.changed.set()

    async def wait_for(self, name: str, count: int) -> None:
        while self.counts.get(name, 0) < count:
            self.changed.clear()
            await self.changed.wait()


def slow_tokens(steps: Steps, name: str, count: int = 300, prefix: str = "t") -> Any:
    async def tokens(_: dict[str, Any]) -> Any:
        for index in range(count):
            steps.step(name)
            await asyncio.sleep(0.001)
            yield f"{prefix}{index} "

    return tokens


def tree(steps: Steps) -> Any:
    """A parent that streams a message of its own and replies a child's streamed message."""

    @miniagent
    async def child(ctx: InteractionContext) -> None:
        ctx.reply(Message.promise(message_token_streamer=slow_tokens(steps, "child")))

    @miniagent
    async def parent(ctx: InteractionContext) -> None:
        ctx.reply("done first")
        ctx.reply(child.inquire())
        for _ in range(300):
            steps.step("parent")
            await asyncio.sleep(0.001)

    return parent


async def test_cancel_stops_the_agent_and_its_sub_agents_and_keeps_what_was_complete() -> None:
    steps = Steps()
    parent = tree(steps)
    async with asyncio.timeout(10), MiniAgents():
        replies = parent.inquire()
        await steps.wait_for("child", 3)
        replies.cancel()
        received: list[str] = []
        with pytest.raises(AgentCallCancelledError) as raised:
            async for message_promise in replies:
                received.append((await message_promise).text or "")
        assert received == ["done first"]
        assert isinstance(raised.value, MiniAgentsError) and not isinstance(raised.value, asyncio.CancelledError)
        with pytest.raises(AgentCallCancelledError):
            await replies
    assert steps.counts["parent"] < 20 and steps.counts["child"] < 20


async def test_a_message_cut_mid_stream_raises_from_its_tokens_and_its_await() -> None:
    steps = Steps()

    @miniagent
    async def streaming(ctx: InteractionContext) -> None:
        ctx.reply(Message.promise(message_token_streamer=slow_tokens(steps, "tokens")))

    async with asyncio.timeout(10), MiniAgents():
        replies = streaming.inquire()
        message_promise = await anext(aiter(replies))
        tokens = []
        with pytest.raises(AgentCallCancelledError):
            async for token in message_promise:
                tokens.append(token)
                if len(tokens) == 3:
                    replies.cancel()
        assert tokens[:3] == ["t0 ", "t1 ", "t2 "] and len(tokens) <= 4
        with pytest.raises(AgentCallCancelledError):
            await message_promise
        replayed = []
        with pytest.raises(AgentCallCancelledError):
            async for token in message_promise:
                replayed.append(token)
        assert replayed == tokens  # the tokens before the cut stay available


async def test_from_cancel_to_the_last_token_is_at_most_one_event_loop_iteration() -> None:
    yielded: list[int] = []

    async def tokens(_: dict[str, Any]) -> Any:
        index = 0
        while True:
            yielded.append(index)
            yield str(index)
            index += 1
            await asyncio.sleep(0)

    @miniagent
    async def streaming(ctx: InteractionContext) -> None:
        ctx.reply(Message.promise(message_token_streamer=tokens))

    async with asyncio.timeout(10), MiniAgents():
        replies = streaming.inquire()
        while len(yielded) < 5:  # noqa: ASYNC110 - counting event-loop iterations is the point here
            await asyncio.sleep(0)
        replies.cancel()
        before = len(yielded)
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(yielded) - before <= 1


async def test_cancel_twice_or_after_the_end_does_nothing() -> None:
    @miniagent
    async def quick(ctx: InteractionContext) -> None:
        ctx.reply("ok")

    async with MiniAgents():
        agent_call = quick.initiate_inquiry()
        replies = agent_call.reply_sequence()
        assert [message.text for message in await replies] == ["ok"]
        await asyncio.sleep(0.01)  # (the function returns, then the call ends)
        assert agent_call.status is AgentCallStatus.FINISHED
        agent_call.cancel()
        replies.cancel()
        assert agent_call.status is AgentCallStatus.FINISHED
        assert [message.text for message in await replies] == ["ok"]

        steps = Steps()
        slow = tree(steps).initiate_inquiry()
        slow_replies = slow.reply_sequence()
        await steps.wait_for("parent", 1)
        slow.cancel()
        slow.cancel()
        slow_replies.cancel()
        with pytest.raises(AgentCallCancelledError) as raised:
            await slow_replies
    assert slow.status is AgentCallStatus.CANCELLED and slow.error is not None
    assert raised.value.agent_alias in {"PARENT", "CHILD"}


async def test_a_lazy_call_cancelled_before_it_started_never_runs() -> None:
    ran = []

    @miniagent
    async def lazy(ctx: InteractionContext) -> None:
        ran.append(True)
        ctx.reply("never")

    async with MiniAgents():
        agent_call = lazy.initiate_inquiry(start_asap=False)
        replies = agent_call.reply_sequence()
        agent_call.cancel()
        with pytest.raises(AgentCallCancelledError):
            await replies
    assert ran == [] and agent_call.status is AgentCallStatus.CANCELLED


@pytest.mark.parametrize("how", ["break", "exception", "timeout"])
async def test_leaving_a_scoped_inquiry_cancels_it(how: str) -> None:
    steps = Steps()
    parent = tree(steps)
    async with asyncio.timeout(10), MiniAgents():
        if how == "break":
            async with parent.inquire() as replies:
                async for _ in replies:
                    break
        elif how == "exception":
            with pytest.raises(KeyError):
                async with parent.inquire() as replies:
                    await steps.wait_for("child", 2)
                    raise KeyError("leave")
        else:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05), parent.inquire() as replies:
                    await replies
        with pytest.raises(AgentCallCancelledError):
            await replies
    assert steps.counts["parent"] < 100


async def test_without_async_with_the_work_runs_to_the_end_as_fire_and_forget() -> None:
    steps = Steps()
    parent = tree(steps)
    async with asyncio.timeout(20), MiniAgents():
        replies = parent.inquire()
        for message_promise in [await anext(aiter(replies))]:
            assert (await message_promise).text == "done first"
    assert steps.counts == {"parent": 300, "child": 300}
    assert len((await replies)[1].text or "") > 0


async def test_a_scoped_inquiry_that_finished_is_not_cancelled() -> None:
    @miniagent
    async def quick(ctx: InteractionContext) -> None:
        ctx.reply("ok")

    async with MiniAgents():
        async with quick.inquire() as replies:
            assert [message.text for message in await replies] == ["ok"]
        assert [message.text for message in await replies] == ["ok"]


@pytest.mark.parametrize("lazy_message", [True, False])
async def test_a_cancelled_consumer_never_truncates_a_message(lazy_message: bool) -> None:
    steps = Steps()
    async with asyncio.timeout(10), MiniAgents():
        message_promise = MessagePromise(
            start_asap=not lazy_message, message_token_streamer=slow_tokens(steps, "tokens", count=50)
        )
        first_tokens: list[str] = []

        async def pulling() -> None:
            async for token in message_promise:
                first_tokens.append(token)

        puller = asyncio.create_task(pulling())
        await steps.wait_for("tokens", 5)
        puller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await puller
        other = [token async for token in message_promise]
        assert other == [f"t{index} " for index in range(50)]
        assert (await message_promise).text == "".join(other)
        assert first_tokens == other[: len(first_tokens)]


async def test_a_lazy_inquiry_whose_consumer_timed_out_stays_whole_and_is_persisted_whole() -> None:
    persisted: list[Message] = []

    async def persist(_: Any, message: Message) -> None:
        persisted.append(message)

    @miniagent
    async def twenty(ctx: InteractionContext) -> None:
        for index in range(20):
            await asyncio.sleep(0.002)
            ctx.reply(f"m{index}")

    async with asyncio.timeout(10), MiniAgents(on_persist_message=persist, start_everything_asap_by_default=False):
        replies = twenty.inquire()
        received = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                async for message_promise in replies:
                    received.append((await message_promise).text)
        assert 0 < len(received) < 20
        assert [message.text for message in await replies] == [f"m{index}" for index in range(20)]
    (reply_node,) = [message for message in persisted if isinstance(message, AgentReplyNode)]
    assert len(reply_node.replies) == 20 and not getattr(reply_node, "cancelled", False)


async def test_a_cancelled_call_is_persisted_as_cancelled_with_the_replies_it_completed() -> None:
    persisted: list[Message] = []

    async def persist(_: Any, message: Message) -> None:
        persisted.append(message)

    steps = Steps()
    parent = tree(steps)
    async with asyncio.timeout(10), MiniAgents(on_persist_message=persist):
        replies = parent.inquire()
        await steps.wait_for("child", 2)
        replies.cancel()
    nodes = {node.agent_alias: node for node in persisted if isinstance(node, AgentReplyNode)}
    assert nodes["PARENT"].cancelled is True  # type: ignore[attr-defined]
    assert [message.text for message in nodes["PARENT"].replies] == ["done first"]
    assert nodes["CHILD"].cancelled is True and nodes["CHILD"].replies == ()  # type: ignore[attr-defined]


async def test_observers_see_each_call_start_reply_and_end_with_its_status() -> None:
    events: list[tuple[str, str, Any]] = []

    class Recorder(RunObserver):
        def on_call_started(self, call: Any) -> None:
            parent = call.parent_call.agent_alias if call.parent_call else None
            events.append(("started", call.agent_alias, parent))

        def on_call_input(self, call: Any, index: int, message_promise: MessagePromise) -> None:
            events.append(("input", call.agent_alias, index))

        def on_call_reply(self, call: Any, index: int, message_promise: MessagePromise) -> None:
            events.append(("reply", call.agent_alias, index))

        def on_call_ended(self, call: Any) -> None:
            events.append(("ended", call.agent_alias, call.status))

    @miniagent
    async def inner(ctx: InteractionContext) -> None:
        ctx.reply(f"inner got {len(await ctx.message_promises)}")

    @miniagent
    async def outer(ctx: InteractionContext) -> None:
        ctx.reply(inner.inquire(["a", "b"]))
        raise ValueError("after the reply")

    async with MiniAgents(observers=[Recorder()]):
        with pytest.raises(ValueError):
            await outer.inquire("x")
    assert events.index(("started", "OUTER", None)) < events.index(("started", "INNER", "OUTER"))
    assert [event for event in events if event[1] == "INNER"] == [
        ("started", "INNER", "OUTER"),
        ("input", "INNER", 0),
        ("input", "INNER", 1),
        ("reply", "INNER", 0),
        ("ended", "INNER", AgentCallStatus.FINISHED),
    ]
    assert ("input", "OUTER", 0) in events and ("reply", "OUTER", 0) in events
    assert events[-1] == ("ended", "OUTER", AgentCallStatus.FAILED)


async def test_cancellation_errors_are_one_tree() -> None:
    assert issubclass(AgentCallCancelledError, WorkCancelledError)
    assert issubclass(WorkCancelledError, MiniAgentsError) and issubclass(MiniAgentsError, Exception)
    assert not issubclass(AgentCallCancelledError, asyncio.CancelledError)


async def test_only_the_events_an_observer_defines_are_delivered() -> None:
    ended: list[str] = []

    class EndsOnly(RunObserver):
        def on_call_ended(self, call: Any) -> None:
            ended.append(call.agent_alias)

    @miniagent
    async def echo(ctx: InteractionContext) -> None:
        ctx.reply(await ctx.message_promises)

    observer = EndsOnly()
    async with MiniAgents(observers=[observer]) as context:
        agent_call = echo.initiate_inquiry()
        assert [message.text for message in await agent_call.send_message(["a", "b"]).reply_sequence()] == ["a", "b"]
        methods = context.call_started(agent_call)  # (what a new call would be watched by)
        assert methods is not None and methods.ended == (observer.on_call_ended,)
        assert methods.started == methods.input == methods.reply == ()
    assert ended == ["ECHO"]


async def test_an_observed_call_is_let_go_when_it_ends_though_its_replies_are_kept() -> None:
    started: list[weakref.ref[Any]] = []
    seen: list[tuple[str, int]] = []

    class Watching(RunObserver):
        def on_call_started(self, call: Any) -> None:
            started.append(weakref.ref(call))

        def on_call_input(self, call: Any, index: int, message_promise: MessagePromise) -> None:
            seen.append(("input", index))

        def on_call_reply(self, call: Any, index: int, message_promise: MessagePromise) -> None:
            seen.append(("reply", index))

    @miniagent
    async def echo(ctx: InteractionContext) -> None:
        ctx.reply(await ctx.message_promises)

    async with MiniAgents(observers=[Watching()]):
        replies = echo.inquire(["a", "b"])
        assert [message.text for message in await replies] == ["a", "b"]
    assert seen == [("input", 0), ("input", 1), ("reply", 0), ("reply", 1)]
    gc.collect()
    assert started[0]() is None  # its reply sequence (still held) no longer refers to it through the hooks
    assert [message.text for message in await replies] == ["a", "b"]


@pytest.mark.parametrize("isolated", [True, False])
async def test_an_isolated_observers_task_outlives_the_call_that_triggered_it(isolated: bool) -> None:
    outcomes: list[str] = []

    class Starting(RunObserver):
        def on_call_started(self, call: Any) -> None:
            if call.agent_alias == "CHILD":  # (made inside the parent's task: the parent's scope is current)

                async def work() -> None:
                    try:
                        await asyncio.sleep(0.05)
                        outcomes.append("done")
                    except asyncio.CancelledError:
                        outcomes.append("cancelled")
                        raise

                MiniAgents.get_current().start_asap(work())

    Starting.isolated = isolated

    @miniagent
    async def child(ctx: InteractionContext) -> None:
        await asyncio.sleep(60)

    @miniagent
    async def parent(ctx: InteractionContext) -> None:
        ctx.reply(child.inquire())
        await asyncio.sleep(60)

    async with asyncio.timeout(10), MiniAgents(observers=[Starting()]):
        replies = parent.inquire()
        await asyncio.sleep(0.01)
        replies.cancel()
    assert outcomes == (["done"] if isolated else ["cancelled"])  # not isolated: it ran in the parent's scope


@pytest.mark.parametrize("left_by", ["return", "error", "cancellation"])
async def test_leaving_a_context_awaits_its_own_observers_exit_hooks_after_its_work(
    left_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    class Finishing(RunObserver):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_call_ended(self, call: Any) -> None:
            events.append(f"{self.name}: {call.agent_alias} {call.status.value}")

        async def aon_context_exit(self) -> None:
            await asyncio.sleep(0.01)
            events.append(f"{self.name}: exit")
            if self.name == "broken":
                raise OSError("disk full")

    @miniagent
    async def slow(ctx: InteractionContext) -> None:
        await asyncio.sleep(0.05 if left_by != "cancellation" else 60)

    async def run() -> None:
        async with MiniAgents(observers=[Finishing("outer")]):
            async with MiniAgents(observers=[Finishing("broken"), Finishing("inner")]):
                slow.inquire()
                if left_by == "error":
                    raise ValueError("left")
                if left_by == "cancellation":
                    await asyncio.sleep(60)
            events.append("inner left")

    async with asyncio.timeout(10):
        task = asyncio.create_task(run())
        if left_by == "cancellation":
            await asyncio.sleep(0.02)
            task.cancel()
        if left_by == "return":
            await task
        else:
            with pytest.raises(ValueError if left_by == "error" else asyncio.CancelledError):
                await task
    ended = "cancelled" if left_by == "cancellation" else "finished"
    # each context awaits its own observers' hooks, in their order, after its calls ended (not its parents')
    assert events == [
        f"broken: SLOW {ended}",
        f"inner: SLOW {ended}",
        f"outer: SLOW {ended}",
        "broken: exit",
        "inner: exit",
        *(["inner left"] if left_by == "return" else []),
        "outer: exit",
    ]
    assert "aon_context_exit" in caplog.text and "disk full" in caplog.text  # logged; the others ran all the same


@pytest.mark.parametrize("start_asap", [True, False])
async def test_a_call_cancelled_before_its_function_ran_never_runs_it_and_ends_cancelled(start_asap: bool) -> None:
    events: list[str] = []

    class Watcher(RunObserver):
        def on_call_input(self, call: Any, index: int, message_promise: MessagePromise) -> None:
            events.append("input")

        def on_call_entered(self, call: Any) -> None:
            events.append("entered")

        def on_call_ended(self, call: Any) -> None:
            events.append(f"ended {call.status.value}")

    @miniagent
    async def side_effect_agent(ctx: InteractionContext) -> None:
        events.append("the function ran")
        await ctx.message_promises
        ctx.reply("done")

    async with MiniAgents(observers=[Watcher()]):
        replies = side_effect_agent.inquire("hi", start_asap=start_asap)
        replies.cancel()
        with pytest.raises(AgentCallCancelledError):
            await replies
    # (the input may be reported: it was given; the call's end comes after it)
    assert [event for event in events if event != "input"] == ["ended cancelled"]
