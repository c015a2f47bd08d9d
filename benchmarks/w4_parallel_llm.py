"""W4, parallel simulated LLM calls: N agents at once, each sleeps 100 ms, then streams 20 tokens 1 ms apart.

Each agent replies at once with a streamed message (the LLM-agent idiom); the "request" happens in its token
streamer. The caller consumes all N replies concurrently, token by token. Metrics: wall time and peak RSS. The
plain-asyncio version runs one task per call that writes the tokens into a queue, and one consumer task per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks._common import END, check, check_sequence
from miniagents import InteractionContext, Message, MessageSequencePromise, MiniAgents, miniagent

TOKENS = [f"tok{i} " for i in range(20)]


@miniagent
async def fake_llm_agent(ctx: InteractionContext, latency: float, token_interval: float) -> None:
    """Reply with one message whose tokens arrive after ``latency`` and then every ``token_interval``."""

    async def token_streamer(_: dict[str, Any]) -> AsyncIterator[str]:
        await asyncio.sleep(latency)
        for index, token in enumerate(TOKENS):
            if index:
                await asyncio.sleep(token_interval)
            yield token

    ctx.reply(Message.promise(message_token_streamer=token_streamer))


async def _consume(replies: MessageSequencePromise) -> list[str]:
    tokens = []
    async for message_promise in replies:
        async for token in message_promise:
            tokens.append(token)
    return tokens


async def ours(n: int, latency: float = 0.1, token_interval: float = 0.001) -> dict[str, Any]:
    start = time.perf_counter()
    async with MiniAgents():
        agent = fake_llm_agent.fork(latency=latency, token_interval=token_interval)
        all_replies = [agent.inquire(f"question {i}") for i in range(n)]
        results = await asyncio.gather(*[_consume(replies) for replies in all_replies])
    elapsed = time.perf_counter() - start
    check(len(results) == n, f"W4 ours: expected {n} results, got {len(results)}")
    for tokens in results:
        check_sequence(tokens, TOKENS, "W4 ours tokens")
    return {"seconds": elapsed, "wall_ms": elapsed * 1e3}


async def _plain_llm_call(question: str, latency: float, token_interval: float, out: asyncio.Queue[Any]) -> None:
    await asyncio.sleep(latency)
    for index, token in enumerate(TOKENS):
        if index:
            await asyncio.sleep(token_interval)
        await out.put(token)
    await out.put(END)


async def _plain_consume(out: asyncio.Queue[Any]) -> list[str]:
    tokens = []
    while (token := await out.get()) is not END:
        tokens.append(token)
    return tokens


async def plain(n: int, latency: float = 0.1, token_interval: float = 0.001) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(n)]
    producers = [
        loop.create_task(_plain_llm_call(f"question {i}", latency, token_interval, queue))
        for i, queue in enumerate(queues)
    ]
    results = await asyncio.gather(*[_plain_consume(queue) for queue in queues])
    await asyncio.gather(*producers)
    elapsed = time.perf_counter() - start
    check(len(results) == n, f"W4 asyncio: expected {n} results, got {len(results)}")
    for tokens in results:
        check_sequence(tokens, TOKENS, "W4 asyncio tokens")
    return {"seconds": elapsed, "wall_ms": elapsed * 1e3}
