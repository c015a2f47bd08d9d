"""W1, sequential round trips: N inquire-and-await calls to an echo agent that reads its input, then replies.

Metric: µs per call. The plain-asyncio version starts one task per call with an input queue and a reply queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks._common import END, check_sequence
from miniagents import InteractionContext, MiniAgents, miniagent


@miniagent
async def echo_agent(ctx: InteractionContext) -> None:
    """Read the whole input, then reply with its text."""
    for message in await ctx.message_promises:
        ctx.reply(f"echo: {message.text}")


async def ours(n: int) -> dict[str, Any]:
    texts = []
    start = time.perf_counter()
    async with MiniAgents():
        for i in range(n):
            replies = await echo_agent.inquire(f"msg {i}")
            texts.append(replies[0].text if len(replies) == 1 else replies)
    elapsed = time.perf_counter() - start
    check_sequence(texts, [f"echo: msg {i}" for i in range(n)], "W1 ours replies")
    return {"seconds": elapsed, "us_per_call": elapsed / n * 1e6}


async def _plain_echo(requests: asyncio.Queue[Any], replies: asyncio.Queue[Any]) -> None:
    received = []
    while (item := await requests.get()) is not END:
        received.append(item)
    for item in received:
        await replies.put(f"echo: {item}")
    await replies.put(END)


async def plain(n: int) -> dict[str, Any]:
    texts = []
    start = time.perf_counter()
    for i in range(n):
        requests: asyncio.Queue[Any] = asyncio.Queue()
        replies: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(_plain_echo(requests, replies))
        await requests.put(f"msg {i}")
        await requests.put(END)
        got = []
        while (item := await replies.get()) is not END:
            got.append(item)
        await task
        texts.append(got[0] if len(got) == 1 else got)
    elapsed = time.perf_counter() - start
    check_sequence(texts, [f"echo: msg {i}" for i in range(n)], "W1 asyncio replies")
    return {"seconds": elapsed, "us_per_call": elapsed / n * 1e6}
