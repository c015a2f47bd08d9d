from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from miniagents.promising import FlatSequence, PromisingContext, StreamAppender


async def test_flat_sequence_repeats_n_n_times(start_asap: object) -> None:
    async def incoming(_: Any) -> AsyncIterator[int]:
        for number in range(4):
            yield number

    async def flattener(_: Any, number: int) -> AsyncIterator[int]:
        for _ in range(number):
            yield number

    async with PromisingContext():
        sequence: FlatSequence[int, int] = FlatSequence(incoming, flattener, start_asap=start_asap)
        assert await sequence.sequence_promise == (1, 2, 2, 3, 3, 3)
        assert [piece async for piece in sequence.sequence_promise] == [1, 2, 2, 3, 3, 3]


async def test_flattener_error_is_a_piece_and_ends_the_sequence(start_asap: object) -> None:
    async def flattener(_: Any, number: int) -> AsyncIterator[int]:
        if number == 2:
            raise ValueError("two")
        yield number

    async with PromisingContext(log_level_for_errors=logging.DEBUG):
        appender: StreamAppender[int] = StreamAppender(capture_errors=False)
        sequence: FlatSequence[int, int] = FlatSequence(appender, flattener, start_asap=start_asap)
        with appender:
            for number in (1, 2, 3):
                appender.append(number)
        received = []
        try:
            async for piece in sequence.sequence_promise:
                received.append(piece)
        except ValueError as error:
            received.append(str(error))
        assert received == [1, "two"]
        with pytest.raises(ValueError, match="two"):
            await sequence.sequence_promise
