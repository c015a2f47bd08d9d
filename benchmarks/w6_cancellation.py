"""W6, cancellation: a tree of N running agent calls cancelled at once, and how late a token can still come.

* `ours`: a root agent inquires B branch agents, each of which inquires leaves until N calls run; every leaf
  streams a message whose token streamer never ends (one token, then a long sleep), every inner agent replies its
  children's replies and sleeps. Once every call runs, ``replies.cancel()`` on the root. Metric: ms from
  ``cancel()`` until every task of the tree is done (the framework's own and the agents'), and that the root's
  sequence ends with `AgentCallCancelledError`.
* `plain`: the same tree as plain asyncio tasks (one per call, children kept in a list), cancelled recursively.
* `ours_last_token` / `plain_last_token`: a plain async streamer that yields a token on every event-loop
  iteration; after ``cancel()``, how many more tokens were yielded (the target is at most one).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks._common import check
from miniagents import AgentCallCancelledError, InteractionContext, Message, MiniAgents, miniagent


def _tree(n: int, branching: int = 10) -> tuple[Any, asyncio.Event, list[int]]:
    running: list[int] = [0]
    all_running = asyncio.Event()

    def started() -> None:
        running[0] += 1
        if running[0] >= n:
            all_running.set()

    async def endless(_: dict[str, Any]) -> Any:
        yield "first "
        await asyncio.sleep(3600)

    @miniagent
    async def leaf(ctx: InteractionContext) -> None:
        started()
        ctx.reply(Message.promise(message_token_streamer=endless))
        await asyncio.sleep(3600)

    @miniagent
    async def branch(ctx: InteractionContext, leaves: int) -> None:
        started()
        for _ in range(leaves):
            ctx.reply(leaf.inquire())
        await asyncio.sleep(3600)

    @miniagent
    async def root(ctx: InteractionContext) -> None:
        started()
        remaining = n - 1
        while remaining > 0:
            leaves = min(branching, remaining - 1) if remaining > 1 else 0
            ctx.reply(branch.inquire(leaves=leaves))
            remaining -= 1 + leaves
        await asyncio.sleep(3600)

    return root, all_running, running


async def ours(n: int) -> dict[str, Any]:
    root, all_running, running = _tree(n)
    async with MiniAgents() as context:
        replies = root.inquire()
        await asyncio.wait_for(all_running.wait(), 60)
        before = {task for task in context.child_tasks if not task.done()}
        start = time.perf_counter()
        replies.cancel()
        await asyncio.wait(before)
        elapsed = time.perf_counter() - start
        try:
            await replies
        except AgentCallCancelledError:
            pass
        else:
            raise AssertionError("the cancelled tree ended without AgentCallCancelledError")
    check(running[0] == n, f"W6 ours: {running[0]} calls ran, expected {n}")
    return {"ms_to_cancel": elapsed * 1000, "tasks": len(before)}


async def plain(n: int, branching: int = 10) -> dict[str, Any]:
    tasks: list[asyncio.Task[Any]] = []
    all_running = asyncio.Event()

    async def endless(queue: asyncio.Queue[str]) -> None:
        await queue.put("first ")
        await asyncio.sleep(3600)

    async def node(children: int) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        tasks.append(asyncio.get_running_loop().create_task(endless(queue)))
        for _ in range(children):
            tasks.append(asyncio.get_running_loop().create_task(node(0)))
        if len(tasks) >= n:
            all_running.set()
        await asyncio.sleep(3600)

    remaining = n - 1
    tasks.append(asyncio.get_running_loop().create_task(node(0)))
    while remaining > 0:
        leaves = min(branching, remaining - 1) if remaining > 1 else 0
        tasks.append(asyncio.get_running_loop().create_task(node(leaves)))
        remaining -= 1 + leaves
    await asyncio.wait_for(all_running.wait(), 60)
    await asyncio.sleep(0)
    start = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    elapsed = time.perf_counter() - start
    return {"ms_to_cancel": elapsed * 1000, "tasks": len(tasks)}


async def ours_last_token(n: int) -> dict[str, Any]:
    worst = 0
    for _ in range(n):
        yielded: list[int] = []

        async def tokens(_: dict[str, Any], yielded: list[int] = yielded) -> Any:
            while True:
                yielded.append(1)
                yield "t"
                await asyncio.sleep(0)

        @miniagent
        async def streaming(ctx: InteractionContext) -> None:
            ctx.reply(Message.promise(message_token_streamer=tokens))

        async with MiniAgents():
            replies = streaming.inquire()
            while len(yielded) < 3:  # noqa: ASYNC110 - counting event-loop iterations is the point
                await asyncio.sleep(0)
            replies.cancel()
            before = len(yielded)
            for _ in range(5):
                await asyncio.sleep(0)
            worst = max(worst, len(yielded) - before)
    return {"tokens_after_cancel": worst}


async def plain_last_token(n: int) -> dict[str, Any]:
    worst = 0
    for _ in range(n):
        yielded: list[int] = []

        async def produce(yielded: list[int] = yielded) -> None:
            while True:
                yielded.append(1)
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(produce())
        while len(yielded) < 3:  # noqa: ASYNC110 - counting event-loop iterations is the point
            await asyncio.sleep(0)
        task.cancel()
        before = len(yielded)
        for _ in range(5):
            await asyncio.sleep(0)
        worst = max(worst, len(yielded) - before)
    return {"tokens_after_cancel": worst}
