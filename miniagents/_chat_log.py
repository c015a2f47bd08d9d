"""The history file of ``miniagents chat``: checked before the first prompt, read once, appended to as it goes.

The file is in the CHAT.md format of `miniagents.ext._chat_md` (what `markdown_history_agent` writes), so the
two can share a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Protocol, TextIO

from miniagents.errors import MiniAgentsError
from miniagents.ext._chat_md import ROLES, ContentEscaper, format_header, format_message, parse_chat_md
from miniagents.ext._chat_md_file import ChatMdDecodeError, close_cut_write, decode_chat_md
from miniagents.messages import Message

__all__ = ["AnswerWriter", "ChatLog", "ChatLogError", "MarkdownChatLog"]


class ChatLogError(MiniAgentsError):
    """The history file cannot be used; the message is one line that names the file and the problem."""


_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


class MarkdownChatLog:
    """A CHAT.md file that a chat reads at its start and appends every message to.

    Args:
        path: the file; it and its folders are created when the first message is written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from filelock import FileLock

        self.path = Path(path)
        # Held while a message is written, so that other writers (processes, agents) never interleave with it.
        self._lock = FileLock(f"{self.path}.lock")

    def check(self) -> str:
        """Make sure the file can be read and appended to, without writing anything; return its text.

        A missing file is fine when it could be created: this is tried (with its missing folders), and whatever
        was created is removed again.

        Returns:
            The file's text ("" for a missing file).

        Raises:
            ChatLogError: the path is a directory or not a regular file, the file is a SQLite database (a message
                store named without its suffix) or not UTF-8 (a character cut at its very end by a crash is not an
                error: it is left out, and dropped before the next message is written), or it (or its folder) is
                not readable or writable.
        """
        path = self.path
        if not path.exists():
            self._try_create()
            return ""
        if path.is_dir():
            raise ChatLogError(f"{path}: is a directory, not a file")
        if not path.is_file():
            raise ChatLogError(f"{path}: is not a regular file")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ChatLogError(f"{path}: cannot be read: {error.strerror or error}") from error
        if data.startswith(_SQLITE_HEADER):  # (a store named without its suffix: appending would damage it)
            raise ChatLogError(
                f"{path}: is a SQLite database, not a Markdown chat history; to use it as a message store, name it "
                "with .db, .sqlite or .sqlite3"
            )
        try:
            text = decode_chat_md(path, data)  # a character cut at the very end (a cut write) is left out
        except ChatMdDecodeError as error:
            raise ChatLogError(
                f"{path}: is not valid UTF-8 (byte 0x{data[error.offset]:02x} on line {error.line}): "
                "fix that line or use another file"
            ) from error
        try:
            with open(path, "ab"):  # opened for appending, nothing written
                pass
        except OSError as error:
            raise ChatLogError(f"{path}: cannot be written to: {error.strerror or error}") from error
        return text

    def load(self) -> list[Message]:
        """Check the file (see `check`) and return its messages (``Message(text=…, role=…, model=… or None)``).

        Raises:
            ChatLogError: see `check`.
        """
        return [
            Message(text=text, role=role if role in ROLES else "assistant", model=model)  # (no role or an unknown one)
            for role, model, text in parse_chat_md(self.check())
        ]

    async def aload(self) -> list[Message]:
        """`load`, in a worker thread (a long file is not parsed on the event loop)."""
        return await asyncio.to_thread(self.load)

    def append(self, role: str, model: str | None, text: str) -> None:
        """Append a whole message (e.g. the user's, as soon as it is typed).

        Raises:
            OSError: the file cannot be written.
        """
        with self._lock, self._open() as stream:
            stream.write(format_message(role, _heading_model(model), text))

    def answer_writer(self, role: str, model: str | None) -> AnswerWriter:
        """A writer for a message that arrives token by token; nothing is written before its first token."""
        return AnswerWriter(self, role, model)

    def _open(self) -> TextIO:
        """Open for appending (call it holding `_lock`); a write that a crash cut short is closed first.

        `close_cut_write` drops a partial character and a header cut short, and ends the last line.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(self.path, "a+", encoding="utf-8", newline="", buffering=1)
        close_cut_write(stream.fileno())
        return stream

    def _try_create(self) -> None:
        path = self.path
        if path.is_symlink():
            raise ChatLogError(f"{path}: is a symbolic link to a missing file")
        missing = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
        existing = path.parent.parents[len(missing) - 1] if missing else path.parent
        if not existing.is_dir():
            raise ChatLogError(f"{path}: cannot be created: {existing} is not a folder")
        created = False
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "xb"):
                    created = True
            finally:
                if created:
                    path.unlink()
                for folder in missing:  # the deepest first
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        except OSError as error:
            raise ChatLogError(f"{path}: cannot be created: {error.strerror or error}") from error


class AnswerWriter:
    """Writes one message to a `MarkdownChatLog` as its tokens arrive (each token is flushed at once).

    The heading is written with the first token, so a message that fails before its first token leaves no
    trace in the file.
    """

    def __init__(self, log: MarkdownChatLog, role: str, model: str | None) -> None:
        self._log = log
        self._role = role
        self._model = model
        self._stream: TextIO | None = None
        self._escaper = ContentEscaper()
        self._text: list[str] = []

    def write(self, token: str) -> None:
        """Write a token (the heading first, with the first non-empty token)."""
        if not token:
            return
        if self._stream is None:
            self._log._lock.acquire()  # released by `finish`
            self._stream = self._log._open()
            self._stream.write(format_header(self._role, _heading_model(self._model)))
        self._stream.write(self._escaper.feed(token))
        self._stream.flush()
        self._text.append(token)

    def finish(self, mark: str | None = None) -> str | None:
        """End the message, with ``mark`` on a line of its own after the text when given (e.g. "[interrupted]").

        Returns:
            The text written, mark included, or None when nothing was written (no token came).
        """
        if self._stream is None:
            return None
        if mark:
            suffix = f"\n\n{mark}"
            self._stream.write(self._escaper.feed(suffix))
            self._text.append(suffix)
        self._stream.write(self._escaper.finish())
        self._stream.close()
        self._stream = None
        self._log._lock.release()
        return "".join(self._text)


class ChatLog(Protocol):
    """What the chat needs of its history: `MarkdownChatLog`, or `miniagents.store.StoreChatLog`."""

    path: Any

    def check(self) -> str:
        """Make sure the history can be used, writing nothing (raises `ChatLogError`)."""

    async def aload(self) -> list[Message]:
        """The messages so far (raises `ChatLogError`)."""

    def append(self, role: str, model: str | None, text: str) -> None:
        """Append a whole message."""

    def answer_writer(self, role: str, model: str | None) -> Any:
        """A writer (``write(token)``, ``finish(mark) -> text or None``) for a message that arrives token by token."""


def _heading_model(model: str | None) -> str | None:
    """A model name fit for a heading (a name with whitespace would make the heading unreadable)."""
    return "_".join(str(model).split()) if model else None
