"""W2, fan-out: one agent replies with N sub-agent inquiries; each sub-agent replies with one short message.

The caller awaits the N flattened messages in order. Metrics: µs per sub-agent and the peak RSS of the process.
The plain-asyncio version starts one task per sub-agent (an input queue and a reply queue each) and a fan-out
task that forwards the sub-agents' replies, in order, into its own reply queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks._common import END, check_sequence
from miniagents import InteractionContext, MiniAgents, miniagent


@miniagent
async def worker_agent(ctx: InteractionContext) -> None:
    """Read the input, reply with one short message."""
    for message in await ctx.message_promises:
        ctx.reply(f"done {message.text}")


@miniagent
async def fan_out_agent(ctx: InteractionContext, n: int) -> None:
    """Reply with N sub-agent inquiries (flattened into one sequence, in order)."""
    ctx.reply([worker_agent.inquire(f"item {i}") for i in range(n)])


async def ours(n: int) -> dict[str, Any]:
    texts = []
    start = time.perf_counter()
    async with MiniAgents():
        async for message_promise in fan_out_agent.fork(n=n).inquire():
            texts.append((await message_promise).text)
    elapsed = time.perf_counter() - start
    check_sequence(texts, [f"done item {i}" for i in range(n)], "W2 ours replies")
    return {"seconds": elapsed, "us_per_sub_agent": elapsed / n * 1e6}


async def _plain_worker(requests: asyncio.Queue[Any], replies: asyncio.Queue[Any]) -> None:
    received = []
    while (item := await requests.get()) is not END:
        received.append(item)
    for item in received:
        await replies.put(f"done {item}")
    await replies.put(END)


async def _plain_fan_out(n: int, replies: asyncio.Queue[Any]) -> None:
    loop = asyncio.get_running_loop()
    workers = []
    for i in range(n):
        sub_requests: asyncio.Queue[Any] = asyncio.Queue()
        sub_replies: asyncio.Queue[Any] = asyncio.Queue()
        workers.append((loop.create_task(_plain_worker(sub_requests, sub_replies)), sub_replies))
        await sub_requests.put(f"item {i}")
        await sub_requests.put(END)
    for task, sub_replies in workers:
        while (item := await sub_replies.get()) is not END:
            await replies.put(item)
        await task
    await replies.put(END)


async def plain(n: int) -> dict[str, Any]:
    texts = []
    start = time.perf_counter()
    replies: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(_plain_fan_out(n, replies))
    while (item := await replies.get()) is not END:
        texts.append(item)
    await task
    elapsed = time.perf_counter() - start
    check_sequence(texts, [f"done item {i}" for i in range(n)], "W2 asyncio replies")
    return {"seconds": elapsed, "us_per_sub_agent": elapsed / n * 1e6}
