"""`RecordingStore`: what the shipped stores add on top of the `MessageStore` rows: recording and loading."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Any

from miniagents import AgentCall, RunObserver
from miniagents.errors import MiniAgentsError
from miniagents.messages import Message, MessagePromise
from miniagents.store._loading import MessageRegistry, StoredCall, aload_call_tree, aload_history, aload_message
from miniagents.store._recorder import StoreRecorder
from miniagents.store._rows import CallRow, MessageRow, PartialRow, SlotRow, StoreBatch
from miniagents.store._sql import SELECT_CALL_TREE, SELECT_MESSAGES, SELECT_PARTIALS, SELECT_ROOT_CALLS, SELECT_SLOTS

__all__ = ["HistoryInUseError", "RecordingStore"]


class HistoryInUseError(MiniAgentsError):
    """Another process writes the history that this one was to append to (see `RecordingStore.aclaim_history`)."""


class RecordingStore(RunObserver, abc.ABC):
    """A `MessageStore` with its recorder and loaders at hand (the base of the SQLite and PostgreSQL stores).

    It is a run observer itself (its ``on_call_*`` methods go to its `StoreRecorder`), so ``MiniAgents(store=store)``
    records every agent call and message. ``async with store:`` makes sure everything recorded is written and
    the connection closed at the end.
    """

    isolated = False  # its methods only queue rows (see `StoreRecorder`)

    def __init__(self) -> None:
        self._recorder = recorder = StoreRecorder(self)
        self._histories: dict[str, list[Any]] = {}
        self._claims: dict[str, Any] = {}  # what holds each history claimed by this process (see `aclaim_history`)
        self._claiming: dict[str, asyncio.Future[None]] = {}  # the claims being taken (done when taken or refused)
        self._writing: Any = None  # the writing connection, opened by a backend's `awrite` (closed by `aclose`)
        # The framework calls these for every event: the recorder's own methods, one call each (not two).
        self.on_call_started = recorder.on_call_started  # type: ignore[method-assign]
        self.on_call_input = recorder.on_call_input  # type: ignore[method-assign]
        self.on_call_reply = recorder.on_call_reply  # type: ignore[method-assign]
        self.on_call_ended = recorder.on_call_ended  # type: ignore[method-assign]

    def observer(self) -> StoreRecorder:
        """The `StoreRecorder` of this store (one per store): register it with ``MiniAgents(observers=[...])``."""
        return self._recorder

    # the observation seam (`miniagents.RunObserver`): a store passed as ``MiniAgents(store=...)`` records the run

    def on_call_started(self, call: AgentCall) -> None:
        """See `StoreRecorder.on_call_started`."""
        self._recorder.on_call_started(call)

    def on_call_input(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """See `StoreRecorder.on_call_input`."""
        self._recorder.on_call_input(call, index, message_promise)

    def on_call_reply(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """See `StoreRecorder.on_call_reply`."""
        self._recorder.on_call_reply(call, index, message_promise)

    def on_call_ended(self, call: AgentCall) -> None:
        """See `StoreRecorder.on_call_ended`."""
        self._recorder.on_call_ended(call)

    async def aopen(self) -> None:
        """Connect and create the tables if needed, so that a bad location fails early.

        ``MiniAgents(store=...)`` calls this when its context is entered (and `aclose` when it is left). It uses a
        connection of its own, closed at once: the writing connection belongs to the recorder's writer, which may
        be writing for another context right now (then the store is known to work, and nothing is checked).

        Raises:
            Exception: whatever the driver raises for an unusable location (e.g. ``sqlite3.OperationalError``,
                ``OSError``, asyncpg's connection errors).
        """
        if not self._recorder.writing:
            await self._acheck_location()

    async def aflush(self) -> None:
        """Wait until everything recorded so far is written (see `StoreRecorder.aflush`)."""
        await self._recorder.aflush()

    async def aload_message(self, hash_key: str, registry: MessageRegistry | None = None) -> Message:
        """Load a message as its own class (see `miniagents.store.aload_message`)."""
        return await aload_message(self, hash_key, registry)

    async def aload_call_tree(self, root_call_id: str, registry: MessageRegistry | None = None) -> StoredCall:
        """Load a call and the calls it made (see `miniagents.store.aload_call_tree`)."""
        return await aload_call_tree(self, root_call_id, registry)

    async def aload_history(self, history_id: str, registry: MessageRegistry | None = None) -> list[Message]:
        """Load a history's messages (see `miniagents.store.aload_history`)."""
        return await aload_history(self, history_id, registry)

    async def ahistory(self, history_id: str) -> list[Any]:
        """The in-memory list of a history that `store_history_agent` appends to (read once per claim).

        It is read from the store on first use, and again after `arelease_history`.
        """
        history = self._histories.get(history_id)
        if history is None:
            loaded = await self.aload_history(history_id)
            history = self._histories.setdefault(history_id, list(loaded))
        return history

    async def aclaim_history(self, history_id: str) -> None:
        """Make this process the only writer of the history ``history_id`` until `arelease_history` (or its end).

        Histories take positions counted in the writing process, so two processes appending to one history would
        overwrite each other's messages; the second one is refused instead. The claim is an operating-system lock
        on a file beside the database (SQLite) or a session advisory lock (PostgreSQL): a process that dies
        releases it, and so does leaving ``async with store:``. Claiming a history this store object holds already
        does nothing, and so does claiming it while another call of this store object is taking it (once that
        one has it; concurrent turns of `store_history_agent` claim at once).

        Raises:
            HistoryInUseError: another process (or another store object) holds the claim.
        """
        while history_id not in self._claims:
            taking = self._claiming.get(history_id)
            if taking is not None:
                await asyncio.wait([taking])  # (then it is held, or this call tries itself)
                continue
            taken = self._claiming[history_id] = asyncio.get_running_loop().create_future()
            try:
                claim = await self._aclaim(history_id)
                if claim is not None:
                    self._claims[history_id] = claim
            finally:
                del self._claiming[history_id]
                taken.set_result(None)
            if claim is None:
                raise HistoryInUseError(
                    f"the history {history_id!r} of {self!r} is being written by another process "
                    f"(one at a time can append to a history)"
                )

    async def arelease_history(self, history_id: str) -> None:
        """Release the claim of `aclaim_history` (nothing if this store object does not hold it).

        The in-memory list of the history (`ahistory`) is dropped with it: another process may append to the
        history from now on, so the next claim reads it from the store again.
        """
        claim = self._claims.pop(history_id, None)
        if claim is not None:
            self._histories.pop(history_id, None)
            await self._arelease(claim)

    @abc.abstractmethod
    async def _aclaim(self, history_id: str) -> Any:
        """Take the claim of ``history_id`` without waiting: what holds it, or None when another holds it."""

    @abc.abstractmethod
    async def _arelease(self, claim: Any) -> None:
        """Release a claim that `_aclaim` took."""

    async def __aenter__(self) -> RecordingStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            await self.aflush()
        finally:
            try:
                await self.aclose()
            finally:
                for history_id in list(self._claims):  # (the histories claimed within the block, e.g. by agents)
                    await self.arelease_history(history_id)

    @abc.abstractmethod
    async def awrite(self, batch: StoreBatch) -> None:
        """See `MessageStore.awrite`."""

    @abc.abstractmethod
    async def _aquery(self, template: str, keys: Sequence[str]) -> list[Any]:
        """Run a query of `miniagents.store._sql` with ``keys`` as its parameters (none when ``keys`` is empty)."""

    async def aread_messages(self, hash_keys: Collection[str]) -> dict[str, MessageRow]:
        """See `MessageStore.aread_messages`."""
        return {row[0]: MessageRow(*row) for row in await self._aquery(SELECT_MESSAGES, list(hash_keys))}

    async def aread_partials(self, partial_ids: Collection[str]) -> dict[str, PartialRow]:
        """See `MessageStore.aread_partials`."""
        return {row[0]: PartialRow(*row) for row in await self._aquery(SELECT_PARTIALS, list(partial_ids))}

    async def aread_calls(self, root_call_id: str) -> list[CallRow]:
        """See `MessageStore.aread_calls`."""
        return [CallRow(*row) for row in await self._aquery(SELECT_CALL_TREE, [root_call_id])]

    async def aread_root_calls(self, limit: int = 100) -> list[str]:
        """See `MessageStore.aread_root_calls`."""
        template = SELECT_ROOT_CALLS.replace("{limit}", str(max(0, int(limit))))
        return [row[0] for row in await self._aquery(template, [""])]

    async def aread_slots(self, owner_ids: Collection[str]) -> list[SlotRow]:
        """See `MessageStore.aread_slots`."""
        rows = await self._aquery(SELECT_SLOTS, list(owner_ids))
        return [SlotRow(*row) for row in sorted(rows, key=lambda row: (row[0], row[1], row[2]))]

    async def aclose(self) -> None:
        """Close the writing connection (it is opened again on the next write); see `MessageStore.aclose`.

        While the recorder's writer runs, the connection is left to it: it closes it itself once everything queued
        is written. This waits for that when nothing else is queued or streaming; otherwise (the store serves a
        context that still records) it returns at once.
        """
        recorder = self._recorder
        if recorder.writing and not recorder.in_writer_thread():
            await recorder.await_idle_writer()  # (it closes the connection as it ends)
            return
        await self._aclose_connection()

    async def _aclose_connection(self) -> None:
        """Close the writing connection, if it is open (on the loop it was opened on: the writer thread's)."""
        connection, self._writing = self._writing, None
        if connection is not None:
            await connection.close()

    @abc.abstractmethod
    async def _acheck_location(self) -> None:
        """Open a connection of its own (creating the tables if needed) and close it: see `aopen`."""
