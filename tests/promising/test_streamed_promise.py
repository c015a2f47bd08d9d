from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from miniagents.promising import (
    AppenderClosedError,
    AppenderNotOpenError,
    FunctionNotProvidedError,
    NoActiveContextError,
    PromisingContext,
    StreamAppender,
    StreamedPromise,
)


async def collect(stream: Any) -> list[Any]:
    """Iterate to the end, recording raised errors as items (by type) and the stop."""
    items: list[Any] = []
    iterator = aiter(stream)
    for _ in range(20):
        try:
            items.append(await anext(iterator))
        except StopAsyncIteration:
            items.append("stop")
            try:
                await anext(iterator)
            except StopAsyncIteration:
                items.append("stop")
            return items
        except Exception as error:
            items.append(type(error))
    raise AssertionError(f"the stream did not end: {items}")


async def test_streamer_runs_once_across_two_full_iterations(start_asap: object) -> None:
    calls = []

    async def streamer(promise: StreamedPromise[int, Any]) -> AsyncIterator[int]:
        calls.append(promise)
        for number in range(3):
            yield number

    async with PromisingContext():
        promise: StreamedPromise[int, Any] = StreamedPromise(streamer=streamer, start_asap=start_asap)
        assert [piece async for piece in promise] == [0, 1, 2]
        assert [piece async for piece in promise] == [0, 1, 2]
        assert calls == [promise]


async def test_concurrent_consumers_share_one_stream(start_asap: object) -> None:
    calls = 0

    async def streamer(_: Any) -> AsyncIterator[int]:
        nonlocal calls
        calls += 1
        for number in range(50):
            await asyncio.sleep(0)
            yield number

    async with PromisingContext():
        promise: StreamedPromise[int, Any] = StreamedPromise(streamer=streamer, start_asap=start_asap)

        async def consume() -> list[int]:
            return [piece async for piece in promise]

        results = await asyncio.gather(*(consume() for _ in range(4)))
        assert results == [list(range(50))] * 4
        assert calls == 1


async def test_exception_mid_stream_replays_identically(start_asap: object) -> None:
    async def streamer(_: Any) -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("mid-stream")

    async with PromisingContext():
        promise: StreamedPromise[int, Any] = StreamedPromise(streamer=streamer, start_asap=start_asap)
        first = await collect(promise)
        assert first == [1, 2, ValueError, "stop", "stop"]
        assert await collect(promise) == first
        errors = []
        for _ in range(2):
            iterator = aiter(promise)
            await anext(iterator)
            await anext(iterator)
            with pytest.raises(ValueError) as info:
                await anext(iterator)
            errors.append(info.value)
        assert errors[0] is errors[1]  # the same instance at the same position


async def test_non_generator_iterator_goes_on_after_an_error(start_asap: object) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.steps: list[Any] = [1, RuntimeError("flaky"), 2]

        def __aiter__(self) -> Flaky:
            return self

        async def __anext__(self) -> int:
            if not self.steps:
                raise StopAsyncIteration
            step = self.steps.pop(0)
            if isinstance(step, BaseException):
                raise step
            return int(step)

    async with PromisingContext():
        promise: StreamedPromise[int, Any] = StreamedPromise(streamer=lambda _: Flaky(), start_asap=start_asap)
        assert await collect(promise) == [1, RuntimeError, 2, "stop", "stop"]


@pytest.mark.parametrize(
    ("streamer", "error"),
    [
        (lambda _: [1, 2, 3], TypeError),  # a sync iterable
        (None, FunctionNotProvidedError),
    ],
)
async def test_broken_streamers_give_error_then_stop(start_asap: object, streamer: Any, error: type) -> None:
    async with PromisingContext(log_level_for_errors=logging.DEBUG):
        promise: StreamedPromise[int, Any] = StreamedPromise(streamer=streamer, start_asap=start_asap)
        assert await collect(promise) == [error, "stop", "stop"]
        assert await collect(promise) == [error, "stop", "stop"]


async def test_async_non_generator_streamer_gives_error_then_stop(start_asap: object) -> None:
    async def not_a_generator(_: Any) -> list[int]:
        return [1]

    async with PromisingContext(log_level_for_errors=logging.DEBUG):
        promise: StreamedPromise[int, Any] = StreamedPromise(
            streamer=not_a_generator,  # type: ignore[arg-type]
            start_asap=start_asap,
        )
        assert await collect(promise) == [TypeError, "stop", "stop"]
        assert await collect(promise) == [TypeError, "stop", "stop"]
    await asyncio.sleep(0)  # let the never-awaited coroutine be collected without a warning


async def test_broken_resolver_fails_await_but_not_iteration(start_asap: object) -> None:
    async def streamer(_: Any) -> AsyncIterator[str]:
        yield "a"

    async def resolver(_: Any) -> str:
        raise LookupError("no whole value")

    async with PromisingContext(log_level_for_errors=logging.DEBUG):
        promise: StreamedPromise[str, str] = StreamedPromise(
            streamer=streamer, resolver=resolver, start_asap=start_asap
        )
        assert [piece async for piece in promise] == ["a"]
        with pytest.raises(LookupError) as first:
            await promise
        with pytest.raises(LookupError) as second:
            await promise
        assert first.value is second.value


async def test_streamer_and_resolver_receive_the_promise(start_asap: object) -> None:
    seen: list[Any] = []

    async def streamer(promise: Any) -> AsyncIterator[int]:
        seen.append(promise)
        yield 1

    async def resolver(promise: Any) -> int:
        seen.append(promise)
        return sum([piece async for piece in promise])

    async with PromisingContext():
        promise: StreamedPromise[int, int] = StreamedPromise(
            streamer=streamer, resolver=resolver, start_asap=start_asap
        )
        assert await promise == 1
        assert seen == [promise, promise]


async def test_start_asap_drains_without_consumers(start_asap: object) -> None:
    produced: list[int] = []

    async def streamer(_: Any) -> AsyncIterator[int]:
        for number in range(3):
            produced.append(number)
            yield number

    async with PromisingContext() as context:
        StreamedPromise(streamer=streamer, start_asap=start_asap)
        await asyncio.sleep(0.01)
        eager = start_asap is True or (start_asap is not False and context.start_everything_asap_by_default)
        assert produced == ([0, 1, 2] if eager else [])


async def test_streamed_promise_chains_as_a_streamer(start_asap: object) -> None:
    async with PromisingContext():
        source: StreamedPromise[int, Any] = StreamedPromise(prefill_pieces=[1, 2, 3], start_asap=start_asap)
        chained: StreamedPromise[int, Any] = StreamedPromise(streamer=source, start_asap=start_asap)
        assert [piece async for piece in chained] == [1, 2, 3]


async def test_streamer_and_prefill_pieces_together_are_rejected() -> None:
    async def streamer(_: Any) -> AsyncIterator[int]:
        yield 1

    async with PromisingContext():
        with pytest.raises(ValueError, match="not both"):
            StreamedPromise(streamer=streamer, prefill_pieces=[1])


async def test_cancelled_consumer_does_not_poison_the_stream() -> None:
    gate = asyncio.Event()

    async def streamer(_: Any) -> AsyncIterator[int]:
        yield 1
        await gate.wait()
        yield 2

    async with PromisingContext():
        for start_asap in (True, False):
            gate.clear()
            promise: StreamedPromise[int, Any] = StreamedPromise(streamer=streamer, start_asap=start_asap)

            async def consume(promise: StreamedPromise[int, Any] = promise) -> list[int]:
                return [piece async for piece in promise]

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.set()
            if start_asap:
                assert await consume() == [1, 2]
            else:  # the generator was interrupted by the cancellation: the stream ends, it does not hang
                assert await collect(promise) in ([1, 2, "stop", "stop"], [1, "stop", "stop"])


async def test_appender_capturing_errors_replays_the_error(start_asap: object) -> None:
    async with PromisingContext():
        appender: StreamAppender[int] = StreamAppender(capture_errors=True)
        promise: StreamedPromise[int, Any] = StreamedPromise(
            streamer=appender, resolver=lambda p: _pieces(p), start_asap=start_asap
        )
        with appender:
            appender.append(1)
            appender.append(2)
            raise ValueError("captured")
        assert await collect(promise) == [1, 2, ValueError, "stop", "stop"]
        assert await collect(promise) == [1, 2, ValueError, "stop", "stop"]


async def _pieces(promise: Any) -> list[Any]:
    pieces = []
    async for piece in promise:
        pieces.append(piece)
    return pieces


async def _pieces_before_error(promise: Any) -> list[Any]:
    pieces = []
    try:
        async for piece in promise:
            pieces.append(piece)
    except ValueError:
        pass
    return pieces


async def test_non_capturing_appender_lets_the_error_out_and_resolves_to_earlier_pieces(start_asap: object) -> None:
    async with PromisingContext():
        appender: StreamAppender[int] = StreamAppender(capture_errors=False)
        promise: StreamedPromise[int, list[int]] = StreamedPromise(
            streamer=appender, resolver=_pieces_before_error, start_asap=start_asap
        )
        with pytest.raises(ValueError, match="escapes"), appender:
            appender.append(1)
            appender.append(2)
            raise ValueError("escapes")
        assert await promise == [1, 2]


async def test_appender_misuse_errors() -> None:
    appender: StreamAppender[int] = StreamAppender(capture_errors=False)  # no context needed here
    with pytest.raises(AppenderNotOpenError, match="open"):
        appender.append(1)
    assert appender.was_open is False
    with appender:
        assert appender.is_open
        appender.append(1)
    assert appender.was_open and not appender.is_open
    with pytest.raises(AppenderClosedError):
        appender.append(2)
    with pytest.raises(AppenderClosedError):
        appender.open()
    appender.close()  # idempotent
    with pytest.raises(NoActiveContextError):
        StreamAppender()
    assert appender() is appender


async def test_appender_async_with_is_refused() -> None:
    appender: StreamAppender[int] = StreamAppender(capture_errors=False)
    with pytest.raises(RuntimeError, match="plain `with`"):
        async with appender:  # type: ignore[attr-defined]
            pass


async def test_error_after_close_is_logged_not_appended(caplog: pytest.LogCaptureFixture) -> None:
    async with PromisingContext(log_level_for_errors=logging.WARNING):
        appender: StreamAppender[int] = StreamAppender(capture_errors=True)
        with caplog.at_level(logging.DEBUG, logger="miniagents"), appender:
            appender.append(1)
            appender.close()
            raise ValueError("late")
        assert [piece async for piece in appender] == [1]
    assert [record.exc_info[1].args for record in caplog.records if record.exc_info] == [("late",)]


async def test_appender_is_a_single_consumer_queue_ending_forever() -> None:
    appender: StreamAppender[str] = StreamAppender(capture_errors=False)
    with appender:
        appender.append("a").append("b")
    assert [piece async for piece in appender] == ["a", "b"]
    assert [piece async for piece in appender] == []


async def test_cancel_stops_the_producer_and_ends_the_stream_with_an_error() -> None:
    from miniagents import PromisingContext, StreamedPromise, WorkCancelledError

    produced: list[int] = []
    closed = asyncio.Event()

    async def endless(_: object):  # type: ignore[no-untyped-def]
        try:
            index = 0
            while True:
                produced.append(index)
                yield index
                index += 1
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    async with asyncio.timeout(5), PromisingContext():
        for start_asap in (True, False):
            produced.clear()
            closed.clear()
            promise: StreamedPromise[int, object] = StreamedPromise(streamer=endless, start_asap=start_asap)
            seen = []
            with pytest.raises(WorkCancelledError):
                async for piece in promise:
                    seen.append(piece)
                    if len(seen) == 3:
                        promise.cancel()
            assert seen[:3] == [0, 1, 2] and len(produced) <= 5
            await asyncio.wait_for(closed.wait(), 5)  # the source was closed (its `finally` ran)
            promise.cancel()  # a second time: nothing
            replay = []
            with pytest.raises(WorkCancelledError):
                async for piece in promise:
                    replay.append(piece)
            assert replay == seen
