"""`StoreRecorder`: turns agent calls and messages into rows and writes them in batches, from one writer task.

What is recorded is queued at once (cheaply, on the event loop); one writer task per recorder takes everything
queued so far, turns it into rows (hash keys, JSON) and writes it as one batch, in one transaction, then takes
the next. The rows are built on a thread of the recorder's own, the next batch while the store writes the last
one (the SQLite store writes from a process of its own meanwhile, once a burst has started it). A message
promise that is still streaming gets a partial row at once; a single ticker (part of the writer loop) writes the
text of every partial that grew at least every `flush_interval` seconds while any streams, so a crash loses at
most the last ``flush_interval`` plus one write of text. When the message is complete it is stored, and its
partial row points at it.

A batch that fails is reported (logged at ERROR) and retried with back-off; after ``len(retry_delays)`` failed
retries it is split in halves, each tried once and split again if it fails, so one bad row costs only itself:
it is reported and left out, and everything else is written. A store that takes no write at all (an empty
transaction fails too) costs the batch, reported; later batches then get one try each until a write succeeds, so
a dead database delays leaving a context by the retries of one batch, not by one round of retries per row.
Nothing queued is dropped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from miniagents import AgentCall, AgentCallStatus, RunObserver
from miniagents._agent_call import new_uuid7_hex
from miniagents.messages import Message, MessagePromise, holds_only_plain_values
from miniagents.promising._context import active_context
from miniagents.promising.errors import NoActiveContextError
from miniagents.promising.ext.frozen import Frozen
from miniagents.promising.promising import PromisingContext
from miniagents.store._protocol import MessageStore
from miniagents.store._rows import SCHEMA_VERSION, SlotKind, StoreBatch

__all__ = ["PartialMessage", "StoreRecorder"]

logger = logging.getLogger("miniagents.store")

_BATCH_LIMIT = 50_000  # queued values per batch (5,000-25,000 operations): text is written well within 0.5 s
_STALL_SECONDS = 30.0  # `awrite_queued` gives up waiting when the writer has written nothing for this long
_BATCH_BYTES = 8 << 20  # JSON per batch (about): bigger ones are cut, see `StoreRecorder._batches`
_SIZE_CHECK_VALUES = 16  # values of message rows (4 rows) between two looks at a batch's size
_KNOWN_LIMIT = 200_000  # hash keys remembered as written (to skip rewriting them); forgotten all at once beyond


class PartialMessage:
    """A message being written into the store token by token (see `StoreRecorder.open_partial`).

    Its text is written at least every ``flush_interval`` seconds until it is completed or failed.
    """

    def __init__(self, recorder: StoreRecorder, partial_id: str, class_name: str, metadata_json: str) -> None:
        self.partial_id = partial_id
        self.class_name = class_name
        self.metadata_json = metadata_json
        self.parts: list[str] = []
        self.dirty = True
        self.closed = False
        self._recorder = recorder

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self.parts)

    def append(self, token: str) -> None:
        """Add a token to the text."""
        self.parts.append(token)
        self.dirty = True

    def complete(self, message: Message) -> None:
        """The message is complete: store it, and point the partial row at it."""
        self._close("complete", message)

    def fail(self) -> None:
        """The message will not be completed: keep the text so far, marked ``failed``."""
        self._close("failed", None)

    def _close(self, status: str, message: Message | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._recorder._close_partial(self, status, message)


_OP_LENGTHS = {"call": 9, "message": 2, "slot": 6, "partial": 4}
"""The queue of operations is flat (see `StoreRecorder._push`): each kind, then its values; this many in all."""
_active_context_get = active_context.get
_popleft = deque.popleft  # (`map(_popleft, repeat(queue, n))` takes n values without a Python step per value)
_STATUS_TEXTS: dict[Any, str] = {status: status.value for status in AgentCallStatus}  # (an enum's `.value` is slow)


class StoreRecorder(RunObserver):
    """Records agent calls and their messages into a `MessageStore`; the `RunObserver` of a store.

    Register it with ``MiniAgents(observers=[recorder])`` (``MiniAgents(store=...)`` does that for you), or call
    its ``record_*`` methods directly. Every method is synchronous, cheap, and never raises because of the
    database: the rows are written in the background by the writer task (started on demand on the running loop;
    no context owns it, so one recorder may serve several contexts at once). Leaving a `MiniAgents` context in
    which something was recorded (observed, or recorded directly) waits until what was recorded so far is written
    (`aon_context_exit`); `aflush` waits for everything, streams included.

    Args:
        store: where to write.
        flush_interval: seconds between writes of the text of streaming messages (while any stream). Must be
            positive and at most 0.5.
        retry_delays: seconds to wait before each retry of a failed batch; after the last one the batch is split
            (see above).

    Raises:
        ValueError: a bad ``flush_interval`` or ``retry_delays``.
    """

    isolated = False  # its methods only queue; its tasks are started detached (see `_start`)

    def __init__(
        self,
        store: MessageStore,
        *,
        flush_interval: float = 0.25,
        retry_delays: Sequence[float] = (0.05, 0.2, 0.5, 1.0),
    ) -> None:
        if not 0 < flush_interval <= 0.5:
            raise ValueError(f"flush_interval must be > 0 and <= 0.5 seconds, got {flush_interval!r}")
        if any(delay < 0 for delay in retry_delays):
            raise ValueError(f"retry_delays must not be negative, got {retry_delays!r}")
        self.store = store
        self.flush_interval = flush_interval
        self.retry_delays = tuple(retry_delays)
        self.failed_rows = 0
        """How many rows were left out after all their tries failed (logged, one line per batch)."""
        self._store_down = False  # the last batch found the store taking no write at all: one try per batch
        self._ops: deque[Any] = deque()  # appended on the event loop, taken by the writer thread (see `_push`)
        # The periodic text of streaming messages: written first in the writer's next round, ahead of the queue
        # (filled between rounds only; a partial's row is built from its text at that moment, so order is kept).
        self._text_ops: deque[Any] = deque()
        self._known: set[str] = set()
        self._streams: dict[str, PartialMessage] = {}  # open partial messages by id
        self._followed: dict[int, PartialMessage] = {}  # the partial of each message promise being followed
        self._streaming_replies: dict[str, list[tuple[MessagePromise, PartialMessage]]] = {}  # by call id
        self._writer: asyncio.Task[None] | None = None  # the writer task, while it runs (see `_start_writer`)
        self._pushed = 0  # values queued in all (on the event loop)
        self._written = 0  # of those, the values the writer has taken and written (or given up on)
        self._written_waiters: list[tuple[int, asyncio.Future[None]]] = []  # (`awrite_queued`: mark, waiter)
        self._last_context: Any = None  # the context something was last recorded in (see `_push`)
        self._wakeup: asyncio.Event | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._executor: ThreadPoolExecutor | None = None  # one thread that builds and writes the batches
        self._thread_loop: asyncio.AbstractEventLoop | None = None  # its event loop (the connection lives there)

    # the observation seam (`miniagents.RunObserver`)

    def on_call_input(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Record the input message at ``index`` of ``call``."""
        self.record_message_promise(call.call_id, "input", index, message_promise)

    def on_call_reply(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Record the reply message at ``index`` of ``call``."""
        self.record_message_promise(call.call_id, "reply", index, message_promise)
        partial = self._followed.get(id(message_promise))
        if partial is not None:  # streaming: completed before the call's end is recorded (see `on_call_ended`)
            self._streaming_replies.setdefault(call.call_id, []).append((message_promise, partial))

    def on_call_ended(self, call: AgentCall) -> None:
        """Record the call's end, after the replies it streamed: a crash never leaves it finished with a partial.

        Its replies are complete when it ends; the tasks that follow them may not have noted it yet.
        """
        for message_promise, partial in self._streaming_replies.pop(call.call_id, ()):
            if message_promise.is_resolved and not partial.closed:
                message = message_promise.result_nowait() if not message_promise.has_failed else None
                if isinstance(message, Message):
                    partial.complete(message)
                else:
                    partial.fail()
        self.record_call(call)

    # recording

    def record_call(self, call: Any) -> None:
        """Record an agent call as it is now (a later record of the same call id updates it).

        Args:
            call: a `miniagents.AgentCall`, or any object with its attributes ``call_id``, ``parent_call``
                (an object with a ``call_id``, or None), ``agent_alias``, ``kwargs`` (a `Frozen` or None),
                ``status`` (a str), ``started_at``, ``ended_at`` and ``error``.
        """
        parent = call.parent_call
        self._push(
            "call",
            call.call_id,
            None if parent is None else parent.call_id,
            call.agent_alias,
            call.kwargs,
            _STATUS_TEXTS.get(call.status) or str(getattr(call.status, "value", call.status)),
            call.started_at,
            call.ended_at,
            None if call.error is None else f"{type(call.error).__name__}: {call.error}",
        )

    on_call_started = record_call  # (a call that started: its status)

    def record_message(self, message: Message) -> None:
        """Store ``message`` (and the messages nested in it), once however often it is recorded."""
        self._push("message", message)

    def record_slot(self, owner_id: str, kind: SlotKind, index: int, message: Message) -> None:
        """Record that the ``kind`` sequence of ``owner_id`` has ``message`` (a finished one) at ``index``."""
        self._push("slot", owner_id, kind, index, message, None)

    def record_message_promise(
        self, owner_id: str, kind: SlotKind, index: int, message_promise: MessagePromise
    ) -> None:
        """Record that the ``kind`` sequence of ``owner_id`` has ``message_promise`` at ``index`` (from 0).

        A message promise that is still streaming is stored as partial at once and followed (in a background
        task) until it is complete; its text is written every `flush_interval` seconds meanwhile.

        Args:
            owner_id: a call id (kinds ``"input"`` and ``"reply"``) or a history id (kind ``"history"``).
            kind: ``"input"``, ``"reply"`` or ``"history"``.
            index: the position.
            message_promise: the message.
        """
        metadata = message_promise.preliminary_metadata
        if message_promise.is_resolved and isinstance(metadata, Message):  # made from a message: it is the message
            self._push("slot", owner_id, kind, index, metadata, None)
            return
        partial = self._followed.get(id(message_promise))
        if partial is None:
            partial = self._follow(message_promise)
        self._push("slot", owner_id, kind, index, None, partial.partial_id)

    def open_partial(
        self, owner_id: str, kind: SlotKind, index: int, metadata: Frozen, class_name: str = "Message"
    ) -> PartialMessage:
        """Record a message that the caller will write token by token at ``index`` of ``owner_id``'s ``kind``.

        Args:
            owner_id: see `record_message_promise`.
            kind: see `record_message_promise`.
            index: see `record_message_promise`.
            metadata: its fields known so far (``role``, ``model`` …).
            class_name: the name of its class, used when it is loaded while partial.

        Returns:
            The `PartialMessage`: ``append`` the tokens, then ``complete`` it with the message (or ``fail`` it).
        """
        partial = self._new_partial(class_name, metadata)
        self._push("slot", owner_id, kind, index, None, partial.partial_id)
        return partial

    def _new_partial(self, class_name: str, metadata: Frozen) -> PartialMessage:
        partial = PartialMessage(self, new_uuid7_hex(), class_name, metadata.serialized)
        self._streams[partial.partial_id] = partial
        self._push("partial", partial, "streaming", None)
        return partial

    def _close_partial(self, partial: PartialMessage, status: str, message: Message | None) -> None:
        self._streams.pop(partial.partial_id, None)
        if message is not None:
            self._push("message", message)
        self._push("partial", partial, status, message)

    def _follow(self, message_promise: MessagePromise) -> PartialMessage:
        partial = self._new_partial(message_promise.message_class.__name__, message_promise.preliminary_metadata)
        self._followed[id(message_promise)] = partial
        self._start(self._afollow(message_promise, partial))
        return partial

    async def _afollow(self, message_promise: MessagePromise, partial: PartialMessage) -> None:
        message: Message | None = None
        try:
            async for token in message_promise:
                partial.append(token)
            message = await message_promise
        except Exception:  # the stream's failure is its consumers' business; we keep the text
            pass
        finally:
            del self._followed[id(message_promise)]
            if message is None:
                partial.fail()
            else:
                partial.complete(message)

    # writing

    def _push(self, *op: Any) -> None:
        """Queue an operation: its kind, then its values (`_OP_LENGTHS` in all), flat in the queue.

        No tuple per operation stays alive until the writer takes it: such tuples are what the garbage collector
        counts (a collection every 700), and a busy run queues four per agent call. ``extend`` is one step for
        the writer thread: it sees the whole operation or none of it.
        """
        self._ops.extend(op)
        self._pushed += len(op)
        context = _active_context_get()
        if context is not self._last_context:  # (recorded in another context than the last time)
            self._last_context = context
            while context is not None and not hasattr(context, "await_at_exit"):  # (a plain `PromisingContext`)
                context = context.parent
            if context is not None:
                context.await_at_exit(self)  # leaving the `MiniAgents` waits for what is recorded in it
        if self._writer is None:
            self._start_writer()
        elif self._wakeup is not None:
            self._wakeup.set()

    def _start_writer(self) -> None:
        """Start the writer task, which no `MiniAgents` context owns: a store may serve several at once.

        Leaving a context waits for what it recorded to be written (`aon_context_exit`), not for the writer, which
        goes on while other contexts record. It runs with the active context at hand, for `Frozen.hash_key`.
        """
        context = contextvars.Context()
        with contextlib.suppress(NoActiveContextError):
            context.run(active_context.set, PromisingContext.get_current())
        writer = context.run(asyncio.get_running_loop().create_task, self._awrite_loop())
        writer.add_done_callback(_report_writer_failure)
        self._writer = writer

    @property
    def writing(self) -> bool:
        """Whether the writer task runs (it has the store's writing connection until it ends)."""
        return self._writer is not None

    def in_writer_thread(self) -> bool:
        """Whether the caller runs on the writer thread's event loop (where the writing connection lives)."""
        try:
            return asyncio.get_running_loop() is self._thread_loop
        except RuntimeError:
            return False

    def _start(self, coroutine: Any) -> asyncio.Task[None]:
        """Start ``coroutine`` in a task no agent call owns (we are not `isolated`, see `start_detached`)."""
        try:
            context = PromisingContext.get_current()
        except NoActiveContextError:
            return asyncio.get_running_loop().create_task(coroutine)
        return context.start_detached(coroutine, suppress_errors=True, log_level_for_errors=logging.ERROR)

    async def awrite_queued(self) -> None:
        """Wait until everything queued so far is written (not what is queued later, or text still to stream).

        Unlike `aflush`, it does not wait for streaming messages to end: their text so far is written when the
        writer next flushes it (every `flush_interval` seconds). It waits as long as the writer makes progress:
        after 30 s without any (a database call that does not return), it logs an error and returns.
        """
        mark = self._pushed
        if self._written >= mark:
            return
        if self._writer is None:  # (a writer that failed left values queued: a new one takes them)
            self._start_writer()
        waiter = asyncio.get_running_loop().create_future()
        self._written_waiters.append((mark, waiter))
        written = self._written
        while True:  # as long as the writer makes progress (a database call that never returns would hang us)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), _STALL_SECONDS)
                return
            if self._written == written:
                logger.error(
                    "the writer of %r wrote nothing for %s s; %d queued values are left to it",
                    self.store,
                    _STALL_SECONDS,
                    mark - written,
                )
                return
            written = self._written

    async def aon_context_exit(self) -> None:
        """A context something was recorded in is being left: wait until what was recorded so far is written.

        Then, unless another context has queued more or has messages streaming, also until the writer has closed
        the connection and ended (so that the event loop may end right after).
        """
        await self.awrite_queued()
        await self.await_idle_writer()

    async def await_idle_writer(self) -> None:
        """If the writer has written everything and nothing streams, wait until it has closed the connection."""
        writer = self._writer
        if writer is not None and self._written >= self._pushed and not self._streams:
            await asyncio.wait([writer], timeout=_STALL_SECONDS)  # (not cancelled if we are)

    def _wake_written_waiters(self) -> None:
        written, waiting = self._written, []
        for mark, waiter in self._written_waiters:
            if mark <= written:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((mark, waiter))
        self._written_waiters = waiting

    async def aflush(self) -> None:
        """Wait until everything recorded so far is written, including streaming messages (until they end)."""
        while self._writer is not None or self._streams:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            if self._writer is None:  # streams only: their end starts the writer, which wakes us when idle
                await asyncio.sleep(self.flush_interval)
                continue
            await waiter

    async def _awrite_loop(self) -> None:
        wakeup = asyncio.Event()
        last_text_flush = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if self._streams and now - last_text_flush >= self.flush_interval:
                    last_text_flush = now
                    for stream in self._dirty_streams():
                        self._text_ops.extend(("partial", stream, "streaming", None))
                if self._ops or self._text_ops:
                    await self._in_writer_thread(self._abuild_and_write_queued())
                    self._wake_written_waiters()
                    continue
                if not self._streams:
                    break
                wakeup.clear()
                self._wakeup = wakeup  # `_push` sets it only while we wait here (not once per operation)
                try:
                    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), max(0.0, last_text_flush + self.flush_interval - now))
                finally:
                    self._wakeup = None
        finally:
            self._wakeup = None
            try:
                # Idle: no connection or thread is kept. `_writer` stays set meanwhile, so that nothing else uses
                # the connection or the thread's event loop until they are closed.
                with contextlib.suppress(Exception):
                    await self._in_writer_thread(self.store.aclose(), last=True)
            finally:
                self._writer = None
                if self._ops:  # queued while closing
                    self._start_writer()
                self._wake_written_waiters()
                if self._writer is None:
                    for waiter in self._idle_waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                    self._idle_waiters.clear()

    async def _in_writer_thread(self, coroutine: Coroutine[Any, Any, None], last: bool = False) -> None:
        """Run ``coroutine`` on the writer thread's own event loop, in the current context (for `hash_key`).

        The database round trips (several per batch) then wait on that idle loop, not on ours, which may be busy
        with thousands of agents: one hand-over per batch instead of an iteration of our loop per round trip.
        ``last`` closes that loop and ends the thread afterwards.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="miniagents-store-writer")
        executor = self._executor
        if last:
            self._executor = None
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(executor, context.run, self._run_here, coroutine, last)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])  # the batch in hand is finished (the thread cannot be interrupted)
            raise
        finally:
            if last:
                executor.shutdown(wait=False)

    def _run_here(self, coroutine: Coroutine[Any, Any, None], last: bool) -> None:
        if self._thread_loop is None:
            self._thread_loop = asyncio.new_event_loop()
        loop = self._thread_loop
        try:
            loop.run_until_complete(coroutine)
        finally:
            if last:
                self._thread_loop = None
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

    async def _abuild_and_write_queued(self) -> None:
        """Write batch after batch until nothing is queued (on the writer thread), each built while the last is written.

        The thread takes the next batch itself: the event loop that handed it this work may be busy with thousands
        of agents and take long to hand over the next one. A batch is handed to the store (in a task of this
        thread's loop) before the next one is built, so that a store that writes elsewhere (the SQLite store's
        writer process) writes while this thread builds; the next one is handed over when the last is written,
        so batches are written in order, and a failing one is retried before the next. It returns after
        ``flush_interval`` while messages stream, so that the event loop can queue their text.
        """
        started = time.monotonic()
        writing: asyncio.Task[None] | None = None
        writing_values = 0  # the values of the queue that the batch being written covers
        try:
            text_ops = self._text_ops
            if text_ops:
                for batch, _, added in self._batches(list(map(_popleft, itertools.repeat(text_ops, len(text_ops))))):
                    await self._await_written(writing, writing_values)
                    writing, writing_values = await self._astart_writing(batch, added), 0
            queue = self._ops
            while queue:
                # Only this thread takes from the queue (the event loop only appends whole operations): these many
                # values are there, and then the rest of the last operation.
                taken = min(len(queue), _BATCH_LIMIT)
                ops = list(map(_popleft, itertools.repeat(queue, taken)))
                end = 0
                while end < taken:
                    end += _OP_LENGTHS[ops[end]]
                ops += map(_popleft, itertools.repeat(queue, end - taken))
                done = 0
                for batch, position, added in self._batches(ops):
                    await self._await_written(writing, writing_values)
                    writing, writing_values = await self._astart_writing(batch, added), position - done
                    done = position
                    if done < len(ops) and self._streams and time.monotonic() - started >= self.flush_interval:
                        queue.extendleft(reversed(ops[done:]))  # (before what was queued since: order is kept)
                        return
                if self._streams and time.monotonic() - started >= self.flush_interval:
                    return
        finally:
            await self._await_written(writing, writing_values)

    async def _astart_writing(self, batch: StoreBatch, added: set[str]) -> asyncio.Task[None]:
        """Start writing ``batch`` in a task; return once the store has it in hand (its first step has run)."""
        task = asyncio.ensure_future(self._awrite_all(batch, added))
        await asyncio.sleep(0)
        return task

    async def _await_written(self, writing: asyncio.Task[None] | None, values: int) -> None:
        """Wait until the batch being written (if any) is written or given up; count the queued values it covers."""
        if writing is not None:
            try:
                await writing
            finally:
                self._written += values

    def _dirty_streams(self) -> Iterator[PartialMessage]:
        for stream in self._streams.values():
            if stream.dirty:
                yield stream

    def _batches(self, ops: list[Any]) -> Iterator[tuple[StoreBatch, int, set[str]]]:
        """The rows of the queued operations ``ops`` (flat, see `_push`), as batches.

        Each comes with how far it goes in ``ops`` and the hash keys of the messages it adds (they count as written
        once it is, see `_awrite_all`).

        A batch ends after about `_BATCH_BYTES` of JSON, so that a run of big messages does not hold up the
        text of streaming ones (written between batches) for longer than writing that much takes.
        """
        known = self._known
        if len(known) > _KNOWN_LIMIT:
            known.clear()
        added: set[str] = set()
        now = time.time()
        position, end = 0, len(ops)
        next_size_check = _SIZE_CHECK_VALUES  # (in values of message rows: the JSON is there)
        batch = StoreBatch()
        message_values, partial_values = batch.values["messages"], batch.values["partials"]
        call_values, slot_values = batch.values["calls"], batch.values["slots"]
        calls: dict[str, int] = {}  # where each call's row starts: a call started and ended in a batch is one row
        partials: dict[str, int] = {}
        size = sized_messages = sized_partials = 0  # the JSON counted so far, and the values it was counted in
        while position < end:
            if len(message_values) >= next_size_check:
                next_size_check = len(message_values) + _SIZE_CHECK_VALUES
                size += sum(map(len, message_values[sized_messages + 2 :: 4]))  # (each row's JSON)
                size += sum(map(len, partial_values[sized_partials + 3 :: 7]))  # (each row's text)
                sized_messages, sized_partials = len(message_values), len(partial_values)
                if size > _BATCH_BYTES:
                    yield batch, position, added
                    batch, added = StoreBatch(), set()
                    message_values, partial_values = batch.values["messages"], batch.values["partials"]
                    call_values, slot_values = batch.values["calls"], batch.values["slots"]
                    calls, partials = {}, {}
                    size = sized_messages = sized_partials = 0
                    next_size_check = _SIZE_CHECK_VALUES
            kind = ops[position]
            start, position = position + 1, position + _OP_LENGTHS[kind]
            try:
                if kind == "slot":
                    owner_id, slot_kind, index, message, partial_id = ops[start:position]
                    hash_key = None if message is None else _add_message(message_values, message, known, added)
                    slot_values += (owner_id, slot_kind, index, hash_key, partial_id)
                elif kind == "call":
                    call_id, parent_id, alias, kwargs, status, started_at, ended_at, call_error = ops[start:position]
                    kwargs_json = None if kwargs is None else kwargs.serialized
                    call_row = (call_id, parent_id, alias, kwargs_json, status, started_at, ended_at, call_error)
                    _put_row(call_values, calls, call_id, call_row)
                elif kind == "message":
                    _add_message(message_values, ops[start], known, added)
                else:  # "partial"
                    stream, status, message = ops[start:position]
                    stream.dirty = False
                    text = _storable_json(json.dumps("".join(stream.parts), ensure_ascii=False))
                    hash_key = None if message is None else message.hash_key
                    partial_row = (
                        stream.partial_id,
                        stream.class_name,
                        stream.metadata_json,
                        text,
                        status,
                        hash_key,
                        now,
                    )
                    _put_row(partial_values, partials, stream.partial_id, partial_row)
            except Exception as error:  # e.g. a message whose own `serialize()` fails: it alone is left out
                self.failed_rows += 1
                logger.error(
                    "cannot record %s in %r, left out: %s: %s",
                    _describe_op(kind, ops[start:position]),
                    self.store,
                    type(error).__name__,
                    error,
                )
        yield batch, position, added

    async def _awrite_all(self, batch: StoreBatch, added: set[str]) -> None:
        """Write ``batch``, retrying with back-off; what still fails costs only the rows that cannot be written.

        Then the messages it ``added`` that were written are known as written: later batches leave them out.

        The time is bounded (leaving a context waits for it): after the retries, if the store takes no write at
        all (an empty transaction fails too), the batch is given up at once, and later batches get one try each
        until a write succeeds again. Otherwise the batch is split in halves, each tried once and split again if
        it fails, down to the single rows that fail on their own.
        """
        if await self._atry(batch, (*self.retry_delays, None) if not self._store_down else (None,)):
            self._store_down = False
            self._known |= added
            return
        if len(batch) > 1 and not await self._atry(StoreBatch(), (None,), quiet=True):
            self._store_down = True
            self._give_up(batch, batch, "the store takes no write")
            return
        failed = await self._awrite_halves(batch)
        if failed:
            self._give_up(batch, failed, "each failed on its own too")
            failed_keys = {row.hash_key for part in failed for row in part.messages}
            self._known |= {key for key in added if key not in failed_keys}
        else:
            self._known |= added

    async def _awrite_halves(self, batch: StoreBatch) -> list[StoreBatch]:
        """Write the halves of a batch that failed, splitting again what fails; return the single rows that fail."""
        parts = _split(batch)
        if not parts:
            return [batch]
        failed = []
        for part in parts:
            if not await self._atry(part, (None,), quiet=True):
                failed += await self._awrite_halves(part)
        return failed

    def _give_up(self, batch: StoreBatch, failed: StoreBatch | list[StoreBatch], why: str) -> None:
        parts = [failed] if isinstance(failed, StoreBatch) else failed
        rows = sum(len(part) for part in parts)
        self.failed_rows += rows
        logger.error(
            "gave up writing %d of %d rows to %r (%s), e.g. %s", rows, len(batch), self.store, why, _describe(parts[0])
        )

    async def _atry(self, batch: StoreBatch, delays: Sequence[float | None], quiet: bool = False) -> bool:
        """Try to write ``batch``, once more after each delay that is not None; whether it was written."""
        for attempt, delay in enumerate(delays):
            try:
                await self.store.awrite(batch)
                return True
            except Exception as error:
                logger.log(
                    logging.DEBUG if quiet else logging.ERROR,
                    "writing %d rows to %r failed (try %d of %d): %s: %s",
                    len(batch),
                    self.store,
                    attempt + 1,
                    len(delays),
                    type(error).__name__,
                    error,
                )
                if not quiet:  # (the halves of a batch are tried on the connection that the probe found working)
                    with contextlib.suppress(Exception):
                        await self.store.aclose()  # a fresh connection for what comes next
                if delay is not None:
                    await asyncio.sleep(delay)
        return False


def _add_message(values: list[Any], message: Message, known: set[str], added: set[str]) -> str:
    """Add the row of ``message`` and of each message nested in it that is not ``known`` or ``added`` already.

    ``values``: the batch's flat values of messages; ``added``: the hash keys of the messages it adds (this adds
    to it). The row's JSON is `Frozen.serialized` (nested messages as hash keys), the text its key is the hash
    of. Returns the hash key of ``message``.
    """
    key = message.known_hash_key()
    if key is not None and (key in known or key in added):
        return key
    serialized, key = message.serialized_and_hash_key()
    if key in known or key in added:
        return key
    if not holds_only_plain_values(message):
        for sub_message in message.sub_messages():
            sub_key = sub_message.known_hash_key()
            if sub_key is None or (sub_key not in known and sub_key not in added):
                sub_json, sub_key = sub_message.serialized_and_hash_key()
                if sub_key not in known and sub_key not in added:
                    added.add(sub_key)
                    values += (sub_key, sub_message.class_, _storable_json(sub_json), SCHEMA_VERSION)
    added.add(key)
    values += (key, message.class_, _storable_json(serialized), SCHEMA_VERSION)
    return key


def _storable_json(json_text: str) -> str:
    """``json_text`` as a database takes it: with a lone surrogate (not encodable as UTF-8) as a JSON escape.

    The JSON means the same (``json.loads`` gives the same values back); only such a text is rewritten.
    """
    if not json_text.isascii():
        try:
            json_text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(json.loads(json_text), ensure_ascii=True)
    return json_text


def _report_writer_failure(writer: asyncio.Task[None]) -> None:
    if not writer.cancelled() and writer.exception() is not None:
        logger.error("the store's writer task failed", exc_info=writer.exception())


def _put_row(values: list[Any], starts: dict[str, int], key: str, row: tuple[Any, ...]) -> None:
    """Add ``row`` to the flat ``values``, or overwrite the row added under ``key`` before (``starts``: where)."""
    start = starts.get(key)
    if start is None:
        starts[key] = len(values)
        values += row
    else:
        values[start : start + len(row)] = row


def _split(batch: StoreBatch) -> list[StoreBatch]:
    """Split a batch in two halves (by table, then by rows); [] for a single row."""
    rows = [(table, row) for table in StoreBatch.WIDTHS for row in batch.rows(table)]
    if len(rows) <= 1:
        return []
    halves = [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
    result = []
    for half in halves:
        part = StoreBatch()
        for table, row in half:
            part.add(table, row)
        result.append(part)
    return result


def _describe_op(kind: str, values: list[Any]) -> str:
    """What a queued operation records, for an error message."""
    if kind == "slot":
        owner_id, slot_kind, index, message = values[:4]
        return f"{slot_kind} message {index} of {owner_id} ({type(message).__name__})"
    if kind == "call":
        return f"the call {values[0]} of {values[2]!r}"
    if kind == "message":
        return f"a {type(values[0]).__name__}"
    return f"the text of the partial message {values[0].partial_id}"


def _describe(batch: StoreBatch) -> str:
    for table, rows in batch.tables():
        return f"{table} row {rows[0]!r}"[:300]
    return "nothing"
