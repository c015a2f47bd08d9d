"""`StoreChatLog`: the history of ``miniagents chat --history chat.db`` (or a ``postgresql://`` URL) in a store.

It has the interface of `miniagents._chat_log.MarkdownChatLog`, so the chat does not care where its history is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

from miniagents._chat_log import ChatLog, ChatLogError, MarkdownChatLog
from miniagents.messages import Message
from miniagents.promising.ext.frozen import Frozen
from miniagents.store._base import HistoryInUseError, RecordingStore
from miniagents.store._open import POSTGRES_SCHEMES, POSTGRES_TYPO, URL, open_store, store_key
from miniagents.store._recorder import PartialMessage
from miniagents.store._sqlite import SQLiteMessageStore

__all__ = ["STORE_SUFFIXES", "StoreChatLog", "open_chat_log"]

INTERRUPTED_MARK = "[interrupted]"
"""Ends the text of an answer that a crash cut short, when it is read back (as the chat marks Ctrl+C)."""


class StoreChatLogError(ChatLogError):
    """The store cannot be used; the message is one line that names it and the problem."""


class StoreChatLog:
    """A chat history kept in a message store, as history ``history_id`` (see `store_history_agent`).

    Every message is recorded as it is typed or streamed: an answer's text is written at least every 0.5 s while
    it streams, so after a crash the history has every finished message and the part of the interrupted answer
    written so far, which reads back marked ``[interrupted]``.

    Args:
        location: a SQLite file path or a ``postgresql://`` URL (see `open_store`; the scheme in any case). A file
            is known by its real path, so that two chats on it are one too many however it is named (e.g. through
            a symbolic link).
        history_id: which history of the store.

    Attributes:
        path: the location as given, with a password in a URL replaced by ``***`` (what the chat shows).
    """

    def __init__(self, location: str | os.PathLike[str], history_id: str = "chat") -> None:
        given = os.fspath(location)
        self.path = _shown(given)
        self._location = store_key(given)
        self.history_id = history_id
        self._store: RecordingStore | None = None
        self._next = 0

    @property
    def store(self) -> RecordingStore:
        """The store (made on first use).

        Raises:
            StoreChatLogError: the location names no usable store (a missing driver, a bad URL).
        """
        if self._store is None:
            problem = _location_problem(self._location)
            if problem is not None:
                raise StoreChatLogError(f"{self.path}: {problem}")
            try:
                self._store = open_store(self._location)
            except (ImportError, ValueError) as error:
                raise StoreChatLogError(f"{self.path}: {error}") from error
        return self._store

    def check(self) -> str:
        """Connect once (creating the tables if needed), outside any event loop; return "".

        Like a Markdown history, a SQLite file that does not exist yet is created with its missing folders only to
        be checked, and removed again: it is made by the chat's first message.

        Raises:
            StoreChatLogError: the store cannot be opened.
        """
        store = self.store
        created = _missing_files(store.path) if isinstance(store, SQLiteMessageStore) else []
        try:
            asyncio.run(_acheck(store))
        except Exception as error:
            raise StoreChatLogError(f"{self.path}: cannot be used: {type(error).__name__}: {error}") from error
        finally:
            if created:
                _remove(created)
                self._store = None  # (a new one creates the tables again)
        return ""

    async def aload(self) -> list[Message]:
        """Claim the history for this process and read it: a ``Message(text=…, role=…, model=… or None)`` per entry.

        An answer that a crash cut short ends with ``[interrupted]``. Until `aclose` (or the end of the process),
        another chat on the same history is refused (`RecordingStore.aclaim_history`): two would overwrite each
        other's messages.

        Raises:
            StoreChatLogError: the store cannot be read, or another process writes the history.
        """
        try:
            await self.store.aclaim_history(self.history_id)  # (this chat alone appends to it, until `aclose`)
        except HistoryInUseError as error:
            raise StoreChatLogError(f"{self.path}: is open in another miniagents chat; one at a time") from error
        except Exception as error:
            raise StoreChatLogError(f"{self.path}: cannot be used: {type(error).__name__}: {error}") from error
        try:
            stored = await self.store.aload_history(self.history_id)
        except Exception as error:
            with contextlib.suppress(Exception):
                await self.store.arelease_history(self.history_id)
            raise StoreChatLogError(f"{self.path}: cannot be read: {type(error).__name__}: {error}") from error
        self._next = len(stored)
        messages = []
        for message in stored:
            text = str(message)
            if getattr(message, "partial", False):
                text = f"{text}\n\n{INTERRUPTED_MARK}" if text else INTERRUPTED_MARK
            role = getattr(message, "role", None)
            messages.append(
                Message(
                    text=text,
                    role=role if isinstance(role, str) else "assistant",
                    model=getattr(message, "model", None),
                )
            )
        return messages

    async def aclose(self) -> None:
        """Let another process append to the history (the claim `aload` took), once what was recorded is written.

        (Released earlier, another chat could read the history without the last messages and write over them.)
        """
        if self._store is not None:
            try:
                await self._store.observer().awrite_queued()
            finally:
                await self._store.arelease_history(self.history_id)

    def append(self, role: str, model: str | None, text: str) -> None:
        """Record a whole message (e.g. the user's, as soon as it is typed)."""
        self.store.observer().record_slot(
            self.history_id, "history", self._take_position(), _message(role, model, text)
        )

    def answer_writer(self, role: str, model: str | None) -> StoreAnswerWriter:
        """A writer for a message that arrives token by token; nothing is recorded before its first token."""
        return StoreAnswerWriter(self, role, model)

    def _take_position(self) -> int:
        position = self._next
        self._next += 1
        return position


class StoreAnswerWriter:
    """Records one message into a `StoreChatLog` as its tokens arrive (the interface of the Markdown one)."""

    def __init__(self, log: StoreChatLog, role: str, model: str | None) -> None:
        self._log = log
        self._role = role
        self._model = model
        self._partial: PartialMessage | None = None

    def write(self, token: str) -> None:
        """Add a token (the message is recorded, as partial, with the first non-empty one)."""
        if not token:
            return
        if self._partial is None:
            log = self._log
            metadata: Frozen = Message(role=self._role, model=self._model)  # (what a partial loads with)
            self._partial = log.store.observer().open_partial(log.history_id, "history", log._take_position(), metadata)
        self._partial.append(token)

    def finish(self, mark: str | None = None) -> str | None:
        """End the message, with ``mark`` on a line of its own after the text when given.

        Returns:
            The text recorded, mark included, or None when nothing was recorded (no token came).
        """
        if self._partial is None:
            return None
        text = self._partial.text + (f"\n\n{mark}" if mark else "")
        self._partial.complete(_message(self._role, self._model, text))
        return text


def _message(role: str, model: str | None, text: str) -> Message:
    return Message(text=text, role=role, model=model)


async def _acheck(store: RecordingStore) -> None:
    try:
        await store.aopen()
    except asyncio.CancelledError:  # (Ctrl+C) what the driver leaves unfinished is not worth a report then
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        raise
    finally:
        await store.aclose()


STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
"""File suffixes that name a SQLite message store rather than a Markdown file."""


_URL_PASSWORD = re.compile(r"(?<=[?&]password=)[^&#]*", re.IGNORECASE)
_LOCATIONS = "use a Markdown file, a SQLite file (.db, .sqlite or .sqlite3) or a postgresql:// URL"


def _location_problem(location: str) -> str | None:
    """Why ``location`` (`store_key`) names no store, or None: an unknown URL scheme, or a mistyped URL."""
    url = URL.match(location)
    if url is not None and url.group(1) not in POSTGRES_SCHEMES:
        return f"unknown URL scheme {url.group(1)!r}: {_LOCATIONS}"
    if url is None and POSTGRES_TYPO.match(location):
        return "not a URL: write it as postgresql://user@host:5432/database"
    return None


def _shown(location: str) -> str:
    """``location`` with the password of a URL (in its user part or its ``password=`` parameter) as ``***``."""
    if URL.match(location) is None:
        return location
    scheme, _, rest = location.partition("://")
    end = min((index for index in map(rest.find, "/?#") if index >= 0), default=len(rest))
    user_info, at, host = rest[:end].rpartition("@")
    if at and ":" in user_info:
        rest = f"{user_info.partition(':')[0]}:***@{host}{rest[end:]}"
    return f"{scheme}://{_URL_PASSWORD.sub('***', rest)}"


def _missing_files(path: Path) -> list[Path]:
    """The SQLite file at ``path`` and its folders that do not exist (the deepest first), or [] when it exists."""
    if path.exists() or path.is_symlink():
        return []
    missing = [path]
    for folder in path.parents:
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove(created: list[Path]) -> None:
    """Remove a SQLite file (and what SQLite made beside it) and then the folders that `_missing_files` listed."""
    path, folders = created[0], created[1:]
    for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-journal", "-wal", "-shm"))):
        with contextlib.suppress(OSError):
            file.unlink()
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def open_chat_log(location: str | os.PathLike[str]) -> ChatLog:
    """The chat history at ``location``.

    Args:
        location: a ``postgresql://`` URL or a file ending in ``.db``, ``.sqlite`` or ``.sqlite3`` (a message store,
            `miniagents.store.StoreChatLog`), or any other file (CHAT.md format, `MarkdownChatLog`). Another URL,
            or a ``postgresql:`` one without its ``//``, is a `StoreChatLog` that refuses it (`StoreChatLogError`),
            not a file named so.
    """
    text = os.fspath(location)
    if URL.match(text) or POSTGRES_TYPO.match(text) or text.lower().endswith(STORE_SUFFIXES):
        return StoreChatLog(text)
    return MarkdownChatLog(text)
