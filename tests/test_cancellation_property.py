"""Random agent trees cancelled at random points: no task left behind, no reply silently cut short."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniagents import (
    AgentCallCancelledError,
    InteractionContext,
    Message,
    MessageSequencePromise,
    MiniAgents,
    miniagent,
)


@dataclass
class Node:
    messages: list[int]  # tokens per own message
    children: list[Node] = field(default_factory=list)
    sleepy: bool = False  # await a real sleep between tokens (otherwise only yield to the loop)
    name: str = ""

    def expected(self) -> list[str]:
        """Every reply text of this node's full reply sequence, in order."""
        own = ["".join(f"{self.name}.{m}.{t} " for t in range(count)) for m, count in enumerate(self.messages)]
        return own + [text for child in self.children for text in child.expected()]


def trees(depth: int = 3) -> st.SearchStrategy[Node]:
    leaf = st.builds(Node, st.lists(st.integers(1, 4), max_size=3), st.just([]), st.booleans())
    if depth <= 1:
        return leaf
    return st.one_of(
        leaf,
        st.builds(
            Node,
            st.lists(st.integers(1, 4), max_size=2),
            st.lists(trees(depth - 1), max_size=3),
            st.booleans(),
        ),
    )


def name_nodes(node: Node, prefix: str = "n") -> list[Node]:
    node.name = prefix
    nodes = [node]
    for index, child in enumerate(node.children):
        nodes += name_nodes(child, f"{prefix}{index}")
    return nodes


def make_agent(node: Node, sequences: dict[str, MessageSequencePromise]) -> Any:
    children = [make_agent(child, sequences) for child in node.children]

    def tokens(message_index: int, count: int) -> Any:
        async def stream(_: dict[str, Any]) -> Any:
            for token_index in range(count):
                await asyncio.sleep(0.0005 if node.sleepy else 0)
                yield f"{node.name}.{message_index}.{token_index} "

        return stream

    @miniagent(alias=node.name)
    async def agent(ctx: InteractionContext) -> None:
        for message_index, count in enumerate(node.messages):
            ctx.reply(Message.promise(message_token_streamer=tokens(message_index, count)))
        for child_node, child in zip(node.children, children, strict=True):
            replies = child.inquire()
            sequences[child_node.name] = replies
            ctx.reply(replies)
        await asyncio.sleep(0.001 if node.sleepy else 0)

    return agent


async def read_all(sequence: MessageSequencePromise) -> tuple[list[str], BaseException | None]:
    texts: list[str] = []
    try:
        async for message_promise in sequence:
            texts.append((await message_promise).text or "")
    except AgentCallCancelledError as error:
        return texts, error
    return texts, None


async def run_tree(root: Node, cancel_at: int, cancel_which: int, how: str) -> None:
    nodes = name_nodes(root)
    sequences: dict[str, MessageSequencePromise] = {}
    agent = make_agent(root, sequences)
    async with asyncio.timeout(20):
        async with MiniAgents():
            sequences[root.name] = agent.inquire()
            for _ in range(cancel_at):
                await asyncio.sleep(0)
            target = nodes[cancel_which % len(nodes)].name
            if how == "cancel" and target in sequences:
                sequences[target].cancel()
            elif how == "consumer":  # a consumer cancelled: must change nothing at all

                async def consume() -> None:
                    await read_all(sequences[root.name])

                consumer = asyncio.create_task(consume())
                await asyncio.sleep(0)
                consumer.cancel()
        for node in nodes:
            if node.name not in sequences:
                continue  # never called: its parent was cancelled before it got there
            texts, error = await read_all(sequences[node.name])
            expected = node.expected()
            if error is None:
                assert texts == expected, node.name  # complete, or ...
            else:
                assert texts == expected[: len(texts)], node.name  # ... a true prefix that ends in an error
                assert how == "cancel"
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no task of ours is left


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.integers(0, 40), st.integers(0, 20), st.sampled_from(["cancel", "consumer", "none"]))
def test_random_trees_cancelled_at_random_points(root: Node, cancel_at: int, cancel_which: int, how: str) -> None:
    asyncio.run(run_tree(root, cancel_at, cancel_which, how))
