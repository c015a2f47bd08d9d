"""A CHAT.md file under crashes, concurrent writers, bad bytes and length (issue 11, point 6)."""

from __future__ import annotations

import os
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
from miniagents.ext._chat_md import ParsedChatMd, format_header, format_message, parse_chat_md
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


def _check_after_cut(path: Path, earlier: list[tuple[str, str | None, str]], cut: tuple[str, str | None, str]) -> None:
    entries = _fields(read_messages(path, "assistant"))
    assert entries[: len(earlier)] == earlier  # the entries before the cut are intact, wherever it is …
    assert entries[-1] == NEXT  # … and the next message is an entry of its own, whole
    assert len(entries) - len(earlier) in (1, 2)  # at most one entry for what the cut left: the cut message's
    assert len(entries) - len(earlier) == 1 or entries[-2][:2] == (cut[0].lower(), cut[1])


def test_a_write_cut_at_any_byte_is_closed_on_the_next_open(tmp_path: Path) -> None:
    before = "".join(format_message(*message) for message in EARLIER).encode()
    cut = format_message(*CUT).encode()
    for offset in range(len(cut) + 1):
        path = tmp_path / f"CHAT-{offset}.md"
        path.write_bytes(before + cut[:offset])
        _append_like_the_agent(path, *NEXT)
        _check_after_cut(path, EARLIER, CUT)
        if offset == len(cut):  # nothing was cut: everything is there as written
            assert _fields(read_messages(path, "assistant")) == [*EARLIER, CUT, NEXT]
        elif 1 < offset < len(format_header(*CUT[:2]).encode()):  # cut inside the header: it is dropped
            # (a cut after its first "\n" leaves an empty line, a trailing blank line of the entry before)
            assert path.read_bytes() == before + format_message(*NEXT).encode()


def test_a_cut_in_a_hand_written_file_with_a_bom_and_crlf_costs_at_most_the_cut_entry(tmp_path: Path) -> None:
    rule = "=" * 40
    earlier = [("user", None, "héllo 😀"), ("assistant", "m", "answer\r\nline2")]
    cut = ("system", None, "sys")
    parts = [f"\r\n{role}{f' / {model}' if model else ''}\r\n{rule}\r\n{text}\r\n" for role, model, text in earlier]
    before = ("\ufeff" + "".join(parts)).encode()
    written = f"\r\n{cut[0]}\r\n{rule}\r\n{cut[2]}\r\n".encode()
    for offset in range(len(written) + 1):
        path = tmp_path / f"CHAT-{offset}.md"
        path.write_bytes(before + written[:offset])
        _append_like_the_agent(path, *NEXT)
        _check_after_cut(path, earlier, cut)
    for offset in range(len(before)):  # cut anywhere before: the entries whole before the cut are intact
        path = tmp_path / f"CHAT-before-{offset}.md"
        path.write_bytes(before[:offset])
        _append_like_the_agent(path, *NEXT)
        entries = _fields(read_messages(path, "assistant"))
        whole = 1 if offset >= len(before) - len(parts[1].encode()) else 0
        assert entries[:whole] == earlier[:whole] and entries[-1] == NEXT, offset


def test_text_that_merely_looks_like_a_cut_header_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    ends_like_a_header = ("assistant", "m", "the roles are:\n\nuser")  # a whole message: it ends with an empty line
    path.write_text(format_message(*EARLIER[0]) + format_message(*ends_like_a_header), encoding="utf-8")
    _append_like_the_agent(path, *NEXT)
    assert _fields(read_messages(path, "assistant")) == [EARLIER[0], ends_like_a_header, NEXT]
    for kept in ["hi\nuser", "hi\n\nthanks", "hi\n\n=====", "hi\n\nuser / a b", "hi\n\ntool\n", "hi\n\nusers"]:
        path.write_text(f"# user\n{kept}", encoding="utf-8")  # hand-written, maybe without a final line break
        _append_like_the_agent(path, *NEXT)
        assert _fields(read_messages(path, "assistant")) == [("user", None, kept.rstrip("\n")), NEXT], kept
    for cut in ["\n\nassistant / gpt-4o", "\n\nassistant / gpt-4o\n", "\n\nUser\n" + "=" * 40, "\r\n\r\nsystem\r"]:
        path.write_text(f"# user\nhi{cut}", encoding="utf-8", newline="")  # a header cut short: dropped
        _append_like_the_agent(path, *NEXT)
        assert _fields(read_messages(path, "assistant")) == [("user", None, "hi"), NEXT], cut


_TEXT = st.lists(
    st.sampled_from(["\n", "\r", "\r\n", " ", "#", "# ", "=", "```", "<!--", "\\", "user", "é", "😀", "x", "\n\n"])
    | st.text(max_size=3),
    max_size=12,
).map("".join)
_MESSAGE = st.tuples(st.sampled_from(["user", "assistant", "System"]), st.none() | st.just("m"), _TEXT)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MESSAGE, min_size=1, max_size=3), _MESSAGE, st.data())
def test_any_crash_offset_in_any_history_costs_at_most_the_cut_entry(
    earlier: list[tuple[str, str | None, str]], cut: tuple[str, str | None, str], data: st.DataObject
) -> None:
    before = "".join(format_message(*message) for message in earlier).encode()
    written = format_message(*cut).encode()
    header = len(format_header(*cut[:2]))
    offset = data.draw(st.integers(0, header) | st.integers(0, len(written)))  # inside the header, half the time
    earlier = [(role.lower(), model, text) for role, model, text in earlier]  # read back lower-cased
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "CHAT.md"
        path.write_bytes(before + written[:offset])
        read_messages(path, "assistant")  # a cut write reads without an error (a partial character is left out)
        _append_like_the_agent(path, *NEXT)
        _check_after_cut(path, earlier, cut)


async def test_the_agent_closes_a_cut_write_before_its_first_message(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    path.write_bytes(format_message(*EARLIER[0]).encode() + "\nassistant\n=====\nhalf an ans😀".encode()[:-2])
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=path).inquire(UserMessage(NEXT[2]))
    assert _fields(replies) == [EARLIER[0], ("assistant", None, "half an ans"), NEXT]


async def test_the_agent_writes_a_lone_surrogate_as_the_replacement_character(tmp_path: Path) -> None:
    path = tmp_path / "CHAT.md"
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=path).inquire(
            [UserMessage("a \udc80 b"), AssistantMessage("after")]
        )
    assert _fields(replies) == [("user", None, "a \ufffd b"), ("assistant", None, "after")]  # read back from the file
    assert path.read_bytes().decode("utf-8")  # valid UTF-8 throughout


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
        (
            "\ufeffnotes before any heading\n\n# user\nhi\n# Notes\nkept\n\ntool\n" + "=" * 40 + "\nresult\n"
            "# assistant\n```py\nopen fence\n"
        ).encode()
    )
    async with MiniAgents():
        replies = await markdown_history_agent.fork(history_md_file=path).inquire(
            [AssistantMessage("next answer", model="m"), UserMessage("next question")]
        )
    assert _fields(replies) == [
        ("assistant", None, "notes before any heading"),  # default_role
        ("user", None, "hi\n# Notes\nkept"),  # a heading that is not a role heading is content
        ("assistant", None, "result"),  # an unknown role in a heading as the writer writes it: default_role
        ("assistant", None, "```py\nopen fence"),  # the open fence ends at the next heading
        ("assistant", "m", "next answer"),
        ("user", None, "next question"),
    ]


def test_hand_written_headings_without_a_known_role_stay_text_as_the_file_grows(tmp_path: Path) -> None:
    """Read after each append (incrementally), a heading that is not a role heading stays in its entry's text."""
    path = tmp_path / "CHAT.md"
    path.write_text("".join(format_message(*message) for message in EARLIER), encoding="utf-8")
    read_messages(path, "assistant")
    steps = [
        ("\n# Notes\nfirst note\n", "\n\n# Notes\nfirst note"),
        ("\nNotes\n===\nsecond note\n", "\n\n# Notes\nfirst note\n\nNotes\n===\nsecond note"),
        ("\ntool\n" + "=" * 40, "\n\n# Notes\nfirst note\n\nNotes\n===\nsecond note\n\ntool\n" + "=" * 40),
    ]
    for appended, text in steps:  # a heading cut before its line break is text until the break arrives
        with path.open("a", encoding="utf-8") as stream:
            stream.write(appended)
        assert _fields(read_messages(path, "assistant")) == [EARLIER[0], (*EARLIER[1][:2], EARLIER[1][2] + text)]
    with path.open("a", encoding="utf-8") as stream:
        stream.write("\nresult\n")  # now a written heading: an entry of its own, of the default role
    text = "\n\n# Notes\nfirst note\n\nNotes\n===\nsecond note"
    expected = [EARLIER[0], (*EARLIER[1][:2], EARLIER[1][2] + text), ("assistant", None, "result")]
    assert _fields(read_messages(path, "assistant")) == expected
    assert _fields(read_messages(path, "system"))[-1] == ("system", None, "result")  # read afresh: the same


def test_entries_after_a_repaired_block_are_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fence left open early in a long file is repaired once: the entries after it are kept, not parsed again."""
    path = tmp_path / "CHAT.md"
    messages = [("user" if index % 2 else "assistant", None, f"#{index} text") for index in range(40)]
    source = "".join(format_message(*message) for message in messages)
    path.write_text(source.replace("#3 text", "#3 open\n```\n\nx", 1), encoding="utf-8")
    first = read_messages(path, "assistant")
    assert _fields(first)[3] == ("user", None, "#3 open\n```\n\nx")
    _append_like_the_agent(path, *NEXT)
    parsed: list[str] = []
    parse = _chat_md_file.parse_chat_md_entries

    def recording_parse(text: str) -> ParsedChatMd:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(_chat_md_file, "parse_chat_md_entries", recording_parse)
    second = read_messages(path, "assistant")
    assert _fields(second) == [*_fields(first), NEXT]
    assert all(message is earlier for message, earlier in zip(second, first[:-1], strict=False))
    assert parsed == [format_message(*messages[-1])[1:] + format_message(*NEXT)]  # from the last heading on


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
