"""split_messages over a streaming agent: the SPEC §6.8 example gives the same messages for every tokenization."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from miniagents import InteractionContext, Message, MiniAgent, MiniAgents, miniagent
from miniagents.utils import split_messages

FENCE = "```"
SPEC_INPUT = f"A\n\nB\n\n{FENCE}py\nx\n\ny\n{FENCE}\nC"
SPEC_OUTPUT = ["A", "B", f"{FENCE}py\nx\n\ny\n{FENCE}", "C"]


def streaming_agent(tokens: list[str]) -> MiniAgent:
    """Replies with one message whose text streams as ``tokens``, the way an LLM agent does."""

    @miniagent
    async def streamer(ctx: InteractionContext) -> None:
        async def stream(_: dict[str, Any]) -> AsyncIterator[str]:
            for token in tokens:
                yield token

        ctx.reply(Message.promise(message_token_streamer=stream, role="assistant"))

    return streamer


@st.composite
def tokenizations(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` cut at any set of positions (empty tokens included)."""
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 2))
    bounds = [0, *sorted(cuts), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


async def split_texts(tokens: list[str], start_asap: bool) -> tuple[list[str | None], list[str]]:
    """The split messages' texts and, separately, their streamed tokens joined per message."""
    async with MiniAgents(start_everything_asap_by_default=start_asap):
        split = split_messages(streaming_agent(tokens).inquire(), role="assistant")
        streamed = ["".join([token async for token in message_promise]) async for message_promise in split]
        messages = await split
    assert all(message.role == "assistant" for message in messages)
    return [message.text for message in messages], streamed


@settings(max_examples=200, deadline=None)
@given(tokens=tokenizations(SPEC_INPUT), start_asap=st.booleans())
def test_the_spec_example_splits_the_same_for_every_tokenization(tokens: list[str], start_asap: bool) -> None:
    assert "".join(tokens) == SPEC_INPUT
    texts, streamed = MiniAgents().run(split_texts(tokens, start_asap=start_asap))
    assert texts == SPEC_OUTPUT
    assert streamed == SPEC_OUTPUT


async def test_the_spec_example_as_one_token_and_char_by_char() -> None:
    for tokens in ([SPEC_INPUT], list(SPEC_INPUT)):
        assert await split_texts(tokens, start_asap=True) == (SPEC_OUTPUT, SPEC_OUTPUT)


async def test_lazy_split_messages_can_be_read_token_by_token() -> None:
    async with asyncio.timeout(10):  # a deadlock fails here instead of stalling the run
        assert await split_texts([SPEC_INPUT], start_asap=False) == (SPEC_OUTPUT, SPEC_OUTPUT)
