"""History agents: they record the messages they receive and reply with the whole history so far.

A history agent sits at the end of a user agent's chain (see `miniagents.ext.agent_aggregators.user_agent`): it
gets the assistant's last reply plus the user's new message, stores them, and replies with everything stored,
which is what the assistant sees next. Two are provided, `in_memory_history_agent` and `markdown_history_agent`
(a CHAT.md file). To store history elsewhere, write an agent with the same contract. `ChatHistory`,
`InMemoryChatHistory` and `ChatHistoryMD` are the older object API, kept for compatibility.

A message whose preliminary metadata has a truthy ``no_history`` is not stored.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from miniagents.ext._chat_md import ROLES, ContentEscaper, format_header
from miniagents.ext._chat_md_file import (
    ChatMdDecodeError,
    chat_md_lock,
    close_cut_write,
    open_for_appending,
    read_messages,
)
from miniagents.messages import Message, MessagePromise, amake_promises
from miniagents.miniagents import InteractionContext, MiniAgent, miniagent

if TYPE_CHECKING:
    from filelock import AsyncFileLock

__all__ = [
    "ChatHistory",
    "ChatHistoryMD",
    "ChatMdDecodeError",
    "InMemoryChatHistory",
    "in_memory_history_agent",
    "markdown_history_agent",
]


def _is_no_history(message_promise: MessagePromise) -> bool:
    return bool(getattr(message_promise.preliminary_metadata, "no_history", None))


@miniagent
async def in_memory_history_agent(ctx: InteractionContext, message_list: list[Message]) -> None:
    """Append the incoming messages to ``message_list`` and reply with a snapshot of the whole list.

    Bind the list with `fork`: ``in_memory_history_agent.fork(message_list=[])``. The list is shared by every
    inquiry of that fork, which is what makes it a history. The agent waits for all incoming messages to
    finish before it replies.

    Args:
        ctx: the interaction context.
        message_list: the history; the agent extends it in place.

    Replies:
        Every message of ``message_list``, as it is once the incoming messages were added (later changes to the
        list do not change this reply).
    """
    async for message_promise in ctx.message_promises:
        if not _is_no_history(message_promise):
            message_list.append(await message_promise)
    ctx.reply(tuple(message_list))


@miniagent
async def markdown_history_agent(
    ctx: InteractionContext,
    history_md_file: str | os.PathLike[str] = "CHAT.md",
    default_role: str = "assistant",
    only_write: bool = False,
    append: bool = True,
) -> None:
    """Write the incoming messages to a CHAT.md file as their tokens arrive, then reply with the whole file.

    Each message is written as a blank line, a ``role`` or ``role / model`` line, a line of 40 ``=`` and the
    text (escaped where a line could be mistaken for a heading, see `miniagents.ext._chat_md`). Every token is
    flushed to the file as soon as it arrives, so a crash loses at most what was in flight. If the incoming
    messages fail, the message being written is ended properly and the error propagates.

    The header of a message is written with its first token, so a message that fails or ends before its first
    token leaves no entry. Each message is written under a lock on ``<file>.lock`` (`filelock`), held from its
    header to its end, so several processes or agents writing one file never interleave inside a message. A write
    that a crash cut short is closed before the next message is written (a partial UTF-8 character and a header
    cut short are dropped, the last line is ended), so the next message is an entry of its own and the entries
    before stay as they were. Reading back is incremental (entries already read are not parsed again) and runs in
    a worker thread. The file is read when the call starts, and the promises of its messages are made while the
    incoming messages are awaited (in a dialog, while the user types), so that replying a long history costs a
    turn little.

    Args:
        ctx: the interaction context.
        history_md_file: the file; parent directories are created.
        default_role: the role of messages without one, or with one that read-back would not recognize
            (anything but ``user``, ``assistant`` and ``system``, in any case).
        only_write: write, but do not read the file back (then nothing is replied).
        append: append to the file; False starts it afresh on every call (every turn, in a dialog).

    Replies:
        Every message in the file, including earlier runs', as ``Message(role=…, model=… or None, text=…)``,
        unless ``only_write``. A heading whose text is not a role (``# Notes``) is ordinary content, kept in the
        entry it is in. Damage costs at most the entry it is in: text before the first heading is an entry of
        ``default_role``, as is one under a heading written as this agent writes them (a blank line, the role
        line, 40 ``=``) with a role other than ``user``, ``assistant`` and ``system``; a leading BOM is ignored; a
        code fence or HTML block left open ends at the next role heading, and never swallows a heading written by
        this agent.

    Raises:
        ChatMdDecodeError: the file (when appending) holds a byte that is not UTF-8; raised before anything
            is written.
    """
    path = Path(history_md_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = chat_md_lock(path)
    promising: asyncio.Task[None] | None = None
    if append:  # a file that cannot be read back is an error before anything is written to it
        earlier = await asyncio.to_thread(read_messages, path, default_role)
        if not only_write:  # the reply needs their promises: made while the user types (in a dialog)
            promising = asyncio.create_task(amake_promises(earlier))
    else:
        async with lock:
            path.write_bytes(b"")  # noqa: ASYNC240 - a local truncation
    try:
        await _awrite_messages(ctx, path, lock, default_role)
        if not only_write:
            ctx.reply(await asyncio.to_thread(read_messages, path, default_role))
    finally:
        if promising is not None:
            promising.cancel()


async def _awrite_messages(ctx: InteractionContext, path: Path, lock: AsyncFileLock, default_role: str) -> None:
    """Append the incoming messages to the file, token by token, each under the lock (see `markdown_history_agent`)."""
    # Blocking file calls on purpose: a local append per token is cheaper than a thread hop per token.
    with open_for_appending(path) as stream:
        async for message_promise in ctx.message_promises:
            if _is_no_history(message_promise):
                continue
            metadata = message_promise.preliminary_metadata
            role = getattr(metadata, "role", None)
            if isinstance(role, str) and role.strip().lower() in ROLES:
                role = role.strip()
            else:
                role = default_role  # a heading with another role would not be read back as a message
            model = getattr(metadata, "model", None)
            # a model with whitespace would make the heading unreadable
            header = format_header(role, "_".join(str(model).split()) if model else None)
            async with contextlib.AsyncExitStack() as held:
                escaper: ContentEscaper | None = None  # the header is written with the first token
                try:
                    async for token in message_promise:
                        if not token:
                            continue
                        if escaper is None:  # one message at a time, whichever task or process writes it
                            await held.enter_async_context(lock)
                            close_cut_write(stream.fileno())
                            escaper = ContentEscaper()
                            stream.write(header + escaper.feed(token))
                        else:
                            stream.write(escaper.feed(token))
                        stream.flush()
                finally:
                    if escaper is not None:
                        stream.write(escaper.finish())
                        stream.flush()


class ChatHistory(abc.ABC):
    """A chat history object (compatibility API): it loads the history and provides its history agent.

    Pass it to a user agent as ``console_user_agent.fork(chat_history=...)``.
    """

    @abc.abstractmethod
    async def aload_chat_history(self) -> tuple[Message, ...]:
        """Return the messages stored so far."""

    @property
    @abc.abstractmethod
    def history_agent(self) -> MiniAgent:
        """A history agent that records into this history (see the module docstring)."""


class InMemoryChatHistory(ChatHistory):
    """A history kept in a list of its own (`in_memory_history_agent`).

    Attributes:
        message_list: the messages stored so far.
    """

    def __init__(self) -> None:
        self.message_list: list[Message] = []
        self._history_agent = in_memory_history_agent.fork(message_list=self.message_list)

    async def aload_chat_history(self) -> tuple[Message, ...]:
        """Return the messages stored so far."""
        return tuple(self.message_list)

    @property
    def history_agent(self) -> MiniAgent:
        """`in_memory_history_agent` bound to `message_list`."""
        return self._history_agent


class ChatHistoryMD(ChatHistory):
    """A history kept in a CHAT.md file (`markdown_history_agent`).

    Args:
        chat_md_file: the file.
        default_role: the role of messages without one.
    """

    def __init__(self, chat_md_file: str | os.PathLike[str] = "CHAT.md", default_role: str = "assistant") -> None:
        self.chat_md_file = chat_md_file
        self.default_role = default_role
        self._history_agent = markdown_history_agent.fork(history_md_file=chat_md_file, default_role=default_role)

    async def aload_chat_history(self) -> tuple[Message, ...]:
        """Return the messages in the file (none if it does not exist)."""
        return await asyncio.to_thread(read_messages, Path(self.chat_md_file), self.default_role)

    @property
    def history_agent(self) -> MiniAgent:
        """`markdown_history_agent` bound to the file."""
        return self._history_agent
