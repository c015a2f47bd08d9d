"""SIGKILL mid-stream: every completed message, every call with its status, and the partial text up to its last
flush are in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from miniagents.ext.llm import AssistantMessage, UserMessage
from miniagents.store import PostgresMessageStore, SQLiteMessageStore

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from types import SimpleNamespace
    from miniagents import MiniAgents
    from miniagents.ext.llm import AssistantMessage, UserMessage
    from miniagents.store import PostgresMessageStore, SQLiteMessageStore

    kind, location, prefix = sys.argv[1:]
    store_class = SQLiteMessageStore if kind == "sqlite" else PostgresMessageStore
    store = store_class(location, table_prefix=prefix)

    def call(call_id, alias, parent=None):
        return SimpleNamespace(call_id=call_id, parent_call=parent, agent_alias=alias, kwargs=None, status="running",
                               started_at=time.time(), ended_at=None, error=None)

    async def tokens(_):
        for index in range(10):
            yield f"t{index} "
            await asyncio.sleep(0.01)
        print("STREAMED", flush=True)
        await asyncio.Event().wait()  # the model hangs: the process is killed meanwhile

    async def main():
        recorder = store.observer()
        done = call("done", "ECHO")
        recorder.on_call_started(done)
        recorder.on_call_input(done, 0, UserMessage("q1").as_promise)
        recorder.on_call_reply(done, 0, AssistantMessage("a1").as_promise)
        done.status, done.ended_at = "finished", time.time()
        recorder.on_call_ended(done)
        live = call("live", "LLM")
        recorder.on_call_started(live)
        recorder.on_call_input(live, 0, UserMessage("q2").as_promise)
        recorder.on_call_reply(live, 0, AssistantMessage.promise(message_token_streamer=tokens, model="m"))
        await asyncio.Event().wait()

    MiniAgents().run(main())
    """
)


def _kill_mid_stream(kind: str, location: str, prefix: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, location, prefix],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == "STREAMED\n", process.stderr.read() if process.stderr else line
        time.sleep(1.0)  # more than a flush interval (0.25 s) plus a write
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


async def _check(store: Any) -> None:
    done = await store.aload_call_tree("done")
    assert (done.status, done.inputs, done.replies) == ("finished", (UserMessage("q1"),), (AssistantMessage("a1"),))
    live = await store.aload_call_tree("live")
    assert (live.status, live.ended_at, live.inputs) == ("running", None, (UserMessage("q2"),))
    [partial] = live.replies
    assert (partial.text, partial.partial, partial.partial_status, partial.model) == (
        "".join(f"t{index} " for index in range(10)),
        True,
        "streaming",
        "m",
    )
    await store.aclose()


def test_sigkill_mid_stream_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    _kill_mid_stream("sqlite", path, "miniagents_")
    asyncio.run(_check(SQLiteMessageStore(path)))


def test_sigkill_mid_stream_postgres(postgres_url: str) -> None:
    _kill_mid_stream("postgres", postgres_url, "crash_")
    asyncio.run(_check(PostgresMessageStore(postgres_url, table_prefix="crash_")))


HISTORY_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from miniagents import MiniAgents
    from miniagents.ext.llm import AssistantMessage, UserMessage
    from miniagents.store import open_store, store_history_agent

    async def tokens(_):
        for index in range(5):
            yield f"w{index} "
        print("STREAMED", flush=True)
        await asyncio.Event().wait()  # the model hangs: the process is killed meanwhile

    async def main():
        agent = store_history_agent.fork(store=open_store(sys.argv[1]), history_id="chat")
        await agent.inquire([UserMessage("first question"), AssistantMessage("first answer", model="m")])
        answer = AssistantMessage.promise(message_token_streamer=tokens, model="m")
        await agent.inquire([UserMessage("second question"), answer])

    MiniAgents().run(main())
    """
)


def test_a_chat_history_resumes_after_sigkill_mid_answer(tmp_path: Path) -> None:
    from miniagents import MiniAgents
    from miniagents.store import open_store, store_history_agent

    path = str(tmp_path / "chat.db")
    process = subprocess.Popen(
        [sys.executable, "-c", HISTORY_CHILD, path],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "STREAMED\n", process.stderr.read() if process.stderr else ""
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)

    async def resume() -> tuple[Any, ...]:
        async with MiniAgents():
            agent = store_history_agent.fork(store=open_store(path), history_id="chat")
            return await agent.inquire(UserMessage("are you there?"))

    history = asyncio.run(resume())
    assert [(type(m).__name__, m.text, getattr(m, "partial", False)) for m in history] == [
        ("UserMessage", "first question", False),
        ("AssistantMessage", "first answer", False),
        ("UserMessage", "second question", False),
        ("AssistantMessage", "w0 w1 w2 w3 w4 ", True),  # kept up to its last flush, marked
        ("UserMessage", "are you there?", False),
    ]
