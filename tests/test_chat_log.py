"""The chat's CHAT.md while another writer (another chat, an agent) holds the file: nothing waits on the loop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from filelock import FileLock

from miniagents._chat_log import MarkdownChatLog
from miniagents.ext._chat_md import format_message, parse_chat_md


def _entries(path: Path) -> list[tuple[str | None, str | None, str]]:
    return parse_chat_md(path.read_text(encoding="utf-8"))


async def test_messages_wait_for_another_writer_in_a_thread_and_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    log = MarkdownChatLog(path)
    log.append("user", None, "first")  # nobody else writes: at once
    other = FileLock(f"{path}.lock")  # another chat, streaming its answer into the file
    other.acquire()
    try:
        started = time.monotonic()
        log.append("user", None, "typed meanwhile")
        writer = log.answer_writer("assistant", "m")
        writer.write("the ")
        writer.write("answer")
        assert writer.finish("[interrupted]") == "the answer\n\n[interrupted]"
        assert time.monotonic() - started < 1  # (it used to wait here, on the event loop, for the other answer)
        assert _entries(path) == [("user", None, "first")]
        with path.open("a", encoding="utf-8") as stream:
            stream.write(format_message("assistant", "other", "their answer"))
    finally:
        other.release()
    await log.aclose()
    assert _entries(path) == [
        ("user", None, "first"),
        ("assistant", "other", "their answer"),
        ("user", None, "typed meanwhile"),
        ("assistant", "m", "the answer\n\n[interrupted]"),
    ]
    log.append("user", None, "later")  # nothing waits any more: at once again
    assert _entries(path)[-1] == ("user", None, "later")


async def test_an_answer_that_began_while_the_file_was_free_is_not_cut_by_a_deferred_message(tmp_path: Path) -> None:
    # Its own lock is held from its first token to its end: a message queued meanwhile comes after it.
    path = tmp_path / "CHAT.md"
    log = MarkdownChatLog(path)
    writer = log.answer_writer("assistant", None)
    writer.write("one ")
    other = MarkdownChatLog(path)  # another writer of the same file in this process (an agent, say)
    other.append("user", None, "in between")
    writer.write("two")
    writer.finish()
    await other.aclose()
    assert _entries(path) == [("assistant", None, "one two"), ("user", None, "in between")]


async def test_a_deferred_message_that_cannot_be_written_is_reported_and_lets_go_of_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "CHAT.md"
    log = MarkdownChatLog(path)
    other = FileLock(f"{path}.lock")
    other.acquire()
    log.append("user", None, "lost")
    path.mkdir()  # (the file is gone: a folder is there instead)
    other.release()
    await log.aclose()
    assert any("cannot write a message that waited" in record.getMessage() for record in caplog.records)
    path.rmdir()
    log.append("user", None, "written")  # the lock was let go: at once
    assert _entries(path) == [("user", None, "written")]


async def test_a_lone_surrogate_is_written_as_the_replacement_character(tmp_path: Path) -> None:
    # Half of a character that a broken stream cut in two: UTF-8 cannot hold it. It used to fail the write
    # mid-answer (the chat showed an error); now the answer is written whole and the file stays valid UTF-8.
    path = tmp_path / "CHAT.md"
    log = MarkdownChatLog(path)
    log.append("user", None, "typed \udc80 text")
    writer = log.answer_writer("assistant", None)
    writer.write("the \ud83d")
    writer.write(" answer")
    assert writer.finish() == "the \ud83d answer"  # (the message itself keeps its text, for the store)
    await log.aclose()
    assert path.read_bytes().decode("utf-8")  # strict: no surrogate written as bytes
    assert _entries(path) == [("user", None, "typed \ufffd text"), ("assistant", None, "the \ufffd answer")]
    assert [m.text for m in log.load()] == ["typed \ufffd text", "the \ufffd answer"]  # the chat reads it again
