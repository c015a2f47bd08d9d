"""The history file of ``miniagents chat``: checked before the first prompt, read once, appended to as it goes.

The file is in the CHAT.md format of `miniagents.ext._chat_md` (what `markdown_history_agent` writes), so the
two can share a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Protocol, TextIO

from miniagents.errors import MiniAgentsError
from miniagents.ext._chat_md import ROLES, ContentEscaper, format_header, format_message, parse_chat_md
from miniagents.ext._chat_md_file import ChatMdDecodeError, close_cut_write, decode_chat_md, open_for_appending
from miniagents.messages import Message

__all__ = ["AnswerWriter", "ChatLog", "ChatLogError", "MarkdownChatLog"]


class ChatLogError(MiniAgentsError):
    """The history file cannot be used; the message is one line that names the file and the problem."""


_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file

logger = logging.getLogger("miniagents.chat")


class MarkdownChatLog:
    """A CHAT.md file that a chat reads at its start and appends every message to.

    A message is written holding a lock (``CHAT.md.lock``), so that other writers (processes, agents) never
    interleave with it. While another writer holds it (another chat streaming its answer into the same file), the
    messages are not waited for on the event loop: a thread of this log writes them, in order, as soon as it gets
    the lock; `aclose` waits for that.

    Args:
        path: the file; it and its folders are created when the first message is written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self._lock = FileLock(f"{self.path}.lock")
        # What waits for the lock (see `_defer`): the writes, in order, and the thread that does them.
        self._deferred: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._deferring: threading.Thread | None = None
        self._deferred_count = 0  # writes queued and not done yet (changed under `_deferred_changes`)
        self._deferred_changes = threading.Lock()

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

        Written at once, unless another writer holds the file: then as soon as it lets go (see the class).

        Raises:
            OSError: the file cannot be written.
        """
        entry = format_message(role, _heading_model(model), text)
        if not self._take_lock_now():
            self._defer(("whole", entry))
            return
        try:
            with self._open() as stream:
                stream.write(entry)
        finally:
            self._lock.release()

    async def aclose(self) -> None:
        """Wait until the messages that waited for another writer's lock are written (at once when none did)."""
        thread = self._deferring
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def _take_lock_now(self) -> bool:
        """Take the lock if nothing waits for it here and no other writer holds it; whether it was taken."""
        from filelock import Timeout

        if self._deferred_count:  # (what waits goes first: the order of the messages is kept)
            return False
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def _defer(self, write: tuple[str, str]) -> None:
        """Queue a write for the thread that waits for the lock (started if it is not running).

        ``write``: ``("whole", entry)``; or ``("begin", header)``, ``("part", text)`` … ``("end", text)`` for a
        message written as it arrives, which holds the lock from its beginning to its end.
        """
        with self._deferred_changes:
            self._deferred_count += 1
            self._deferred.put(write)
            if self._deferring is None:
                # Not a daemon: a program that ends waits for what its chat was typed and answered.
                self._deferring = threading.Thread(target=self._write_deferred, name="miniagents-chat-md", daemon=False)
                self._deferring.start()

    def _write_deferred(self) -> None:
        stream: TextIO | None = None
        locked = False
        while True:
            with self._deferred_changes:
                if not self._deferred_count and stream is None:
                    self._deferring = None
                    return
            kind, text = self._deferred.get()
            try:
                if kind in ("whole", "begin"):
                    self._lock.acquire()  # (in this thread: the event loop does not wait)
                    locked = True
                    stream = self._open()
                if stream is not None:  # (None after an error: the rest of that message is left out)
                    stream.write(text)
                    stream.flush()
                if kind in ("whole", "end"):
                    if stream is not None:
                        stream.close()
                        stream = None
                    if locked:
                        locked = False
                        self._lock.release()
            except OSError as error:
                logger.error("%s: cannot write a message that waited for another writer: %s", self.path, error)
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
                    stream = None
                if locked:
                    locked = False
                    self._lock.release()
            finally:
                with self._deferred_changes:
                    self._deferred_count -= 1

    def answer_writer(self, role: str, model: str | None) -> AnswerWriter:
        """A writer for a message that arrives token by token; nothing is written before its first token."""
        return AnswerWriter(self, role, model)

    def _open(self) -> TextIO:
        """Open for appending (call it holding `_lock`); a write that a crash cut short is closed first.

        `close_cut_write` drops a partial character and a header cut short, and ends the last line.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream = open_for_appending(self.path)
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
        self._deferred = False  # written by the log's thread that waits for the lock (see `MarkdownChatLog`)
        self._escaper = ContentEscaper()
        self._text: list[str] = []

    def write(self, token: str) -> None:
        """Write a token (the heading first, with the first non-empty token)."""
        if not token:
            return
        if self._stream is None and not self._deferred:
            header = format_header(self._role, _heading_model(self._model))
            if self._log._take_lock_now():  # (released by `finish`)
                self._stream = self._log._open()
                self._stream.write(header)
            else:
                self._deferred = True
                self._log._defer(("begin", header))
        if self._deferred:
            self._log._defer(("part", self._escaper.feed(token)))
        else:
            assert self._stream is not None
            self._stream.write(self._escaper.feed(token))
            self._stream.flush()
        self._text.append(token)

    def finish(self, mark: str | None = None) -> str | None:
        """End the message, with ``mark`` on a line of its own after the text when given (e.g. "[interrupted]").

        Returns:
            The text written, mark included, or None when nothing was written (no token came).
        """
        if self._stream is None and not self._deferred:
            return None
        tail = ""
        if mark:
            suffix = f"\n\n{mark}"
            tail = self._escaper.feed(suffix)
            self._text.append(suffix)
        tail += self._escaper.finish()
        if self._deferred:
            self._deferred = False
            self._log._defer(("end", tail))
        else:
            assert self._stream is not None
            self._stream.write(tail)
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
