from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from miniagents import (
    AgentCallNode,
    AgentReplyNode,
    InteractionContext,
    Message,
    MessagePromise,
    MiniAgents,
    Promise,
    miniagent,
)
from miniagents.promising.ext.frozen import Frozen


class Recorder:
    def __init__(self) -> None:
        self.resolved: list[Any] = []
        self.persisted: list[Message] = []

    async def on_resolved(self, promise: Any, result: Any) -> None:
        self.resolved.append(result)

    async def on_persist(self, promise: Any, message: Message) -> None:
        self.persisted.append(message)


async def run_with(recorder: Recorder, body: Any) -> None:
    context = MiniAgents(on_promise_resolved=recorder.on_resolved)

    @context.on_persist_message
    async def persist(promise: Any, message: Message) -> None:
        await recorder.on_persist(promise, message)

    async with context:
        body()


async def test_same_message_prefilled_twice_is_persisted_once() -> None:
    recorder = Recorder()
    message = Message()
    await run_with(recorder, lambda: [MessagePromise(prefill_message=message) for _ in range(2)])
    assert len(recorder.resolved) == 2
    assert recorder.persisted == [message]


async def test_two_distinct_messages_are_persisted_twice_with_the_same_key() -> None:
    recorder = Recorder()
    await run_with(recorder, lambda: [MessagePromise(prefill_message=Message()) for _ in range(2)])
    assert len(recorder.resolved) == 2
    assert len(recorder.persisted) == 2
    assert recorder.persisted[0] is not recorder.persisted[1]
    assert recorder.persisted[0].hash_key == recorder.persisted[1].hash_key


async def test_resolved_frozen_that_is_not_a_message_is_not_persisted() -> None:
    recorder = Recorder()
    frozen = Frozen(x=1)
    await run_with(recorder, lambda: [Promise(prefill_result=frozen) for _ in range(2)])
    assert len(recorder.resolved) == 2
    assert recorder.persisted == []


async def test_sub_messages_are_persisted_first_and_once() -> None:
    recorder = Recorder()
    child = Message(text="child")
    parent = Message(text="parent", child=child, more=[child])

    def body() -> None:
        parent.as_promise  # noqa: B018

    await run_with(recorder, body)
    assert recorder.persisted == [child, parent]


async def test_persist_handler_errors_are_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(promise: Any, message: Message) -> None:
        raise OSError("disk full")

    with caplog.at_level(logging.ERROR, logger="miniagents"):
        async with MiniAgents(on_persist_message=broken):
            Message(text="x").as_promise  # noqa: B018
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == ["disk full"]


def test_non_coroutine_persist_handler_is_rejected() -> None:
    with pytest.raises(TypeError, match="async def"):
        MiniAgents(on_persist_message=lambda promise, message: None)
    with pytest.raises(TypeError, match="async def"):
        MiniAgents().on_persist_message(print)  # type: ignore[arg-type]


async def test_interaction_nodes_reach_persistence() -> None:
    persisted: list[Message] = []

    async def persist(promise: Any, message: Message) -> None:
        persisted.append(message)

    @miniagent(interaction_metadata={"team": "blue"})
    async def replier(ctx: InteractionContext, **kwargs: Any) -> None:
        async for message_promise in ctx.message_promises:
            ctx.reply(f"re: {await message_promise}")

    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        raise ValueError("no reply node")

    async with MiniAgents(on_persist_message=persist, log_level_for_errors=logging.DEBUG):
        await replier.inquire("hi", style="short", messages_count=1)
        failing.inquire("x")
    call_nodes = [m for m in persisted if isinstance(m, AgentCallNode)]
    reply_nodes = [m for m in persisted if isinstance(m, AgentReplyNode)]
    assert {node.agent_alias for node in call_nodes} == {"REPLIER", "FAILING"}
    replier_call = next(node for node in call_nodes if node.agent_alias == "REPLIER")
    assert [m.text for m in replier_call.messages] == ["hi"]
    assert replier_call.team == "blue" and replier_call.style == "short"  # type: ignore[attr-defined]
    assert [node.agent_alias for node in reply_nodes] == ["REPLIER"]  # a failed reply sequence has none
    assert [m.text for m in reply_nodes[0].replies] == ["re: hi"]
    assert reply_nodes[0].agent_call is replier_call
    assert reply_nodes[0].text is None and str(reply_nodes[0]).startswith("{")
    keys = {m.hash_key for m in persisted}
    assert replier_call.serialize()["messages__hash_keys"][0] in keys  # the graph is linked by hash key


async def test_clashing_inquire_kwargs_are_renamed() -> None:
    persisted: list[Message] = []

    async def persist(promise: Any, message: Message) -> None:
        persisted.append(message)

    @miniagent
    async def taking(ctx: InteractionContext, **kwargs: Any) -> None:
        pass

    async with MiniAgents(on_persist_message=persist):
        await taking.inquire(agent_alias="clash", text="clash too")
        await asyncio.sleep(0)
    node = next(m for m in persisted if isinstance(m, AgentCallNode))
    assert node.agent_alias == "TAKING"
    assert node.kwarg_agent_alias == "clash" and node.kwarg_text == "clash too"  # type: ignore[attr-defined]
    assert node.text is None


async def test_nested_contexts_each_persist_their_own_view_of_the_messages() -> None:
    outer_seen: list[str] = []
    inner_seen: list[str] = []

    async def outer_handler(_: Any, message: Message) -> None:
        outer_seen.append(str(message))

    async def inner_handler(_: Any, message: Message) -> None:
        inner_seen.append(str(message))

    async with MiniAgents(on_persist_message=outer_handler):
        Message("before").as_promise  # noqa: B018
        async with MiniAgents(on_persist_message=inner_handler):
            Message("inside").as_promise  # noqa: B018
    assert inner_seen == ["inside"]
    assert outer_seen == ["before", "inside"]  # the outer handler sees the inner context's messages too


async def test_a_hanging_persist_handler_cannot_keep_the_context_forever(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import miniagents._mini_agents as mini_agents_module

    monkeypatch.setattr(mini_agents_module, "PERSIST_HANDLER_GRACE_SECONDS", 0.2)
    never = asyncio.Event()

    async def hanging(_: Any, message: Message) -> None:
        await never.wait()

    with caplog.at_level(logging.WARNING, logger="miniagents"):
        async with asyncio.timeout(5), MiniAgents(on_persist_message=hanging):
            Message("stuck").as_promise  # noqa: B018
    assert any("did not return" in r.getMessage() or "has not returned" in r.getMessage() for r in caplog.records)


async def test_a_persist_handler_that_ignores_its_cancellation_is_left_behind(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import miniagents._mini_agents as mini_agents_module

    monkeypatch.setattr(mini_agents_module, "PERSIST_HANDLER_GRACE_SECONDS", 0.2)
    monkeypatch.setattr(mini_agents_module, "INTERRUPT_GRACE_SECONDS", 0.2)
    release = asyncio.Event()

    async def stubborn(_: Any, message: Message) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    try:
        with caplog.at_level(logging.WARNING, logger="miniagents"):
            async with asyncio.timeout(5), MiniAgents(on_persist_message=stubborn):
                Message("stuck").as_promise  # noqa: B018
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
            "an on_persist_message handler ignored its cancellation for 0.2 s; left running, the context is left"
        ]
    finally:
        release.set()  # (the handler's task ends before the test's event loop closes)
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "extra",
    [{}, {"team": "blue", "tags": ("a", "b"), "limits": Frozen(n=1)}, {"cancelled": True}, {"text": "clash"}],
)
def test_nodes_built_without_validation_are_what_validation_builds(extra: dict[str, Any]) -> None:
    from miniagents._nodes import build_node

    messages = (Message("hi", role="user"), Message("again"))
    fast_call = build_node(AgentCallNode, "ECHO", {"messages": messages}, dict(extra))
    call = AgentCallNode(agent_alias="ECHO", messages=messages, **extra)
    fast_reply = build_node(AgentReplyNode, "ECHO", {"replies": messages[::-1], "agent_call": call}, dict(extra))
    reply = AgentReplyNode(agent_alias="ECHO", replies=messages[::-1], agent_call=call, **extra)
    for fast, validated in ((fast_call, call), (fast_reply, reply)):
        assert type(fast) is type(validated) and fast == validated
        assert fast.__dict__ == validated.__dict__ and list(fast.__dict__) == list(validated.__dict__)
        assert fast.__pydantic_extra__ == validated.__pydantic_extra__
        assert fast.__pydantic_fields_set__ == validated.__pydantic_fields_set__
        assert fast.__pydantic_private__ == validated.__pydantic_private__
        assert (fast.hash_key, str(fast)) == (validated.hash_key, str(validated))


def _collector() -> tuple[list[Message], Any]:
    """A list, and an ``on_persist_message`` handler that appends each message to it."""
    seen: list[Message] = []

    async def handler(_: Any, message: Message) -> None:
        seen.append(message)

    return seen, handler


async def test_interaction_nodes_are_persisted_in_the_context_of_their_call() -> None:
    outer_seen, outer_handler = _collector()
    inner_seen, inner_handler = _collector()

    @miniagent
    async def echo(ctx: InteractionContext) -> None:
        ctx.reply(await ctx.message_promises)

    async with MiniAgents(on_persist_message=outer_handler):
        replies = echo.inquire("hi")  # made in the outer context, resolved (by the caller) in the inner one:
        async with MiniAgents(on_persist_message=inner_handler):
            assert [message.text for message in await replies] == ["hi"]
    assert [type(m) for m in outer_seen if isinstance(m, (AgentCallNode, AgentReplyNode))] == [
        AgentCallNode,
        AgentReplyNode,
    ]
    assert not [m for m in inner_seen if isinstance(m, (AgentCallNode, AgentReplyNode))]


async def test_a_call_node_holds_the_whole_input_also_when_the_agent_did_not_read_it() -> None:
    persisted: list[Message] = []

    async def persist(_: Any, message: Message) -> None:
        persisted.append(message)

    @miniagent
    async def hasty(ctx: InteractionContext, replied: asyncio.Event) -> None:
        ctx.reply("replied before reading")  # the call ends with its input still open
        replied.set()

    replied = asyncio.Event()
    async with MiniAgents(on_persist_message=persist):
        call = hasty.fork(replied=replied).initiate_inquiry()
        call.send_message("first")
        await replied.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # (the call ends meanwhile)
        assert call.status == "finished" and not [m for m in persisted if isinstance(m, AgentCallNode)]
        call.send_message("second")
        assert [message.text for message in await call.reply_sequence()] == ["replied before reading"]
    [call_node] = [m for m in persisted if isinstance(m, AgentCallNode)]
    [reply_node] = [m for m in persisted if isinstance(m, AgentReplyNode)]
    assert [m.text for m in call_node.messages] == ["first", "second"]
    assert [m.text for m in reply_node.replies] == ["replied before reading"]
    assert reply_node.agent_call is call_node


@pytest.mark.parametrize("watch_promises", [False, True])
async def test_a_persist_handler_gets_a_promise_resolved_to_each_node(watch_promises: bool) -> None:
    # Without `on_promise_resolved` handlers, nodes skip the promise event and get their promise when persisted.
    persisted: list[tuple[Any, Message]] = []
    resolved: list[Any] = []

    async def persist(promise: Any, message: Message) -> None:
        persisted.append((promise, message))

    async def on_resolved(_: Any, result: Any) -> None:
        resolved.append(result)

    @miniagent
    async def echo(ctx: InteractionContext) -> None:
        ctx.reply(await ctx.message_promises)

    async with MiniAgents(on_promise_resolved=[on_resolved] if watch_promises else []):
        async with MiniAgents(on_persist_message=persist):
            await echo.inquire("hi")
    nodes = [(promise, m) for promise, m in persisted if isinstance(m, (AgentCallNode, AgentReplyNode))]
    assert [type(m) for _, m in nodes] == [AgentCallNode, AgentReplyNode]
    for promise, node in nodes:
        assert isinstance(promise, Promise) and promise.is_resolved and await promise is node
    resolved_nodes = [m for m in resolved if isinstance(m, (AgentCallNode, AgentReplyNode))]
    assert resolved_nodes == ([node for _, node in nodes] if watch_promises else [])


async def test_nested_contexts_persist_the_same_nodes_each_after_the_messages_in_them() -> None:
    outer_seen, outer_handler = _collector()
    inner_seen, inner_handler = _collector()

    @miniagent
    async def echo(ctx: InteractionContext, note: Message) -> None:
        ctx.reply(await ctx.message_promises)

    note = Message("a message in an inquire kwarg: persisted before the call node that holds it")
    async with MiniAgents(on_persist_message=outer_handler):
        async with MiniAgents(on_persist_message=inner_handler):
            await echo.inquire("hi", note=note)
    for seen in (outer_seen, inner_seen):
        [call_node] = [m for m in seen if isinstance(m, AgentCallNode)]
        [reply_node] = [m for m in seen if isinstance(m, AgentReplyNode)]
        assert call_node.note is note  # type: ignore[attr-defined]
        assert seen.index(note) < seen.index(call_node) < seen.index(reply_node)
        assert sum(m is note for m in seen) == 1
    outer_node = next(m for m in outer_seen if isinstance(m, AgentCallNode))
    assert outer_node is next(m for m in inner_seen if isinstance(m, AgentCallNode))
