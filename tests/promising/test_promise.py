from __future__ import annotations

import asyncio
import logging

import pytest

from miniagents.promising import (
    FunctionNotProvidedError,
    NoActiveContextError,
    Promise,
    PromisingContext,
    WrongActiveContextError,
)
from miniagents.promising.sentinels import NO_VALUE


async def test_resolver_called_once_and_same_object_returned(start_asap: object) -> None:
    calls = []

    async def resolver(promise: Promise[list[int]]) -> list[int]:
        calls.append(promise)
        return [1, 2]

    async with PromisingContext():
        promise = Promise(start_asap=start_asap, resolver=resolver)
        first, second = await asyncio.gather(promise, promise.aresolve())
        assert first is second
        assert await promise is first
        assert calls == [promise]  # the resolver received the promise itself, once


async def test_failed_resolver_raises_same_instance(start_asap: object) -> None:
    async def resolver(_: Promise[int]) -> int:
        raise ValueError("boom")

    async with PromisingContext(log_level_for_errors=logging.DEBUG):
        promise = Promise(start_asap=start_asap, resolver=resolver)
        with pytest.raises(ValueError, match="boom") as first:
            await promise
        with pytest.raises(ValueError, match="boom") as second:
            await promise
        assert first.value is second.value


async def test_no_resolver_raises_function_not_provided() -> None:
    async with PromisingContext():
        promise: Promise[int] = Promise(start_asap=False)
        with pytest.raises(FunctionNotProvidedError):
            await promise


async def test_non_awaitable_resolver_result_is_a_stored_type_error() -> None:
    async with PromisingContext():
        promise: Promise[int] = Promise(start_asap=False, resolver=lambda _: 42)  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="not an awaitable") as first:
            await promise
        with pytest.raises(TypeError) as second:
            await promise
        assert first.value is second.value


async def test_prefill_result_and_resolver_together_are_rejected() -> None:
    async def resolver(_: Promise[int]) -> int:
        return 1

    async with PromisingContext():
        with pytest.raises(ValueError, match="not both"):
            Promise(resolver=resolver, prefill_result=1)
        assert await Promise(prefill_result=None) is None  # None is a real value


async def test_promise_needs_an_active_context() -> None:
    with pytest.raises(NoActiveContextError, match="async with PromisingContext"):
        Promise(prefill_result=1)


async def test_get_current_checks_the_class() -> None:
    from miniagents import MiniAgents

    with pytest.raises(NoActiveContextError):
        PromisingContext.get_current()
    async with PromisingContext() as context:
        assert PromisingContext.get_current() is context
        with pytest.raises(WrongActiveContextError, match="MiniAgents"):
            MiniAgents.get_current()
        with pytest.raises(TypeError):  # WrongActiveContextError is also a TypeError
            MiniAgents.get_current()


async def test_start_asap_resolves_in_background_lazy_does_not(start_asap: object) -> None:
    started = asyncio.Event()

    async def resolver(_: Promise[str]) -> str:
        started.set()
        return "done"

    async with PromisingContext() as context:
        promise = Promise(start_asap=start_asap, resolver=resolver)
        await asyncio.sleep(0.01)
        eager = context.start_everything_asap_by_default if start_asap is not False else False
        assert started.is_set() is eager
        assert promise.is_resolved is eager
        assert await promise == "done"


async def test_own_cancellation_is_not_stored() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def resolver(_: Promise[str]) -> str:
        entered.set()
        await release.wait()
        return "value"

    async with PromisingContext():
        promise = Promise(start_asap=False, resolver=resolver)
        task = asyncio.create_task(promise.aresolve())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert promise.is_resolved is False
        release.set()
        assert await promise == "value"  # a later awaiter resolves it afresh


async def test_prefill_fires_the_resolved_event_in_the_constructor() -> None:
    events: list[tuple[object, object]] = []
    context = PromisingContext()

    @context.on_promise_resolved
    async def record(promise: Promise[int], result: int) -> None:
        events.append((promise, result))

    async with context:
        promise = Promise(prefill_result=7)
        await asyncio.sleep(0)
        await context.aflush_tasks()
    assert events == [(promise, 7)]


async def test_resolved_event_reaches_ancestor_contexts_and_failures() -> None:
    outer_events: list[object] = []
    inner_events: list[object] = []

    async def outer_handler(_: object, result: object) -> None:
        outer_events.append(result)

    async def inner_handler(_: object, result: object) -> None:
        inner_events.append(result)

    async def failing(_: Promise[int]) -> int:
        raise KeyError("x")

    async with PromisingContext(on_promise_resolved=outer_handler, log_level_for_errors=logging.DEBUG):
        async with PromisingContext(on_promise_resolved=[inner_handler], log_level_for_errors=logging.DEBUG):
            Promise(prefill_result="a")
            promise = Promise(resolver=failing)
            with pytest.raises(KeyError):
                await promise
    assert outer_events[0] == "a" and inner_events[0] == "a"
    assert isinstance(outer_events[1], KeyError) and outer_events[1] is inner_events[1]


def test_non_coroutine_handlers_are_rejected() -> None:
    def handler(promise: object, result: object) -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        PromisingContext(on_promise_resolved=handler)
    with pytest.raises(TypeError, match="async def"):
        PromisingContext().on_promise_resolved(handler)


def test_sentinels_refuse_truth_testing() -> None:
    with pytest.raises(RuntimeError, match="is"):
        bool(NO_VALUE)
