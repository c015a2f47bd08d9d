"""W3, token relay: a source agent streams T tokens as one message through a chain of K relay agents.

Two relay kinds: ``forward=False`` relays forward token by token as a NEW streamed message each; ``forward=True``
relays pass the message promises they received on unchanged (``ctx.reply(ctx.message_promises)``).

* `ours_throughput` / `plain_throughput`: tokens per second at the end of the chain (first inquiry to last token).
* `ours_first_token` / `plain_first_token`: the source emits one token, sleeps, then emits a last one. Reports
  the time from the first inquiry to the first token at the end of the chain (``ttft_ms``), and from the moment
  the source emitted it (``emit_to_end_ms``).

The plain-asyncio version mirrors the structure: every agent is a task, a message sequence is a queue of token
queues, a new-message relay copies tokens into a new queue, a forwarding relay passes the token queue on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from benchmarks._common import END, check, check_sequence
from miniagents import InteractionContext, Message, MessagePromise, MiniAgents, miniagent


def make_tokens(count: int) -> list[str]:
    return [f"t{i} " for i in range(count)]


@miniagent
async def source_agent(ctx: InteractionContext, token_streamer: Callable[[dict[str, Any]], AsyncIterator[str]]) -> None:
    """Reply with one message streamed by ``token_streamer``."""
    ctx.reply(Message.promise(message_token_streamer=token_streamer))


def _forward_tokens(message_promise: MessagePromise) -> Callable[[dict[str, Any]], AsyncIterator[str]]:
    async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
        async for token in message_promise:
            yield token

    return stream


@miniagent
async def relay_agent(ctx: InteractionContext) -> None:
    """Forward every incoming message token by token as a new streamed message."""
    async for message_promise in ctx.message_promises:
        ctx.reply(Message.promise(message_token_streamer=_forward_tokens(message_promise)))


@miniagent
async def forwarding_relay_agent(ctx: InteractionContext) -> None:
    """Pass the incoming message promises on unchanged."""
    ctx.reply(ctx.message_promises)


def _inquire_chain(token_streamer: Callable[[dict[str, Any]], AsyncIterator[str]], relays: int, forward: bool) -> Any:
    replies = source_agent.fork(token_streamer=token_streamer).inquire()
    relay = forwarding_relay_agent if forward else relay_agent
    for _ in range(relays):
        replies = relay.inquire(replies)
    return replies


async def ours_throughput(tokens: int, relays: int, forward: bool) -> dict[str, Any]:
    expected = make_tokens(tokens)

    async def token_streamer(_: dict[str, Any]) -> AsyncIterator[str]:
        for token in expected:
            yield token

    received: list[str] = []
    async with MiniAgents():
        start = time.perf_counter()
        message_promises = []
        async for message_promise in _inquire_chain(token_streamer, relays, forward):
            message_promises.append(message_promise)
            async for token in message_promise:
                received.append(token)
        elapsed = time.perf_counter() - start
        check(len(message_promises) == 1, f"W3 ours: expected 1 message, got {len(message_promises)}")
        message = await message_promises[0]
    check_sequence(received, expected, "W3 ours tokens")
    check(message.text == "".join(expected), "W3 ours: the final message's text differs from the tokens")
    return {"seconds": elapsed, "tokens_per_s": tokens / elapsed}


async def ours_first_token(relays: int, sleep: float, forward: bool) -> dict[str, Any]:
    emitted: list[float] = []

    async def token_streamer(_: dict[str, Any]) -> AsyncIterator[str]:
        emitted.append(time.perf_counter())
        yield "first "
        await asyncio.sleep(sleep)
        yield "last"

    received: list[str] = []
    first = 0.0
    async with MiniAgents():
        start = time.perf_counter()
        async for message_promise in _inquire_chain(token_streamer, relays, forward):
            async for token in message_promise:
                if not received:
                    first = time.perf_counter()
                received.append(token)
    check_sequence(received, ["first ", "last"], "W3 ours tokens")
    return {"ttft_ms": (first - start) * 1e3, "emit_to_end_ms": (first - emitted[0]) * 1e3}


# --- plain asyncio -------------------------------------------------------------------------------------------


async def _plain_source(sequence: asyncio.Queue[Any], emit: Callable[[asyncio.Queue[Any]], Awaitable[None]]) -> None:
    token_queue: asyncio.Queue[Any] = asyncio.Queue()
    await sequence.put(token_queue)
    await sequence.put(END)
    await emit(token_queue)
    await token_queue.put(END)


async def _plain_relay(incoming: asyncio.Queue[Any], outgoing: asyncio.Queue[Any]) -> None:
    while (token_queue := await incoming.get()) is not END:
        new_queue: asyncio.Queue[Any] = asyncio.Queue()
        await outgoing.put(new_queue)
        while (token := await token_queue.get()) is not END:
            await new_queue.put(token)
        await new_queue.put(END)
    await outgoing.put(END)


async def _plain_forwarding_relay(incoming: asyncio.Queue[Any], outgoing: asyncio.Queue[Any]) -> None:
    while (token_queue := await incoming.get()) is not END:
        await outgoing.put(token_queue)
    await outgoing.put(END)


def _plain_chain(
    emit: Callable[[asyncio.Queue[Any]], Awaitable[None]], relays: int, forward: bool
) -> tuple[asyncio.Queue[Any], list[asyncio.Task[None]]]:
    loop = asyncio.get_running_loop()
    sequence: asyncio.Queue[Any] = asyncio.Queue()
    tasks = [loop.create_task(_plain_source(sequence, emit))]
    relay = _plain_forwarding_relay if forward else _plain_relay
    for _ in range(relays):
        outgoing: asyncio.Queue[Any] = asyncio.Queue()
        tasks.append(loop.create_task(relay(sequence, outgoing)))
        sequence = outgoing
    return sequence, tasks


async def plain_throughput(tokens: int, relays: int, forward: bool) -> dict[str, Any]:
    expected = make_tokens(tokens)

    async def emit(token_queue: asyncio.Queue[Any]) -> None:
        for token in expected:
            await token_queue.put(token)

    received: list[str] = []
    start = time.perf_counter()
    sequence, tasks = _plain_chain(emit, relays, forward)
    messages = 0
    while (token_queue := await sequence.get()) is not END:
        messages += 1
        while (token := await token_queue.get()) is not END:
            received.append(token)
    elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    check(messages == 1, f"W3 asyncio: expected 1 message, got {messages}")
    check_sequence(received, expected, "W3 asyncio tokens")
    return {"seconds": elapsed, "tokens_per_s": tokens / elapsed}


async def plain_first_token(relays: int, sleep: float, forward: bool) -> dict[str, Any]:
    emitted: list[float] = []

    async def emit(token_queue: asyncio.Queue[Any]) -> None:
        emitted.append(time.perf_counter())
        await token_queue.put("first ")
        await asyncio.sleep(sleep)
        await token_queue.put("last")

    received: list[str] = []
    first = 0.0
    start = time.perf_counter()
    sequence, tasks = _plain_chain(emit, relays, forward)
    while (token_queue := await sequence.get()) is not END:
        while (token := await token_queue.get()) is not END:
            if not received:
                first = time.perf_counter()
            received.append(token)
    await asyncio.gather(*tasks)
    check_sequence(received, ["first ", "last"], "W3 asyncio tokens")
    return {"ttft_ms": (first - start) * 1e3, "emit_to_end_ms": (first - emitted[0]) * 1e3}
