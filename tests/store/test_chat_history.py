"""``miniagents chat --history chat.db`` (or a postgresql:// URL): the conversation is kept in a message store and
continued after a restart, also after a SIGKILL mid-answer."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from miniagents import MiniAgents, cli
from miniagents._chat_log import MarkdownChatLog
from miniagents.ext.llm.testing import scripted_llm_agent
from miniagents.store import StoreChatLog, open_store
from miniagents.store._chat_log import open_chat_log
from tests.postgres_server import adrop_history_tables

ROOT = Path(__file__).resolve().parents[2]
ENTER = "\r"


@pytest.fixture
def keyboard() -> Iterator[PipeInput]:
    with create_pipe_input() as pipe_input, create_app_session(input=pipe_input, output=DummyOutput()):
        yield pipe_input


def _history(location: str) -> list[tuple[str | None, str | None, str | None, bool]]:
    async def aload() -> list[tuple[str | None, str | None, str | None, bool]]:
        async with open_store(location) as store, MiniAgents():
            return [(m.role, m.model, m.text, getattr(m, "partial", False)) for m in await store.aload_history("chat")]

    return asyncio.run(aload())


def test_the_history_location_picks_the_log() -> None:
    assert isinstance(open_chat_log("CHAT.md"), MarkdownChatLog)
    assert isinstance(open_chat_log("notes/history.txt"), MarkdownChatLog)
    assert isinstance(open_chat_log("chat.db"), StoreChatLog)
    assert isinstance(open_chat_log("chat.SQLITE3"), StoreChatLog)
    assert isinstance(open_chat_log("postgresql://user@127.0.0.1:5432/db"), StoreChatLog)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_chat_in_a_store_is_continued_after_a_restart(
    kind: str, keyboard: PipeInput, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = str(tmp_path / "chat.db") if kind == "sqlite" else request.getfixturevalue("postgres_url")
    if kind == "postgres":  # the chat's history of its own on the shared server
        asyncio.run(adrop_history_tables(location))
    llm = scripted_llm_agent(["first answer", "second answer"], model="fake-1")
    keyboard.send_text("first" + ENTER + "exit" + ENTER + "second" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=location) == 0
    assert cli.run_chat(llm, history_file=location) == 0
    assert [message["content"] for message in llm.prompts[1]] == ["first", "first answer", "second"]
    assert _history(location) == [
        ("user", None, "first", False),
        ("assistant", "fake-1", "first answer", False),
        ("user", None, "second", False),
        ("assistant", "fake-1", "second answer", False),
    ]


def test_an_unusable_store_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir.db").mkdir()
    assert cli.main(["chat", "--history", str(tmp_path / "dir.db")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    path = tmp_path / "dir.db"
    problem = f"cannot be used: IsADirectoryError: {path}: is a directory, not a SQLite database file"
    assert err == f"miniagents: --history {path}: {problem}\n"


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from miniagents import InteractionContext, cli, miniagent
    from miniagents.ext.llm import AssistantMessage

    @miniagent
    async def slow_llm(ctx: InteractionContext, **kwargs) -> None:
        async def tokens(_):
            for word in ("Once ", "upon ", "a ", "time"):
                yield word
            print("STREAMED", file=sys.stderr, flush=True)
            await asyncio.Event().wait()  # the model hangs: the process is killed meanwhile

        ctx.reply(AssistantMessage.promise(message_token_streamer=tokens, model="slow-1"))

    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        keys.send_text("tell me a story\\r")
        cli.run_chat(slow_llm, history_file=sys.argv[1])
    """
)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_chat_killed_mid_answer_keeps_the_partial_answer_marked_and_goes_on(
    kind: str, keyboard: PipeInput, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    location = str(tmp_path / "chat.db") if kind == "sqlite" else request.getfixturevalue("postgres_url")
    if kind == "postgres":  # a history of its own on the shared server
        asyncio.run(adrop_history_tables(location))
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, location],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line == "STREAMED\n", line + process.stderr.read()
        time.sleep(1.0)  # more than the 0.5 s within which streamed text reaches the store
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert _history(location) == [
        ("user", None, "tell me a story", False),
        ("assistant", "slow-1", "Once upon a time", True),
    ]
    llm = scripted_llm_agent(["Sorry, where was I?"], model="fake-1")
    keyboard.send_text("go on" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=location) == 0
    assert [(message["role"], message["content"]) for message in llm.prompts[0]] == [
        ("user", "tell me a story"),
        ("assistant", "Once upon a time\n\n[interrupted]"),
        ("user", "go on"),
    ]
    out = re.sub(r"\033\[[0-9;]*m", "", capsys.readouterr().out)
    assert f"(resuming the conversation in {location})" in out
    assert "Once upon a time\n\n[interrupted]" in out
    assert _history(location)[2:] == [
        ("user", None, "go on", False),
        ("assistant", "fake-1", "Sorry, where was I?", False),
    ]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_second_chat_on_one_history_is_refused_while_the_first_runs(
    kind: str, keyboard: PipeInput, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    location = str(tmp_path / "chat.db") if kind == "sqlite" else request.getfixturevalue("postgres_url")
    if kind == "postgres":
        asyncio.run(adrop_history_tables(location))
    claimed, release = threading.Event(), threading.Event()

    async def first_chat() -> None:  # (what the other process's chat holds while it runs)
        store = open_store(location)
        await store.aclaim_history("chat")
        claimed.set()
        await asyncio.to_thread(release.wait)
        await store.arelease_history("chat")

    holder = threading.Thread(target=asyncio.run, args=(first_chat(),))
    holder.start()
    try:
        assert claimed.wait(30)
        llm = scripted_llm_agent(["never"], model="fake-1")
        keyboard.send_text("lost?" + ENTER + "exit" + ENTER)
        assert cli.run_chat(llm, history_file=location) == 2
        assert capsys.readouterr().err == (
            f"miniagents: --history {location}: is open in another miniagents chat; one at a time\n"
        )
    finally:
        release.set()
        holder.join()
    assert _history(location) == []  # nothing was written by the refused chat
    llm = scripted_llm_agent(["an answer"], model="fake-1")
    assert cli.run_chat(llm, history_file=location) == 0  # free again once the first chat ended
    assert [text for _, _, text, _ in _history(location)] == ["lost?", "an answer"]
