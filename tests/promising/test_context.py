from __future__ import annotations

import asyncio
import logging

import pytest

from miniagents.promising import PromisingContext


async def test_leaving_the_context_waits_for_background_tasks_spawned_meanwhile() -> None:
    done: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0.01)
        done.append("child")

    async def parent(context: PromisingContext) -> None:
        await asyncio.sleep(0.01)
        context.start_asap(child())
        done.append("parent")

    async with PromisingContext() as context:
        context.start_asap(parent(context))
    assert done == ["parent", "child"]
    assert not context.child_tasks


async def test_start_asap_logs_exceptions_once_and_reraises_unless_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    error = ValueError("boom")

    async def fail() -> None:
        raise error

    async with PromisingContext() as context:
        with caplog.at_level(logging.DEBUG, logger="miniagents"):
            task = context.start_asap(fail(), log_level_for_errors=logging.WARNING)
            with pytest.raises(ValueError):
                await task
            quiet = context.start_asap(fail(), suppress_errors=True, log_level_for_errors=logging.WARNING)
            assert await quiet is None
            await context.aflush_tasks()
    records = [record for record in caplog.records if record.exc_info and record.exc_info[1] is error]
    assert len(records) == 1  # the same instance is logged once
    assert records[0].levelno == logging.WARNING


async def test_start_asap_does_not_log_base_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    async def interrupted() -> None:
        raise GeneratorExit

    async with PromisingContext() as context:
        with caplog.at_level(logging.DEBUG, logger="miniagents"):
            assert await context.start_asap(interrupted(), suppress_errors=True) is None
    assert not caplog.records


async def test_activate_is_not_reentrant_and_context_can_be_reused() -> None:
    context = PromisingContext()
    context.activate()
    try:
        with pytest.raises(RuntimeError, match="already active"):
            context.activate()
        assert PromisingContext.get_current() is context
    finally:
        await context.afinalize()
    with pytest.raises(RuntimeError):
        PromisingContext.get_current()
    async with context:
        assert PromisingContext.get_current() is context


async def test_parent_is_the_context_active_at_construction() -> None:
    async with PromisingContext() as outer:
        inner = PromisingContext()
        assert inner.parent is outer
    assert PromisingContext().parent is None


def test_plain_with_is_refused() -> None:
    with pytest.raises(RuntimeError, match="async with"), PromisingContext():
        pass


async def test_run_inside_a_running_loop_is_refused_without_leaking_the_coroutine() -> None:
    async def main() -> int:
        return 1

    with pytest.raises(RuntimeError, match="arun"):
        PromisingContext().run(main())
    assert await PromisingContext().arun(main()) == 1


def test_run_blocks_and_returns_the_result() -> None:
    async def main() -> str:
        PromisingContext.get_current()
        return "ok"

    assert PromisingContext().run(main()) == "ok"


async def test_afinalize_restores_the_previous_context() -> None:
    async with PromisingContext() as outer:
        inner = PromisingContext().activate()
        assert PromisingContext.get_current() is inner
        await inner.afinalize()
        assert PromisingContext.get_current() is outer


async def test_suppress_errors_never_swallows_the_tasks_own_cancellation() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with PromisingContext() as context:
        task = context.start_asap(forever(), suppress_errors=True)
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the coroutine never ran
async def test_a_background_task_cancelled_before_it_ran_does_not_hang_the_flush() -> None:
    async def never_started() -> None:
        raise AssertionError("cancelled before its first step")

    async with asyncio.timeout(5):
        async with PromisingContext() as context:
            context.start_soon(never_started())
            (task,) = context.child_tasks
            task.cancel()
    assert task.cancelled()
    assert not context.child_tasks
