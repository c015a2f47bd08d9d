"""The worker-thread bridge, and ``llama_cpp_agent`` running SmolLM2 in process with xllamacpp (layer 3)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from miniagents import AgentCallCancelledError, MiniAgents
from miniagents.ext.llm import AssistantMessage, LLMError, ToolCallMessage, ToolResultMessage, UserMessage
from miniagents.ext.llm._thread_bridge import aiterate_in_thread, astream_from_thread

NO_HANG = 10


def _threads_named(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def _wait_until_gone(name: str, timeout: float = NO_HANG) -> bool:
    deadline = time.monotonic() + timeout
    for thread in _threads_named(name):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not _threads_named(name)


# --- the bridge ------------------------------------------------------------------------------------------------


async def test_bridge_yields_items_in_order() -> None:
    items = [item async for item in aiterate_in_thread(lambda: iter(range(5)), thread_name="bridge-order")]
    assert items == [0, 1, 2, 3, 4]
    assert _wait_until_gone("bridge-order")


async def test_bridge_runs_the_iterator_in_another_thread_without_blocking_the_loop() -> None:
    loop_released = threading.Event()
    thread_ids = []

    def produce() -> Iterator[str]:
        thread_ids.append(threading.get_ident())
        yield "first"
        # Blocks until the event loop (not blocked by us) sets the event from a task.
        assert loop_released.wait(NO_HANG)
        yield "second"

    async def release() -> None:
        loop_released.set()

    items = []
    async for item in aiterate_in_thread(produce, thread_name="bridge-nonblocking"):
        items.append(item)
        if item == "first":
            asyncio.get_running_loop().create_task(release())
    assert items == ["first", "second"]
    assert thread_ids != [threading.get_ident()]


@pytest.mark.parametrize("where", ["start", "middle"])
async def test_bridge_delivers_a_thread_error_after_earlier_items(where: str) -> None:
    boom = RuntimeError("thread failure")

    def produce() -> Iterator[int]:
        if where == "start":
            raise boom
        yield 1
        yield 2
        raise boom

    items = []
    with pytest.raises(RuntimeError) as raised:
        async for item in aiterate_in_thread(produce, thread_name=f"bridge-error-{where}"):
            items.append(item)
    assert raised.value is boom
    assert items == ([] if where == "start" else [1, 2])
    assert _wait_until_gone(f"bridge-error-{where}")


def _endless(closed: threading.Event) -> Iterator[int]:
    number = 0
    try:
        while True:
            time.sleep(0.001)
            yield number
            number += 1
    finally:
        closed.set()


async def test_bridge_stops_the_thread_when_the_consumer_stops_early() -> None:
    closed = threading.Event()
    stream = aiterate_in_thread(lambda: _endless(closed), thread_name="bridge-early-stop")
    assert await anext(stream) == 0
    await stream.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(closed.wait, NO_HANG)
    assert _wait_until_gone("bridge-early-stop")


async def test_bridge_stops_the_thread_when_the_consumer_is_cancelled() -> None:
    closed = threading.Event()
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in aiterate_in_thread(lambda: _endless(closed), thread_name="bridge-cancel"):
            got_one.set()

    task = asyncio.get_running_loop().create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(closed.wait, NO_HANG)
    assert _wait_until_gone("bridge-cancel")


def test_bridge_thread_exits_when_the_event_loop_is_closed_under_it() -> None:
    closed = threading.Event()
    loop = asyncio.new_event_loop()
    stream = aiterate_in_thread(lambda: _endless(closed), thread_name="bridge-loop-closed")
    try:
        assert loop.run_until_complete(anext(stream)) == 0
    finally:
        loop.close()  # the generator is never closed: the thread must notice the dead loop by itself
    assert closed.wait(NO_HANG)
    assert _wait_until_gone("bridge-loop-closed")
    del stream


async def test_bridge_lock_makes_concurrent_iterations_queue() -> None:
    lock = threading.Lock()
    events: list[str] = []

    def produce(name: str) -> Iterator[str]:
        for index in range(3):
            events.append(f"{name}{index}")
            time.sleep(0.005)
            yield f"{name}{index}"

    async def consume(name: str) -> list[str]:
        return [item async for item in aiterate_in_thread(lambda: produce(name), lock=lock, thread_name="bridge-lock")]

    first, second = await asyncio.gather(consume("a"), consume("b"))
    assert (first, second) == (["a0", "a1", "a2"], ["b0", "b1", "b2"])
    assert events in (["a0", "a1", "a2", "b0", "b1", "b2"], ["b0", "b1", "b2", "a0", "a1", "a2"])


async def test_bridge_callback_producer_is_told_to_stop_when_the_consumer_stops() -> None:
    answers: list[bool] = []
    finished = threading.Event()

    def produce(emit: Any) -> None:
        try:
            for number in range(10_000):
                stop = emit(number)
                answers.append(stop)
                if stop:
                    return
                time.sleep(0.001)
        finally:
            finished.set()

    stream = astream_from_thread(produce, thread_name="bridge-callback-stop")
    assert await anext(stream) == 0
    await stream.aclose()
    assert await asyncio.to_thread(finished.wait, NO_HANG)
    assert answers[-1] is True
    assert answers.count(True) == 1
    assert _wait_until_gone("bridge-callback-stop")


async def test_bridge_a_stream_cancelled_while_waiting_for_the_lock_never_starts() -> None:
    lock = threading.Lock()
    started: list[str] = []
    lock.acquire()
    try:

        async def consume() -> None:
            def produce(emit: Any) -> None:
                started.append("produced")
                emit(1)

            async for _ in astream_from_thread(produce, lock=lock, thread_name="bridge-queued"):
                pass

        task = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        lock.release()
    assert _wait_until_gone("bridge-queued")
    assert started == []


# --- llama_cpp_agent in process (SmolLM2-135M-Instruct) --------------------------------------------------------


@pytest.fixture
def llama_cpp_module(local_model_path: Path) -> Any:
    """The agent's module; the default model file is in the cache (``local_model_path``)."""
    from miniagents.ext.llm import llama_cpp

    assert llama_cpp.default_model_path(fetch=False) == local_model_path
    return llama_cpp


async def test_llama_cpp_agent_streams_tokens_with_metadata(llama_cpp_module: Any) -> None:
    agent = llama_cpp_module.llama_cpp_agent
    async with MiniAgents():
        replies = agent.inquire(UserMessage("Name three colors."), max_tokens=12, temperature=0.0)
        (message_promise,) = [mp async for mp in replies]
        assert message_promise.preliminary_metadata.agent_alias == "LLAMA_CPP_AGENT"
        tokens = [token async for token in message_promise]
        message = await message_promise
    assert len(tokens) > 1
    assert message.text == "".join(tokens)
    assert message.text.strip()
    assert isinstance(message, llama_cpp_module.LlamaCppMessage)
    assert message.role == "assistant"
    assert message.model == "SmolLM2-135M-Instruct.Q4_1"
    assert message.agent_alias == "LLAMA_CPP_AGENT"
    assert message.choices[0].finish_reason in ("stop", "length")
    assert message.usage.prompt_tokens > 0
    assert 0 < message.usage.completion_tokens <= 12
    assert message.usage.total_tokens == message.usage.prompt_tokens + message.usage.completion_tokens
    if message.choices[0].finish_reason == "length":
        assert message.usage.completion_tokens == 12
    assert message.timings.predicted_per_second > 0
    assert _wait_until_gone("miniagents-llama-cpp")  # the worker thread ends with the generation


async def test_llama_cpp_agent_answers_after_a_lone_surrogate_in_the_history(llama_cpp_module: Any) -> None:
    # (llama.cpp's JSON parser refused the request: "invalid string: surrogate U+D800..U+DBFF must be followed by
    # U+DC00..U+DFFF", so a conversation with half an emoji in it failed on every later turn)
    history = [UserMessage("hi"), AssistantMessage("half \ud83d"), UserMessage("Say ok.")]
    async with MiniAgents():
        (message,) = await llama_cpp_module.llama_cpp_agent.inquire(history, max_tokens=4, temperature=0.0)
    assert message.text.strip()
    assert message.usage.prompt_tokens > 0


async def test_llama_cpp_agent_non_stream_and_usage_agree_with_streaming(llama_cpp_module: Any) -> None:
    agent = llama_cpp_module.llama_cpp_agent.fork(max_tokens=6, temperature=0.0, system="You are terse.")
    async with MiniAgents():
        (whole_promise,) = [mp async for mp in agent.inquire("Say something.", stream=False)]
        whole_tokens = [token async for token in whole_promise]
        whole = await whole_promise
        (streamed,) = await agent.inquire("Say something.", stream=True)
    assert whole_tokens == [whole.text]
    assert whole.model == streamed.model == "SmolLM2-135M-Instruct.Q4_1"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert streamed.usage.prompt_tokens == whole.usage.prompt_tokens
    assert streamed.text == whole.text  # temperature 0: the same answer both ways
    if whole.choices[0].finish_reason == streamed.choices[0].finish_reason == "length":
        assert streamed.usage.completion_tokens == whole.usage.completion_tokens == 6


def test_llama_cpp_model_is_loaded_once_and_shared_across_loops_and_concurrent_inquiries(
    llama_cpp_module: Any,
) -> None:
    agent = llama_cpp_module.llama_cpp_agent.fork(max_tokens=4, temperature=0.0, reply_metadata={"run": "r"})

    async def three_at_once() -> list[str]:
        replies = await asyncio.gather(*(agent.inquire(f"Count to {n}.") for n in (1, 2, 3)))
        return [reply[0].text for reply in replies]

    first = MiniAgents().run(three_at_once())
    models_after_first = dict(llama_cpp_module._models)
    second = MiniAgents().run(three_at_once())
    assert len(first) == len(second) == 3
    assert all(text.strip() for text in first + second)
    assert first == second  # temperature 0, one generation at a time: the same answers
    assert llama_cpp_module._models == models_after_first
    default_keys = [key for key in llama_cpp_module._models if key[0].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")]
    assert len(default_keys) == 1


class _RecordingServer:
    """Wraps a loaded ``xllamacpp.Server``: records what every streaming callback answered, and when."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.answers: list[tuple[float, bool]] = []
        self.returned_at: list[float] = []

    def handle_chat_completions(self, request: dict[str, Any], callback: Any = None) -> Any:
        def recording(chunk: dict[str, Any]) -> bool:
            answer = bool(callback(chunk))
            self.answers.append((time.monotonic(), answer))
            return answer

        try:
            return self.server.handle_chat_completions(request, recording if callback else None)
        finally:
            self.returned_at.append(time.monotonic())


@pytest.mark.parametrize("how", ["call.cancel", "task.cancel"])
async def test_cancelling_stops_the_generation_at_the_next_token(llama_cpp_module: Any, how: str) -> None:
    agent = llama_cpp_module.llama_cpp_agent.fork(temperature=0.0)
    async with MiniAgents() as mini_agents:
        await agent.inquire("Hi", max_tokens=1)  # loads the model
        (shared,) = [m for k, m in llama_cpp_module._models.items() if k[1:] == (2048, 1)]
        recorder = _RecordingServer(shared.server)
        shared.server = recorder
        try:
            # the reply sequence ends only when the agent loop does: take the message as soon as it starts
            replies = agent.inquire("Write a long story about a dragon.", max_tokens=400)
            message_promise = await anext(aiter(replies))
            seen = 0
            async for _ in message_promise:
                seen += 1
                if seen == 5:
                    break
            cancelled_at = time.monotonic()
            if how == "call.cancel":  # the core's cancellation of an agent call (and the work it drives)
                replies.cancel()
            else:  # the asyncio cancellation of the task that streams the tokens (what interrupting a context does)
                for task in list(mini_agents.child_tasks):
                    task.cancel()
            await asyncio.gather(*mini_agents.child_tasks, return_exceptions=True)
            assert await asyncio.to_thread(_wait_until_gone, "miniagents-llama-cpp")
            if how == "call.cancel":
                with pytest.raises(AgentCallCancelledError):
                    await message_promise
            after = [answer for at, answer in recorder.answers if at >= cancelled_at]
            assert after[-1:] == [True]  # the callback told llama.cpp to stop ...
            assert len(after) <= 3  # ... at the next token (a chunk or two may have been on their way)
            assert len(recorder.answers) < 100  # far from the 400 tokens asked for
            assert recorder.returned_at[-1] - cancelled_at < 2
            # The model is free and works for the next inquiry.
            (next_reply,) = await asyncio.wait_for(agent.inquire("Name a color.", max_tokens=8), NO_HANG)
            assert next_reply.text.strip()
        finally:
            shared.server = recorder.server


async def test_llama_cpp_agent_bad_model_path_is_an_llm_error_at_token_level(
    llama_cpp_module: Any, tmp_path: Path
) -> None:
    bad_file = tmp_path / "not-a-model.gguf"
    bad_file.write_bytes(b"this is not a gguf file")
    agent = llama_cpp_module.llama_cpp_agent.fork(model_path=bad_file)
    async with MiniAgents():
        (message_promise,) = [mp async for mp in agent.inquire("hi")]
        with pytest.raises(LLMError) as raised:
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    error = raised.value
    assert (error.provider, error.model) == ("llama_cpp", "not-a-model")
    assert isinstance(error.__cause__, ValueError)
    assert "not-a-model.gguf is not a GGUF file" in str(error)


async def test_llama_cpp_agent_prompt_larger_than_context_is_an_llm_error(llama_cpp_module: Any) -> None:
    agent = llama_cpp_module.llama_cpp_agent
    async with MiniAgents():
        (message_promise,) = [mp async for mp in agent.inquire("word " * 3000)]
        with pytest.raises(LLMError, match="exceeds the available context size") as raised:
            await asyncio.wait_for(message_promise.aresolve(), NO_HANG)
    assert raised.value.provider == "llama_cpp"
    # ... and the model still answers afterwards.
    async with MiniAgents():
        (reply,) = await agent.inquire("Hi", max_tokens=4)
    assert reply.text.strip()


class _Verdict(pydantic.BaseModel):
    verdict: str
    score: int


async def test_llama_cpp_agent_structured_output_and_a_forced_tool_call(llama_cpp_module: Any) -> None:
    def get_weather(city: str) -> str:
        """Get the current weather of a city."""
        return f"sunny, 21 C in {city}"

    judge = llama_cpp_module.llama_cpp_agent.fork(output_type=_Verdict, max_tokens=64, temperature=0.0)
    weather = llama_cpp_module.llama_cpp_agent.fork(
        tools=[get_weather], tool_choice="required", parallel_tool_calls=False, max_tokens=128, temperature=0.0
    )
    async with MiniAgents():
        (verdict,) = await asyncio.wait_for(judge.inquire(UserMessage("Judge: 'The sky is green.'")), 60)
        messages = await asyncio.wait_for(weather.inquire(UserMessage("What is the weather in Paris?")), 60)
    assert isinstance(verdict, llama_cpp_module.LlamaCppMessage)
    assert isinstance(verdict.output, _Verdict)
    call = messages[0]
    assert isinstance(call, ToolCallMessage)
    assert call.tool_name == "get_weather"
    assert isinstance(call.arguments["city"], str)
    assert isinstance(messages[1], ToolResultMessage)
    assert messages[1].text.startswith("sunny, 21 C in ")


def test_the_research_pipeline_example_runs_on_the_local_model(llama_cpp_module: Any) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    completed = subprocess.run(
        [sys.executable, str(root / "examples" / "research_pipeline.py"), "the Eiffel Tower"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert '[researcher] calls lookup({"topic": ' in out  # the forced tool call, streamed
    assert "[researcher] lookup returned: The Eiffel Tower is a wrought-iron tower in Paris" in out
    assert "\n[writer] " in out
    assert "\nVerdict: " in out and "/10): " in out  # the typed verdict validated
