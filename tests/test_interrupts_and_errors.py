"""Interrupts (Ctrl+C, cancelling the task that leaves the context) and how errors are reported."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from miniagents import (
    InteractionContext,
    Message,
    MiniAgent,
    MiniAgents,
    miniagent,
)

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def interrupt_when_running(process: subprocess.Popen[str]) -> tuple[str, str, float]:
    """Send SIGINT once the child printed "running"; its output, and the seconds from the signal to its end."""
    assert process.stdout is not None
    assert process.stdout.readline() == "running\n"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    try:
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()  # (a child that hangs is not left behind)
    return out, err, time.monotonic() - signalled


def test_sigint_leaves_the_run_within_a_second_and_cancels_the_agents() -> None:
    process = run_python(
        """
        import asyncio, sys
        from miniagents import MiniAgents, miniagent

        steps = []

        @miniagent
        async def sub(ctx):
            for _ in range(100):
                steps.append("sub")
                await asyncio.sleep(0.1)

        @miniagent
        async def slow(ctx):
            ctx.reply(sub.inquire())
            for _ in range(100):
                steps.append("slow")
                await asyncio.sleep(0.1)

        async def main():
            slow.inquire()
            print("running", flush=True)
            await asyncio.sleep(30)

        try:
            MiniAgents().run(main())
        except KeyboardInterrupt:
            print("interrupted", len(steps), flush=True)
            sys.exit(3)
        """
    )
    out, err, elapsed = interrupt_when_running(process)
    assert process.returncode == 3, err
    assert out.startswith("interrupted")
    assert int(out.split()[1]) < 30  # both agents stopped at the signal (about 2 x 4 steps), not after 100 each
    assert elapsed < 1.0 + 0.5  # the context leaves within a second; the rest is the interpreter's exit


def test_sigint_leaves_run_although_an_agent_ignores_its_cancellation() -> None:
    process = run_python(
        """
        import asyncio, sys, time
        from miniagents import MiniAgents, miniagent

        @miniagent
        async def stubborn(ctx):
            while True:
                try:
                    await asyncio.sleep(100)
                except asyncio.CancelledError:
                    pass  # ignored, again and again

        async def main():
            stubborn.inquire()
            print("running", flush=True)
            await asyncio.sleep(30)

        try:
            MiniAgents().run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    out, err, elapsed = interrupt_when_running(process)  # (asyncio.run's shutdown waited for the agent forever)
    assert (process.returncode, out) == (3, "interrupted\n"), err
    assert elapsed < 2 * 1.0 + 1.0  # the context's grace, then the loop's for the tasks it still has
    assert "ignored their cancellation for 1.0 s and are left behind as the event loop closes: STUBBORN" in err
    assert "Task was destroyed" not in err and "Exception ignored" not in err and "Traceback" not in err


def test_run_does_what_asyncio_run_does_at_the_end_within_a_grace(caplog: pytest.LogCaptureFixture) -> None:
    ended: list[str] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                ended.append("stubborn cancelled")

    async def polite() -> None:
        try:
            await asyncio.sleep(100)
        finally:
            ended.append("polite cancelled")

    async def failing() -> None:
        try:
            await asyncio.sleep(100)
        finally:
            raise ValueError("failed while cancelled")

    left_running: list[asyncio.Task[None]] = []

    async def main() -> str:
        loop = asyncio.get_running_loop()
        for name, function in [("stubborn", stubborn), ("polite", polite), ("failing", failing)]:
            left_running.append(loop.create_task(function(), name=name))
        await asyncio.sleep(0)
        return "result"

    reported: list[dict[str, Any]] = []
    policy_loop = asyncio.new_event_loop
    started = time.monotonic()

    def new_event_loop() -> asyncio.AbstractEventLoop:  # (to see what the shutdown reports to the loop)
        loop = policy_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        return loop

    with caplog.at_level(logging.WARNING, logger="miniagents"):
        original, asyncio.new_event_loop = asyncio.new_event_loop, new_event_loop
        try:
            assert MiniAgents().run(main()) == "result"
        finally:
            asyncio.new_event_loop = original
    assert time.monotonic() - started < 1.0 + 1.0  # the stubborn task got its second, no more
    assert sorted(set(ended)) == ["polite cancelled", "stubborn cancelled"]
    assert [str(context["exception"]) for context in reported] == ["failed while cancelled"]
    assert "1 task(s) ignored their cancellation for 1.0 s and are left behind" in caplog.text
    assert "stubborn" in caplog.text
    with pytest.raises(RuntimeError):
        asyncio.get_event_loop_policy().get_event_loop().run_until_complete(asyncio.sleep(0))


async def test_cancelling_the_task_that_leaves_the_context_cancels_everything() -> None:
    steps: list[str] = []
    released = asyncio.Event()

    @miniagent
    async def late(ctx: InteractionContext) -> None:
        for _ in range(300):
            steps.append("late")
            await asyncio.sleep(0.01)

    @miniagent
    async def busy(ctx: InteractionContext) -> None:
        await released.wait()
        late.inquire()  # started while the context is being left
        for _ in range(300):
            steps.append("busy")
            await asyncio.sleep(0.01)

    async def leave() -> None:
        async with MiniAgents():
            busy.inquire()

    async with asyncio.timeout(10):
        leaving = asyncio.create_task(leave())
        await asyncio.sleep(0.05)
        released.set()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert time.monotonic() - started < 1.0
    count = len(steps)
    await asyncio.sleep(0.1)
    assert len(steps) == count < 40  # nothing of ours runs any more


async def test_an_agent_that_ignores_cancellation_does_not_keep_the_context_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn_ended = asyncio.Event()

    @miniagent
    async def stubborn(ctx: InteractionContext) -> None:
        deadline = time.monotonic() + 1.5  # longer than the context waits
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass
        stubborn_ended.set()

    async def leave() -> None:
        async with MiniAgents():
            stubborn.inquire()

    with caplog.at_level(logging.WARNING, logger="miniagents"):
        leaving = asyncio.create_task(leave())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert time.monotonic() - started < 1.5
    assert any("ignored their cancellation" in record.getMessage() for record in caplog.records)
    await asyncio.wait_for(stubborn_ended.wait(), 5)


def test_a_fatal_error_in_an_agent_nobody_consumes_is_not_swallowed() -> None:
    for error, expected in [("SystemExit(7)", 7), ("KeyboardInterrupt()", None)]:
        process = run_python(
            f"""
            import asyncio
            from miniagents import MiniAgents, miniagent

            @miniagent
            async def fatal(ctx):
                raise {error}

            async def main():
                fatal.inquire()
                await asyncio.sleep(0.05)

            MiniAgents().run(main())
            print("swallowed")
            """
        )
        out, err = process.communicate(timeout=30)
        assert "swallowed" not in out
        if expected is None:
            assert process.returncode != 0 and "KeyboardInterrupt" in err
        else:
            assert process.returncode == expected


async def test_a_retrieved_error_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        raise ValueError("handled by the caller")

    @miniagent
    async def caller(ctx: InteractionContext) -> None:
        try:
            await failing.inquire()
        except ValueError:
            ctx.reply("recovered")

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            assert [message.text for message in await caller.inquire()] == ["recovered"]
    assert [record for record in caplog.records if record.exc_info] == []


async def test_an_unretrieved_error_is_logged_once_naming_the_agent_and_its_callers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @miniagent
    async def deepest(ctx: InteractionContext) -> None:
        raise ValueError("nobody looks")

    @miniagent
    async def middle(ctx: InteractionContext) -> None:
        deepest.inquire()

    @miniagent
    async def top(ctx: InteractionContext) -> None:
        middle.inquire()

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            top.inquire()
            await asyncio.sleep(0.01)
            assert [record for record in caplog.records if record.exc_info] == []  # not before the end
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1
    assert "the agent DEEPEST (called by MIDDLE <- TOP) failed" in logged[0].getMessage()
    assert "never retrieved" in logged[0].getMessage()


async def test_an_error_passed_on_by_agents_that_did_not_handle_it_names_where_it_was_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @miniagent
    async def deepest(ctx: InteractionContext) -> None:
        raise ValueError("nobody handles it")

    @miniagent
    async def middle(ctx: InteractionContext) -> None:
        await deepest.inquire()  # (raises it here: MIDDLE fails with it)

    @miniagent
    async def top(ctx: InteractionContext) -> None:
        await middle.inquire()

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            top.inquire()
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert logged.getMessage() == (
        "the agent TOP failed (raised in the agent DEEPEST (called by MIDDLE <- TOP)) (the error was never retrieved)"
    )
    assert str(logged.exc_info[1]) == "nobody handles it"  # type: ignore[index]


async def test_an_error_caught_then_reraised_by_an_agent_is_reported_for_that_agent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        raise ValueError("passed on")

    @miniagent
    async def passing_on(ctx: InteractionContext) -> None:
        await failing.inquire()  # retrieves it, then fails with it

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            passing_on.inquire()
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert "the agent PASSING_ON failed" in logged.getMessage()


async def test_re_raising_a_stored_error_keeps_its_traceback_the_same_size() -> None:
    @miniagent
    async def failing(ctx: InteractionContext) -> None:
        raise ValueError("stored")

    def traceback_length(error: BaseException) -> int:
        length, traceback = 0, error.__traceback__
        while traceback is not None:
            length, traceback = length + 1, traceback.tb_next
        return length

    async with MiniAgents():
        replies = failing.inquire()
        lengths = set()
        for _ in range(1000):
            try:
                await replies
            except ValueError as error:
                lengths.add(traceback_length(error))
        assert len(lengths) == 1


async def test_fork_keeps_the_subclass_and_its_state() -> None:
    class Scripted(MiniAgent):
        prompts: list[str]

    async def function(ctx: InteractionContext) -> None:
        ctx.reply("x")

    agent = Scripted(function, alias="SCRIPTED")
    agent.prompts = ["a"]
    forked = agent.fork(alias="FORKED", extra=1)
    assert type(forked) is Scripted and forked.prompts == ["a"] and forked.alias == "FORKED"
    assert agent.alias == "SCRIPTED" and agent._partial_kwargs == {}


async def test_model_copy_gives_a_message_that_matches_its_new_content() -> None:
    async with MiniAgents():
        original = Message("before", role="user")
        assert str(original) == "before" and original.as_promise is original.as_promise
        copied = original.model_copy(update={"text": "after"})
        assert str(copied) == "after" and copied.hash_key == Message("after", role="user").hash_key
        assert (await copied.as_promise).text == "after" and copied.role == "user"  # type: ignore[attr-defined]
        assert original.model_copy() == original and original.text == "before"


async def test_cancellation_of_the_context_reaches_a_call_made_at_top_level() -> None:
    @miniagent
    async def forever(ctx: InteractionContext) -> None:
        await asyncio.sleep(60)

    async def leave() -> Any:
        async with MiniAgents():
            return forever.inquire()

    async with asyncio.timeout(5):
        task = asyncio.create_task(leave())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_background_task_of_an_agent_that_fails_is_logged_naming_the_agent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def side_job() -> None:
        raise OSError("disk full")

    @miniagent
    async def worker(ctx: InteractionContext) -> None:
        ctx.wait_for(side_job())

    @miniagent
    async def boss(ctx: InteractionContext) -> None:
        await worker.inquire()

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            await boss.inquire()
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert logged.getMessage() == "an error occurred in an async background task of the agent WORKER (called by BOSS)"
    assert isinstance(logged.exc_info[1], OSError)  # type: ignore[index]


async def test_an_agent_error_in_a_users_background_task_names_where_it_was_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @miniagent
    async def failing_agent(ctx: InteractionContext) -> None:
        raise ValueError("boom in the leaf")

    @miniagent
    async def forwarding_agent(ctx: InteractionContext) -> None:
        ctx.reply(failing_agent.inquire())

    async def consume() -> None:
        await forwarding_agent.inquire()

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents() as context:
            context.start_asap(consume())
    assert [r.getMessage() for r in caplog.records if "boom in the leaf" in str(r.exc_info)] == [
        "an error occurred in an async background task (raised in the agent FAILING_AGENT (called by FORWARDING_AGENT))"
    ]


def test_sigint_while_the_main_coroutine_blocks_is_not_lost_when_it_then_returns() -> None:
    process = run_python(
        """
        import asyncio, sys, time
        from miniagents import MiniAgents

        async def main():
            print("running", flush=True)
            time.sleep(1.5)  # blocking: Ctrl+C comes in meanwhile, and the coroutine returns without awaiting
            return "returned"

        try:
            print(MiniAgents().run(main()), flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    out, err, _ = interrupt_when_running(process)  # (asyncio.run raises KeyboardInterrupt too)
    assert (process.returncode, out) == (3, "interrupted\n"), err


def test_a_task_that_exits_when_cancelled_at_the_end_leaves_no_coroutine_never_awaited() -> None:
    process = run_python(
        """
        import asyncio, sys
        from miniagents import MiniAgents

        async def exiting():
            try:
                await asyncio.sleep(30)
            finally:
                sys.exit(4)  # raised out of the loop as the shutdown cancels it

        async def main():
            asyncio.get_running_loop().create_task(exiting())
            await asyncio.sleep(0)

        MiniAgents().run(main())
        """
    )
    _, err = process.communicate(timeout=30)
    assert process.returncode == 4, err
    assert "never awaited" not in err and "Task was destroyed" not in err


def test_run_works_where_no_signal_handler_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise ValueError("signal only works in main thread of the main interpreter")

    async def main() -> str:
        await asyncio.sleep(0)
        return "result"

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # (else `run` would not try)
    with monkeypatch.context() as patched:
        patched.setattr(signal, "signal", refuse)
        result = MiniAgents().run(main())
    assert result == "result"  # (as asyncio.run: it goes without Ctrl+C handling)


async def test_a_reply_whose_stream_fails_unread_is_logged_naming_the_agent_and_its_callers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first report came from the message's own resolution, which names no agent, and it won over the one the
    agent call made: "an error occurred in an async background task (the error was never retrieved)"."""

    @miniagent
    async def streaming_agent(ctx: InteractionContext) -> None:
        async def tokens(_: dict[str, Any]) -> AsyncIterator[str]:
            yield "half"
            raise ConnectionError("the stream broke")

        ctx.reply(Message.promise(start_asap=True, message_token_streamer=tokens))

    @miniagent
    async def caller(ctx: InteractionContext) -> None:
        streaming_agent.inquire()

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            await caller.inquire()
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert "the agent STREAMING_AGENT (called by CALLER)" in logged.getMessage()
    assert isinstance(logged.exc_info[1], ConnectionError)  # type: ignore[index]


@pytest.mark.parametrize("suppress_errors", [True, False])
async def test_a_detached_task_that_fails_is_logged_naming_the_agent_it_was_started_in(
    caplog: pytest.LogCaptureFixture, suppress_errors: bool
) -> None:
    """A detached task (an observer's work) starts in an empty context: its error named no agent at all."""

    async def side_job() -> None:
        raise OSError("disk full")

    @miniagent
    async def worker(ctx: InteractionContext) -> None:
        task = MiniAgents.get_current().start_detached(
            side_job(), suppress_errors=suppress_errors, log_level_for_errors=logging.ERROR
        )
        await asyncio.wait([task])  # (not awaited: the task's error is the context's to log)

    @miniagent
    async def boss(ctx: InteractionContext) -> None:
        await worker.inquire()

    with caplog.at_level(logging.DEBUG, logger="miniagents"):
        async with MiniAgents():
            await boss.inquire()
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert logged.getMessage() == (
        "an error occurred in an async background task started in the agent WORKER (called by BOSS)"
    )
    assert isinstance(logged.exc_info[1], OSError)  # type: ignore[index]
