"""Waiting in tests for state that no event announces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from miniagents import Message


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` every 10 ms until it is true; `TimeoutError` after ``timeout`` seconds (a hang guard)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling state that no event announces
            await asyncio.sleep(0.01)


def promise_made(message: Message) -> bool:
    """Whether ``message.as_promise`` has been made (it is cached on the message)."""
    return message.__pydantic_private__["_as_promise_cache"] is not None  # type: ignore[index]
