"""`StoreChatLog`: the history of ``miniagents chat --history chat.db`` (or a ``postgresql://`` URL) in a store.

It has the interface of `miniagents._chat_log.MarkdownChatLog`, so the chat does not care where its history is.
"""

from __future__ import annotations

import asyncio
import os

from miniagents._chat_log import ChatLog, ChatLogError, MarkdownChatLog
from miniagents.messages import Message
from miniagents.promising.ext.frozen import Frozen
from miniagents.store._base import HistoryInUseError, RecordingStore
from miniagents.store._open import open_store
from miniagents.store._recorder import PartialMessage

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
        location: a SQLite file path or a ``postgresql://`` URL (see `open_store`).
        history_id: which history of the store.
    """

    def __init__(self, location: str | os.PathLike[str], history_id: str = "chat") -> None:
        self.path = os.fspath(location)  # (what the chat shows when it resumes)
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
            try:
                self._store = open_store(self.path)
            except (ImportError, ValueError) as error:
                raise StoreChatLogError(f"{self.path}: {error}") from error
        return self._store

    def check(self) -> str:
        """Connect once (creating the tables if needed), outside any event loop; return "".

        Raises:
            StoreChatLogError: the store cannot be opened.
        """
        store = self.store
        try:
            asyncio.run(_acheck(store))
        except Exception as error:
            raise StoreChatLogError(f"{self.path}: cannot be used: {type(error).__name__}: {error}") from error
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
        """Let another process append to the history (the claim `aload` took)."""
        if self._store is not None:
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
    finally:
        await store.aclose()


STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
"""File suffixes that name a SQLite message store rather than a Markdown file."""


def open_chat_log(location: str | os.PathLike[str]) -> ChatLog:
    """The chat history at ``location``.

    Args:
        location: a ``postgresql://`` URL or a file ending in ``.db``, ``.sqlite`` or ``.sqlite3`` (a message store,
            `miniagents.store.StoreChatLog`), or any other file (CHAT.md format, `MarkdownChatLog`).
    """
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")) or text.lower().endswith(STORE_SUFFIXES):
        return StoreChatLog(text)
    return MarkdownChatLog(text)
