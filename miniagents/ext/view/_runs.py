"""What the view shows: runs (call trees and message texts), and the `RunSource` protocol the web app reads them from.

`LiveRuns` holds the runs that programs publish while they run (see `ViewPublisher`). A source of stored runs (the
message store) implements the same `RunSource` protocol.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from miniagents._text_io import utf8_text
from miniagents.errors import MiniAgentsError

__all__ = ["EventError", "LiveRuns", "RunSource", "UnknownRunError"]

_STATUSES = frozenset({"running", "finished", "failed", "cancelled"})
_DIRECTIONS = ("input", "reply")
_MAX_RUNS = 100  # the oldest runs are forgotten beyond this
_MAX_BATCH = 5000  # call events per server-sent event


class EventError(MiniAgentsError, ValueError):
    """A published event is malformed (the ingest endpoint answers 400 with this message)."""


class UnknownRunError(EventError):
    """A batch continues a run this server does not have (it restarted meanwhile): the ingest endpoint answers 409.

    The publisher then sends the batch again with the start of the calls still running, as a new run.
    """


@runtime_checkable
class RunSource(Protocol):
    """Where the view's web app reads runs from.

    Every method returns plain JSON-able data; None (or an exhausted iterator) means "unknown run / call / message".
    """

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, newest first: ``{"id", "name", "started_at", "calls", "running"}``."""
        ...

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its calls (``{"run": {...}, "calls": [call, ...]}``), calls in start order."""
        ...

    def get_call(self, run_id: str, call_id: str) -> dict[str, Any] | None:
        """One call with its ``inputs`` and ``replies``: lists of ``{"key", "class", "preview", "done"}``."""
        ...

    def get_message(self, run_id: str, key: str) -> dict[str, Any] | None:
        """One message: ``{"key", "class", "text", "done", "error"}``."""
        ...

    def follow_run(self, run_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The run's call events from its start and then as they happen, in batches (lists).

        An event is ``{"type": "call", "id", "parent", "alias", "status", ...}`` or ``{"type": "status", "id",
        "status", "error", "ended_at"}``.
        """
        ...

    def follow_message(self, run_id: str, key: str) -> AsyncIterator[dict[str, Any]]:
        """The message's text from its start and then as it streams: ``{"text": chunk}`` …, then ``{"done": ..}``."""
        ...


class _Message:
    __slots__ = ("chunks", "class_", "done", "error", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self.class_ = "Message"
        self.chunks: list[str] = []
        self.done = False
        self.error: str | None = None

    def summary(self) -> dict[str, Any]:
        text = "".join(self.chunks)
        return {"key": self.key, "class": self.class_, "preview": text[:120], "done": self.done}

    def full(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "class": self.class_,
            "text": "".join(self.chunks),
            "done": self.done,
            "error": self.error,
        }


class _Run:
    def __init__(self, run_id: str, name: str, started_at: float) -> None:
        self.id = run_id
        self.name = name
        self.started_at = started_at
        self.calls: dict[str, dict[str, Any]] = {}
        self.call_events: list[dict[str, Any]] = []
        self.messages: dict[str, _Message] = {}
        self.links: dict[str, tuple[list[str], list[str]]] = {}  # call id -> (input keys, reply keys)
        self.changed = asyncio.Event()

    def summary(self) -> dict[str, Any]:
        running = sum(1 for call in self.calls.values() if call["status"] == "running")
        return {
            "id": self.id,
            "name": self.name,
            "started_at": self.started_at,
            "calls": len(self.calls),
            "running": running,
        }

    def message(self, key: str) -> _Message:
        message = self.messages.get(key)
        if message is None:
            message = self.messages[key] = _Message(key)
        return message

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _string(where: str, value: Any, *, optional: bool = False) -> Any:
    r"""``value`` if it is a non-empty string (or None, if ``optional``); raises `EventError` naming ``where``.

    A string is kept as UTF-8 can hold it (`utf8_text`): JSON can carry a lone surrogate (``"\udcff"``, e.g. from a
    file name decoded with ``surrogateescape``) that the server could not send back.
    """
    if isinstance(value, str) and value:
        return utf8_text(value)
    if value is None and optional:
        return value
    expected = "a non-empty string or null" if optional else "a non-empty string"
    raise EventError(f"{where} must be {expected}, got {_show(value)}")


def _text(where: str, value: Any) -> str | None:
    """``value`` if it is a string (possibly empty) or None; raises `EventError` naming ``where``."""
    if isinstance(value, str):
        return utf8_text(value)
    if value is None:
        return value
    raise EventError(f"{where} must be a string or null, got {_show(value)}")


def _time(where: str, value: Any) -> float | None:
    """``value`` as a float if it is a finite number (or None); raises `EventError` naming ``where``.

    JSON has no infinity or NaN, but Python's parser reads ``1e999`` as infinity and accepts ``NaN``: such a value
    could not be sent back as JSON.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # (an integer too big for a float)
            number = math.inf
        if math.isfinite(number):
            return number
    raise EventError(f"{where} must be a finite number or null, got {_show(value)}")


def _checked_event(event: Any) -> dict[str, Any]:
    """The event with every field the view keeps checked and normalised; raises `EventError` on the first bad one."""
    if not isinstance(event, dict):
        raise EventError(f"an event must be an object, got {_show(event)}")
    kind = event.get("type")
    where = f"event {kind!r}:"
    if kind == "call":
        alias = event.get("alias", "?")
        if not isinstance(alias, str):  # (an agent's alias can be empty)
            raise EventError(f"{where} 'alias' must be a string, got {_show(alias)}")
        return {
            "type": "call",
            "id": _string(f"{where} 'id'", event.get("id")),
            "parent": _string(f"{where} 'parent'", event.get("parent"), optional=True),
            "alias": utf8_text(alias),
            "started_at": _time(f"{where} 'started_at'", event.get("started_at")),
        }
    if kind == "status":
        status = event.get("status")
        if not isinstance(status, str) or status not in _STATUSES:  # (a list or an object cannot be looked up)
            raise EventError(f"{where} unknown status {_show(status)} (expected one of {sorted(_STATUSES)})")
        return {
            "type": "status",
            "id": _string(f"{where} 'id'", event.get("id")),
            "status": status,
            "ended_at": _time(f"{where} 'ended_at'", event.get("ended_at")),
            "error": _text(f"{where} 'error'", event.get("error")),
        }
    if kind == "link":
        direction = event.get("direction")
        if direction not in _DIRECTIONS:
            raise EventError(f"{where} 'direction' must be 'input' or 'reply', got {_show(direction)}")
        return {
            "type": "link",
            "call": _string(f"{where} 'call'", event.get("call")),
            "direction": direction,
            "key": _string(f"{where} 'key'", event.get("key")),
        }
    if kind == "text":
        done = event.get("done", False)
        if not isinstance(done, bool):
            raise EventError(f"{where} 'done' must be true or false, got {_show(done)}")
        return {
            "type": "text",
            "key": _string(f"{where} 'key'", event.get("key")),
            "text": _text(f"{where} 'text'", event.get("text")),
            "done": done,
            "error": _text(f"{where} 'error'", event.get("error")),
            "class": _string(f"{where} 'class'", event.get("class"), optional=True),
        }
    raise EventError(f"unknown event type {_show(kind)}")


class LiveRuns:
    """The runs published to this view server, in memory (a `RunSource`).

    Events come in batches through `ingest` (the ``POST /api/ingest`` endpoint); the ``follow_*`` iterators wake
    up on every batch.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def ingest(self, body: Any) -> int:
        """Apply one published batch: ``{"run": id, "name": str, "started_at": float, "events": [...]}``.

        The run is created by its first batch (``name`` and ``started_at``, a Unix time in seconds, are optional
        and read only then). A batch with ``"continues": true`` (one that follows batches this server took) is
        refused if the run is not here: the server restarted (or forgot the run) and would skip the events of every
        call it never saw start. Event shapes (see `ViewPublisher`): ``{"type": "call", "id", "parent", "alias",
        "started_at"}``, ``{"type": "status", "id", "status", "ended_at", "error"}``, ``{"type": "link", "call",
        "direction": "input" | "reply", "key"}`` and ``{"type": "text", "key", "text"}`` / ``{"type": "text",
        "key", "done": true, "error", "class"}``. Ids, keys and classes are non-empty strings, aliases strings,
        errors and texts strings or null, times finite numbers (Unix times in seconds) or null.

        The whole batch is checked before any of it is applied. An event that cannot be applied is skipped: a
        ``status`` or ``link`` event of a call the view has not seen (its ``call`` event was lost, e.g. while the
        server was not running) and a ``call`` event repeating a known call's id (the call is not reset).

        Returns:
            How many events were skipped.

        Raises:
            EventError: the batch or an event in it is malformed (the message names the first problem); nothing
                of the batch is applied.
            UnknownRunError: the batch continues a run that is not here; nothing of it is applied.
        """
        if not isinstance(body, dict):
            raise EventError("the body must be an object")
        run_id, events = body.get("run"), body.get("events")
        run_id = _string("'run'", run_id)
        if not isinstance(events, list):
            raise EventError(f"'events' must be a list, got {_show(events)}")
        name = _text("'name'", body.get("name"))
        started_at = _time("'started_at'", body.get("started_at"))
        checked = [_checked_event(event) for event in events]
        run = self._runs.get(run_id)
        if run is None and body.get("continues") is True:
            raise UnknownRunError(f"no run {run_id!r} here (the server restarted?): send the calls still running")
        if run is None:
            run = self._new_run(run_id, name or run_id, time.time() if started_at is None else started_at)
        skipped = sum(1 for event in checked if not self._apply(run, event))
        run.notify()
        return skipped

    def _new_run(self, run_id: str, name: str, started_at: float) -> _Run:
        run = self._runs[run_id] = _Run(run_id, name, started_at)
        while len(self._runs) > _MAX_RUNS:
            del self._runs[next(iter(self._runs))]
        return run

    @staticmethod
    def _apply(run: _Run, event: dict[str, Any]) -> bool:
        """Apply a checked event; False if it is skipped (see `ingest`)."""
        kind = event["type"]
        if kind == "call":
            call_id = event["id"]
            if call_id in run.calls:
                return False
            call = {
                "id": call_id,
                "parent": event["parent"],
                "alias": event["alias"],
                "status": "running",
                "started_at": event["started_at"],
                "ended_at": None,
                "error": None,
            }
            run.calls[call_id] = call
            run.links[call_id] = ([], [])
            run.call_events.append({"type": "call", **call})
        elif kind == "status":
            existing = run.calls.get(event["id"])
            if existing is None:
                return False
            existing.update(status=event["status"], ended_at=event["ended_at"], error=event["error"])
            run.call_events.append(event)
        elif kind == "link":
            links = run.links.get(event["call"])
            if links is None:
                return False
            links[0 if event["direction"] == "input" else 1].append(event["key"])
            run.message(event["key"])
        else:  # "text"
            message = run.message(event["key"])
            if event["class"] is not None:
                message.class_ = event["class"]
            if event["text"]:
                message.chunks.append(event["text"])
            if event["done"]:
                message.done = True
                message.error = event["error"]
        return True

    def add_call_tree(self, root: Any, name: str | None = None) -> str:
        """Add a finished (e.g. stored) run from its root call tree; returns the run's id (the root call's id).

        Args:
            root: a call tree like the message store's ``StoredCall``: an object with ``call_id``,
                ``parent_call_id``, ``agent_alias``, ``status``, ``started_at``, ``ended_at``, ``error``,
                ``inputs`` and ``replies`` (sequences of messages) and ``children`` (calls of the same shape).
                A message with ``partial=True`` (one that was streaming when it was stored, see
                ``miniagents.store``) shows its text so far, marked as such: nothing more comes to a stored run.
            name: what the view calls the run; the root's alias and start time by default.

        Raises:
            EventError: a field has the wrong type or value (see `ingest`), e.g. an unknown status or a call id
                that is not a string; nothing of the tree is added.
        """
        events: list[dict[str, Any]] = []
        keys: dict[int, str] = {}  # the same message object in several places is one message

        def visit(call: Any) -> None:
            events.append(
                {
                    "type": "call",
                    "id": call.call_id,
                    "parent": call.parent_call_id if call is not root else None,
                    "alias": call.agent_alias,
                    "started_at": call.started_at,
                }
            )
            for direction, messages in (("input", call.inputs), ("reply", call.replies)):
                for message in messages:
                    key = keys.get(id(message))
                    new = key is None
                    if key is None:
                        key = keys[id(message)] = f"m{len(keys)}"
                    events.append({"type": "link", "call": call.call_id, "direction": direction, "key": key})
                    if new:
                        events.append({"type": "text", "key": key, "text": str(message)})
                        events.append(
                            {
                                "type": "text",
                                "key": key,
                                "done": True,
                                "error": _partial_note(message),
                                "class": type(message).__name__,
                            }
                        )
            for child in call.children:
                visit(child)
            if call.status != "running":
                events.append(
                    {
                        "type": "status",
                        "id": call.call_id,
                        "status": call.status,
                        "ended_at": call.ended_at,
                        "error": call.error,
                    }
                )

        visit(root)
        if name is None:
            name = f"{root.agent_alias} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(root.started_at))}"
        self.ingest({"run": root.call_id, "name": name, "started_at": root.started_at, "events": events})
        return str(root.call_id)

    # --- RunSource ----------------------------------------------------------------------------------------------

    def list_runs(self) -> list[dict[str, Any]]:
        """See `RunSource.list_runs`."""
        return [run.summary() for run in reversed(self._runs.values())]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """See `RunSource.get_run`."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        return {"run": run.summary(), "calls": list(run.calls.values())}

    def get_call(self, run_id: str, call_id: str) -> dict[str, Any] | None:
        """See `RunSource.get_call`."""
        run = self._runs.get(run_id)
        call = run.calls.get(call_id) if run is not None else None
        if run is None or call is None:
            return None
        inputs, replies = run.links[call_id]
        return {
            **call,
            "inputs": [run.messages[key].summary() for key in inputs],
            "replies": [run.messages[key].summary() for key in replies],
        }

    def get_message(self, run_id: str, key: str) -> dict[str, Any] | None:
        """See `RunSource.get_message`."""
        run = self._runs.get(run_id)
        message = run.messages.get(key) if run is not None else None
        return None if message is None else message.full()

    async def follow_run(self, run_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        """See `RunSource.follow_run` (it never ends by itself for a known run)."""
        run = self._runs.get(run_id)
        if run is None:
            return
        position = 0
        while True:
            changed = run.changed
            if position < len(run.call_events):
                events = run.call_events[position : position + _MAX_BATCH]
                position += len(events)
                yield events
                continue
            await changed.wait()

    async def follow_message(self, run_id: str, key: str) -> AsyncIterator[dict[str, Any]]:
        """See `RunSource.follow_message`."""
        run = self._runs.get(run_id)
        message = run.messages.get(key) if run is not None else None
        if run is None or message is None:
            return
        position = 0
        while True:
            changed = run.changed
            if position < len(message.chunks):
                yield {"text": "".join(message.chunks[position:])}
                position = len(message.chunks)
            if message.done:
                yield {"done": True, "error": message.error, "class": message.class_}
                return
            await changed.wait()


def _partial_note(message: Any) -> str | None:
    """What the view says of a stored message that was cut short (None for a complete one)."""
    if not getattr(message, "partial", False):
        return None
    if getattr(message, "partial_status", None) == "failed":
        return "partial: its stream failed after this text"
    return "partial: it was still streaming when the store last wrote its text"
