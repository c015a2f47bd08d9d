"""``miniagents chat --history`` with a store, as a user meets it: typos in the location, what the check leaves
behind, one writer per history however the file is named, and what a chat writes before it lets go of it."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from miniagents import MiniAgents, cli
from miniagents.ext.llm.testing import scripted_llm_agent
from miniagents.store import PostgresMessageStore, StoreChatLog, open_store
from miniagents.store._chat_log import open_chat_log
from tests.postgres_server import adrop_history_tables

ENTER = "\r"


@pytest.fixture
def keyboard() -> Iterator[PipeInput]:
    with create_pipe_input() as pipe_input, create_app_session(input=pipe_input, output=DummyOutput()):
        yield pipe_input


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize(
    "location",
    [
        "mysql://me@127.0.0.1/chats",  # a scheme no store has
        "sqlite:///chat.db",
        "postgresql:/127.0.0.1/chats",  # a slash missing
        "postgres:127.0.0.1/chats",
        "PostgreSQL:/127.0.0.1/chats",
    ],
)
def test_a_history_url_with_a_typo_is_refused_and_creates_nothing(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pytest.importorskip("openai")
    assert cli.main(["chat", "--model", "openai:x", "--history", location]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"miniagents: --history {location}: ")
    assert "postgresql://" in err  # what a URL should look like
    assert len(err.splitlines()) == 1
    assert _files(tmp_path) == []  # no Markdown file in a folder named "postgresql:" or "mysql:"


def test_a_postgresql_url_scheme_in_capitals_is_a_postgresql_url() -> None:
    log = open_chat_log("PostgreSQL://me@127.0.0.1:5432/chats")
    assert isinstance(log, StoreChatLog)
    assert isinstance(log.store, PostgresMessageStore)


def test_checking_a_new_sqlite_history_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like a Markdown file, a new store is created by the first message, not by the check before the chat starts."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytest.importorskip("openai")
    history = tmp_path / "chats" / "chat.db"
    assert cli.main(["chat", "--model", "openai:x", "--history", str(history)]) == 2  # the key is missing
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert _files(tmp_path) == []

    log = StoreChatLog(history)
    assert log.check() == ""
    assert _files(tmp_path) == []

    async def chat() -> list[str]:  # the same object goes on to be used
        async with MiniAgents():
            assert await log.aload() == []
            log.append("user", None, "hi")
            await log.aclose()
        async with open_store(history) as store, MiniAgents():
            return [str(message) for message in await store.aload_history("chat")]

    assert asyncio.run(chat()) == ["hi"]
    assert StoreChatLog(history).check() == ""  # an existing store stays
    assert history.is_file()


def test_a_store_reached_through_a_symbolic_link_is_the_same_history(tmp_path: Path) -> None:
    history = tmp_path / "chat.db"
    link = tmp_path / "current.db"
    link.symlink_to(history.name)

    async def second_chat() -> str:
        first = StoreChatLog(history)
        async with MiniAgents():
            await first.aload()
            try:
                with pytest.raises(cli.ChatLogError) as refused:
                    await StoreChatLog(link).aload()
            finally:
                await first.aclose()
        return str(refused.value)

    assert asyncio.run(second_chat()) == f"{link}: is open in another miniagents chat; one at a time"


def test_a_chat_writes_its_history_before_it_lets_another_one_take_it(tmp_path: Path) -> None:
    """Once a chat lets go of its history, another chat must find every message in it (or it would write over)."""
    history = tmp_path / "chat.db"

    async def chats() -> list[str]:
        first = StoreChatLog(history)
        original = first.store.awrite

        async def slow_write(batch: Any) -> None:  # (a busy disk, a remote database)
            await asyncio.sleep(0.3)
            await original(batch)

        first.store.awrite = slow_write  # type: ignore[method-assign]
        async with MiniAgents():
            await first.aload()
            first.append("user", None, "hi")
            writer = first.answer_writer("assistant", "m")
            writer.write("hello")
            writer.finish()
            await first.aclose()
            second = StoreChatLog(history)
            try:
                return [str(message) for message in await second.aload()]
            finally:
                await second.aclose()

    assert asyncio.run(chats()) == ["hi", "hello"]


def test_a_history_that_cannot_be_read_is_not_kept_claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = tmp_path / "chat.db"

    async def chats() -> list[str]:
        broken = StoreChatLog(history)

        async def fail(history_id: str) -> list[Any]:
            raise OSError("disk I/O error")

        monkeypatch.setattr(broken.store, "aload_history", fail)
        async with MiniAgents():
            with pytest.raises(cli.ChatLogError, match="cannot be read: OSError: disk I/O error"):
                await broken.aload()
            log = StoreChatLog(history)  # e.g. the next chat of a program that embeds `achat`
            try:
                return [str(message) for message in await log.aload()]
            finally:
                await log.aclose()

    assert asyncio.run(chats()) == []


def test_a_password_in_a_postgresql_url_is_never_shown(
    closed_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("asyncpg")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pytest.importorskip("openai")
    url = f"postgresql://me:s3cr%3At@127.0.0.1:{closed_port}/chats"
    assert cli.main(["chat", "--model", "openai:x", "--history", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"miniagents: --history postgresql://me:***@127.0.0.1:{closed_port}/chats: cannot be used: ")
    assert "s3cr" not in err


def test_resuming_a_chat_on_postgresql_does_not_show_the_password(
    postgres_url: str, keyboard: PipeInput, capsys: pytest.CaptureFixture[str]
) -> None:
    scheme, _, rest = postgres_url.partition("://")
    credentials, _, place = rest.rpartition("@")
    user = credentials.partition(":")[0]
    # (the test server trusts local connections: any password is accepted)
    url = f"{scheme}://{user}:s3cret@{place}"
    asyncio.run(adrop_history_tables(postgres_url))
    llm = scripted_llm_agent(["one", "two"], model="fake-1")
    keyboard.send_text("hi" + ENTER + "exit" + ENTER + "again" + ENTER + "exit" + ENTER)
    assert cli.run_chat(llm, history_file=url) == 0
    assert cli.run_chat(llm, history_file=url) == 0
    out = re.sub(r"\033\[[0-9;]*m", "", capsys.readouterr().out)
    assert f"(resuming the conversation in {scheme}://{user}:***@{place})" in out
    assert "s3cret" not in out


def test_a_sqlite_history_path_is_kept_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = open_chat_log(os.path.join("chats", "chat.db"))
    assert log.path == os.path.join("chats", "chat.db")  # (what the chat shows)
