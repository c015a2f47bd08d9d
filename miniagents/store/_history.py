"""`store_history_agent`: a chat history kept in a message store (the ``--history chat.db`` of ``miniagents chat``)."""

from __future__ import annotations

import asyncio
import os

from miniagents.messages import Message, amake_promises
from miniagents.miniagents import InteractionContext, miniagent
from miniagents.store._base import RecordingStore
from miniagents.store._open import open_store, store_key

__all__ = ["store_history_agent"]

_stores: dict[str, RecordingStore] = {}


def _resolve_store(store: RecordingStore | str | os.PathLike[str]) -> RecordingStore:
    if isinstance(store, RecordingStore):
        return store
    # One store object (and so one writer) per store in a process, however its location is spelled: two objects on
    # one store would refuse each other's claim of a history.
    key = store_key(store)
    if key not in _stores:
        _stores[key] = open_store(key)
    return _stores[key]


@miniagent
async def store_history_agent(
    ctx: InteractionContext,
    store: RecordingStore | str | os.PathLike[str],
    history_id: str = "default",
    only_write: bool = False,
) -> None:
    """Append the incoming messages to a history in a message store, then reply with the whole history.

    The contract of `miniagents.ext.history_agents.markdown_history_agent`, kept in a store instead of a file:
    each message is recorded as it streams (its text flushed at least every 0.5 s), so after a crash the history
    has every completed message and the text of an interrupted one up to its last flush; that one loads with
    ``partial=True`` (and ``partial_status``), and the conversation continues after it. The first call claims the
    history for this process (`RecordingStore.aclaim_history`) until it ends or leaves ``async with store:``: a
    history takes positions counted in the process that writes it, so a second process (or another store object
    on the same database) gets `HistoryInUseError` instead of overwriting its messages. The history is read from
    the store once per claim and kept in memory.

    Args:
        ctx: the interaction context.
        store: a store, or its location (a file path for SQLite, a ``postgresql://`` URL; see `open_store`).
        history_id: which history of the store (several conversations can share one store).
        only_write: record, but reply nothing.

    Replies:
        Every message of the history, earlier runs' included, unless ``only_write``. A message whose preliminary
        metadata has a truthy ``no_history`` is neither recorded nor replied.

    Raises:
        HistoryInUseError: another process (or store object) writes this history.
    """
    resolved = _resolve_store(store)
    await resolved.aclaim_history(history_id)  # (before the history is loaded: no other writer can follow it)
    history = await resolved.ahistory(history_id)
    recorder = resolved.observer()
    # the reply needs the earlier messages' promises: made while the user types (in a dialog)
    promising = (
        None if only_write else asyncio.create_task(amake_promises([m for m in history if isinstance(m, Message)]))
    )
    try:
        async for message_promise in ctx.message_promises:
            if getattr(message_promise.preliminary_metadata, "no_history", None):
                continue
            position = len(history)
            history.append(message_promise)  # (placeholder, so that a concurrent turn takes the next position)
            recorder.record_message_promise(history_id, "history", position, message_promise)
            history[position] = await message_promise
        if not only_write:
            ctx.reply(tuple(message for message in history if isinstance(message, Message)))
    finally:
        if promising is not None:
            promising.cancel()
