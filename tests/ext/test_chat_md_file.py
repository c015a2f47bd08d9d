"""A CHAT.md file under crashes, concurrent writers, bad bytes and length (issue 11, point 6)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniagents import MiniAgents
from miniagents.ext import _chat_md_file
from miniagents.ext._chat_md import format_message, parse_chat_md
from miniagents.ext._chat_md_file import close_cut_write, read_messages
from miniagents.ext.history_agents import ChatHistoryMD, ChatMdDecodeError, markdown_history_agent
from miniagents.ext.llm import AssistantMessage, UserMessage

ROOT = Path(__file__).resolve().parents[2]

EARLIER = [("user", None, "first question"), ("assistant", "m-1", "an answer\n\nwith two paragraphs")]
CUT = ("assistant", "m-2", "é — ünïcödé 😀\n# not a heading\n```\ntext\r\nend")
NEXT = ("user", None, "the next message")


def _fields(messages: tuple[object, ...]) -> list[tuple[object, object, object]]:
    return [(getattr(m, "role", None), getattr(m, "model", None), getattr(m, "text", None)) for m in messages]


def _append_like_the_agent(path: Path, role: str, model: str | None, text: str) -> None:
    """What `markdown_history_agent` does per message, without the event loop: close a cut write, then append."""
    with open(path, "a+", encoding="utf-8", newline="") as stream:
        close_cut_write(stream.fileno())
        stream.write(format_message(role, model, text))


def _as_not_last(text: str) -> tuple[str, ...]:
    """The ways an entry's text can start once a fragment of a cut header follows it: as written, or (when its last
    line is blank) with that line's escape kept, since a blank line is unescaped only as the entry's last line."""
    *rest, last = re.split(r"(\r\n|\r|\n)", text)
    return (text, "".join(rest) + "\\" + last) if rest and not last.strip(" \t") else (text,)


def _check_after_cut(path: Path, earlier: list[tuple[str, str | None, str]]) -> None:
    entries = _fields(read_messages(path, "assistant"))
    assert entries[-1] == NEXT  # the next message is an entry of its own, whole
    assert entries[: len(earlier) - 1] == earlier[:-1]  # earlier entries are intact …
    role, model, text = entries[len(earlier) - 1]
    assert (role, model) == earlier[-1][:2]
    assert isinstance(text, str) and text.startswith(
        _as_not_last(earlier[-1][2])
    )  # … but for a fragment of a cut header
    assert len(entries) - len(earlier) in (1, 2)  # at most one entry for what the cut left


def test_a_write_cut_at_any_byte_is_closed_on_the_next_open(tmp_path: Path) -> None:
    before = "".join(format_message(*message) for message in EARLIER).encode()
    cut = format_message(*CUT).encode()
    for offset in range(len(cut) + 1):
        path = tmp_path / f"CHAT-{offset}.md"
        path.write_bytes(before + cut[:offset])
        _append_like_the_agent(path, *NEXT)
        _check_after_cut(path, EARLIER)
        if offset == len(cut):  # nothing was cut: everything is there as written
            assert _fields(read_messages(path, "assistant")) == [*EARLIER, CUT, NEXT]


_TEXT = st.lists(
    st.sampled_from(["\n", "\r", "\r\n", " ", "#", "# ", "=", "```", "<!--", "\\", "user", "é", "😀", "x", "\n\n"])
    | st.text(max_size=3),
    max_size=12,
).map("".join)
_MESSAGE = st.tuples(st.sampled_from(["user", "assistant", "system"]), st.none() | st.just("m"), _TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MESSAGE, min_size=1, max_size=3), _MESSAGE, st.data())
def test_any_crash_offset_in_any_history_costs_at_most_the_cut_entry(
    earlier: list[tuple[str, str | None, str]], cut: tuple[str, str | None, str], data: st.DataObject
) -> None:
    before = "".join(format_message(*message) for message in earlier).encode()
    written = format_message(*cut).encode()
    offset = data.draw(st.integers(0, len(written)))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "CHAT.md"
        path.write_bytes(before + written[:offset])
        read_messages(path, "assistant")  # a cut write reads without an error (a partial character is left out)
        _append_like_the_agent(path, *NEXT)
        _check_after_cut(path, earlier)


async def test_the_agent_closes_a_cut_write_before_its_first_message(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    path.write_bytes(format_message(*EARLIER[0]).encode() + "\nassistant\n=====\nhalf an ans😀".encode()[:-2])
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=path).inquire(UserMessage(NEXT[2]))
    assert _fields(replies) == [EARLIER[0], ("assistant", None, "half an ans"), NEXT]


def test_two_processes_writing_one_file_do_not_interleave(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from miniagents import Message, MiniAgents
        from miniagents.ext.history_agents import markdown_history_agent

        path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

        def tokens_of(index):
            async def stream(_):
                for part in range(6):
                    await asyncio.sleep(0.001)  # give the other process time to try to write in between
                    yield f"{name}-{index}-{part} "
            return stream

        async def main():
            agent = markdown_history_agent.fork(history_md_file=path, only_write=True)
            for index in range(count):
                role = "user" if index % 2 else "assistant"
                await agent.inquire(Message.promise(message_token_streamer=tokens_of(index), role=role))

        MiniAgents().run(main())
        """
    )
    path = tmp_path / "CHAT.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name, "20"], env=env, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, stderr.decode()
    entries = parse_chat_md(path.read_text(encoding="utf-8"))
    assert len(entries) == 40
    for name in ("a", "b"):
        mine = [entry for entry in entries if entry[2].startswith(f"{name}-")]
        assert mine == [
            ("user" if index % 2 else "assistant", None, "".join(f"{name}-{index}-{part} " for part in range(6)))
            for index in range(20)
        ]


async def test_an_invalid_byte_is_a_clear_error_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    content = format_message("user", None, "hi") + format_message("assistant", None, "x")
    damaged = content.encode().replace(b"x", b"\xff")
    path.write_bytes(damaged)
    offset = damaged.index(b"\xff")
    async with MiniAgents():
        with pytest.raises(ChatMdDecodeError, match=rf"invalid UTF-8 at byte {offset} \(line 8\)") as caught:
            await markdown_history_agent.fork(history_md_file=path).inquire(UserMessage("more"))
        with pytest.raises(ChatMdDecodeError):
            await ChatHistoryMD(path).aload_chat_history()
    assert (caught.value.offset, caught.value.line) == (offset, 8)
    assert path.read_bytes() == damaged  # nothing was written
    async with MiniAgents():  # starting afresh does not need to read the file
        replies = await markdown_history_agent.fork(history_md_file=path, append=False).inquire(UserMessage("new"))
    assert _fields(replies) == [("user", None, "new")]


async def test_damage_costs_at_most_its_own_entry(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    path.write_bytes(
        "\ufeffnotes before any heading\n\n# user\nhi\n# tool\nresult\n# assistant\n```py\nopen fence\n".encode()
    )
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=path).inquire(
            [AssistantMessage("next answer", model="m"), UserMessage("next question")]
        )
    assert _fields(replies) == [
        ("assistant", None, "notes before any heading"),  # default_role
        ("user", None, "hi"),
        ("assistant", None, "result"),  # an unknown role: default_role
        ("assistant", None, "```py\nopen fence"),  # the open fence ends at the next heading
        ("assistant", "m", "next answer"),
        ("user", None, "next question"),
    ]


@pytest.mark.parametrize("compare_chunk", [1, 7, 1 << 20])
def test_reads_are_incremental_and_notice_a_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compare_chunk: int
) -> None:
    monkeypatch.setattr(_chat_md_file, "_COMPARE_CHUNK", compare_chunk)
    path = tmp_path / "CHAT.md"
    path.write_text("".join(format_message(*message) for message in EARLIER), encoding="utf-8")
    first = read_messages(path, "assistant")
    with path.open("a", encoding="utf-8") as stream:
        stream.write(format_message(*NEXT))
    second = read_messages(path, "assistant")
    assert _fields(second) == [*EARLIER, NEXT]
    assert second[0] is first[0]  # parsed once, kept
    data = path.read_bytes()
    path.write_bytes(data.replace(b"first question", b"first QUESTION"))  # an edit of the same length, early on
    edited = read_messages(path, "assistant")
    assert _fields(edited)[0] == ("user", None, "first QUESTION") and edited[1] is not second[1]
    path.write_bytes(data[: data.index(b"\nassistant")])  # shorter than what was parsed before
    assert _fields(read_messages(path, "assistant")) == [EARLIER[0]]
    path.write_text(format_message("user", None, "first QUESTION"), encoding="utf-8")  # the start changed
    assert _fields(read_messages(path, "assistant")) == [("user", None, "first QUESTION")]
    assert read_messages(tmp_path / "missing.md", "assistant") == ()


def test_only_the_files_read_last_stay_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chat_md_file, "_MAX_CACHED_FILES", 2)
    paths = [tmp_path / f"{name}.md" for name in "abc"]
    for path in paths:
        path.write_text("".join(format_message(*message) for message in EARLIER), encoding="utf-8")
    first = [read_messages(path, "assistant") for path in paths[:2]]
    assert read_messages(paths[0], "assistant")[0] is first[0][0]  # kept, and now the most recently read
    read_messages(paths[2], "assistant")  # a third file: the least recently read one (b) is dropped
    assert read_messages(paths[0], "assistant")[0] is first[0][0]
    again = read_messages(paths[1], "assistant")
    assert again[0] is not first[1][0] and _fields(again) == EARLIER


def test_the_chats_log_closes_a_cut_write_and_locks_each_message(tmp_path: Path) -> None:
    from filelock import FileLock, Timeout

    from miniagents._chat_log import MarkdownChatLog

    path = tmp_path / "CHAT.md"
    path.write_bytes(format_message(*EARLIER[0]).encode() + "\nassistant\n=====\nhalf an ans😀".encode()[:-2])
    log = MarkdownChatLog(path)
    writer = log.answer_writer("assistant", "m")
    writer.write("streaming")
    with pytest.raises(Timeout):  # another writer waits while this message is being written
        FileLock(f"{path}.lock").acquire(timeout=0.05)
    assert writer.finish() == "streaming"
    log.append("user", None, NEXT[2])
    assert _fields(read_messages(path, "assistant")) == [
        EARLIER[0],
        ("assistant", None, "half an ans"),
        ("assistant", "m", "streaming"),
        NEXT,
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_decoding_in_chunks_keeps_characters_and_error_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Characters split between chunks decode whole; an invalid byte is reported at its offset in the file."""
    monkeypatch.setattr(_chat_md_file, "_DECODE_CHUNK", chunk)
    path = tmp_path / "CHAT.md"
    messages = [("user", None, "é — 😀 ünï"), ("assistant", "m", "ok 😀")]
    data = "".join(format_message(*message) for message in messages).encode()
    path.write_bytes(data + "😀".encode()[:3])  # and a character cut at the end, left out
    assert _fields(read_messages(path, "assistant")) == messages
    damaged = data.replace(b"ok", b"o\xe9k")
    path.write_bytes(damaged)
    with pytest.raises(ChatMdDecodeError) as caught:
        read_messages(path, "assistant")
    assert caught.value.offset == damaged.index(b"\xe9")
