"""`ViewPublisher`: the `RunObserver` that sends a running program's call tree to ``miniagents view``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
import weakref
from typing import Any

from miniagents.ext._background import start_detached
from miniagents.messages import MessagePromise
from miniagents.miniagents import AgentCall, MiniAgents, RunObserver
from miniagents.promising.errors import PromisingContextError

__all__ = ["DEFAULT_PORT", "ViewPublisher"]

DEFAULT_PORT = 8765
"""The port ``miniagents view`` listens on (on 127.0.0.1) unless told otherwise."""

_RETRY_INTERVAL = 0.25  # seconds between batches while the server does not take them
# seconds a batch may take (the server answers in milliseconds): leaving the context waits for the batch in flight
# and the last one, so a server that does not answer (stopped with Ctrl+Z, say) must not hold the program up for long
_TIMEOUT = 2.0
_RETRY_TIMEOUT = 0.5  # (while the server does not take the batches)
_MAX_POST_BYTES = 4 * 1024 * 1024  # a batch's events are sent in bodies of about this size at most
_MAX_TEXT_CHARS = 256 * 1024  # a longer text is sent in several "text" events (the server joins them)

logger = logging.getLogger("miniagents.view")


class ViewPublisher(RunObserver):
    """Publish the run to a ``miniagents view`` server: one line opts a program in.

    ``MiniAgents(observers=[ViewPublisher()])`` sends every agent call (when it starts, its status when it
    ends), which messages are its input and replies, and the messages' text (token by token while they stream) to
    the server, which shows them live in the browser.

    Events are batched: they are collected in memory (each observer method only appends to a list) and sent
    every ``flush_interval`` seconds by a background task of the `MiniAgents` context (leaving the context waits
    for the last batch). While the server is not running (or refuses the events), they are dropped (a batch every
    quarter of a second at most) and one warning is logged; another one says when a batch gets through again. That
    batch sends the start of the calls still running again, so that a view server started (or restarted) during
    the run shows them and every call that starts from then on (the server skips the events of calls whose start
    it never got); a server restarted between two batches refuses the next one as the continuation of a run it does
    not have, and gets it again that way. A batch the server does not answer within 2 seconds is dropped too, so
    that leaving the context does not wait long for a server that hangs. The run itself is never slowed down or
    failed by the view.

    Args:
        url: the server's address; ``http://127.0.0.1:8765`` by default, or the environment variable
            ``MINIAGENTS_VIEW_URL``.
        run_name: what the view calls this run (the program's file name and the start time by default).
        flush_interval: seconds between batches.

    Raises:
        ValueError: ``flush_interval`` is not positive, or ``url`` is not an http URL on this machine.
        ImportError: ``httpx`` is not installed (``pip install "miniagents[view]"``).
    """

    isolated = False  # its methods only queue events; its tasks are started detached (see `_start`)

    def __init__(self, url: str | None = None, run_name: str | None = None, flush_interval: float = 0.05) -> None:
        try:
            import httpx
        except ImportError as error:  # pragma: no cover - the view extra brings httpx
            raise ImportError('ViewPublisher needs httpx: pip install "miniagents[view]"', name="httpx") from error
        if url is None:
            url = os.environ.get("MINIAGENTS_VIEW_URL") or f"http://127.0.0.1:{DEFAULT_PORT}"
        parsed = httpx.URL(url)
        if parsed.scheme != "http" or parsed.host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the view server must be an http URL on 127.0.0.1 or localhost, got {url!r}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval!r}")
        self.url = str(parsed).rstrip("/")
        self.run_id = uuid.uuid4().hex
        started = time.time()
        if run_name is None:
            program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
            run_name = f"{program} {time.strftime('%H:%M:%S', time.localtime(started))}"
        self.run_name = run_name
        self.flush_interval = flush_interval
        self.started_at = started
        self._events: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._unread: list[tuple[str, MessagePromise]] = []
        self._mini_agents: MiniAgents | None = None
        self._keys: weakref.WeakKeyDictionary[MessagePromise, str] = weakref.WeakKeyDictionary()
        self._next_key = 0
        # call id -> its "call" event, until a batch with the call's end has been sent (or dropped)
        self._open_calls: dict[str, dict[str, Any]] = {}
        self._failing = False  # the last batch did not get through (a warning was logged)
        self._delivered = False  # a batch got through: the next ones continue the run on the server
        self.sent_events = 0
        """How many events the server has taken so far."""
        self.dropped_events = 0
        """How many events were dropped so far because the server was not reachable or refused them."""

    # --- RunObserver --------------------------------------------------------------------------------------------

    def on_call_started(self, call: AgentCall) -> None:
        """Publish the new call (its parent, alias and start time)."""
        parent = call.parent_call
        event = {
            "type": "call",
            "id": call.call_id,
            "parent": parent.call_id if parent is not None else None,
            "alias": call.agent_alias,
            "started_at": call.started_at,
        }
        self._open_calls[call.call_id] = event
        self._emit(event)

    def on_call_input(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Publish that the message is an input of the call (and its text, once per message)."""
        self._link(call, "input", message_promise)

    def on_call_reply(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Publish that the message is a reply of the call (and its text, once per message)."""
        self._link(call, "reply", message_promise)

    def on_call_ended(self, call: AgentCall) -> None:
        """Publish the call's final status (and its error, as ``"ErrorType: message"``)."""
        error = call.error
        self._emit(
            {
                "type": "status",
                "id": call.call_id,
                "status": str(call.status.value),
                "ended_at": call.ended_at,
                "error": f"{type(error).__name__}: {error}" if error is not None else None,
            }
        )

    # --- internals ----------------------------------------------------------------------------------------------

    def _link(self, call: AgentCall, direction: str, message_promise: MessagePromise) -> None:
        key = self._keys.get(message_promise)
        new = key is None
        if key is None:
            key = self._keys[message_promise] = f"m{self._next_key}"
            self._next_key += 1
        if new:
            self._unread.append((key, message_promise))
        self._emit({"type": "link", "call": call.call_id, "direction": direction, "key": key})

    async def _aread_texts(self) -> None:
        """Read the texts of the messages linked since the last batch: the finished ones right here (no task)."""
        unread, self._unread = self._unread, []
        for key, message_promise in unread:
            if not message_promise.is_resolved:
                self._start(self._afollow_text(key, message_promise))
                continue
            try:
                message = await message_promise  # (resolved: returns at once)
            except Exception as exception:
                self._events.append(_text_done(key, f"{type(exception).__name__}: {exception}", "Message"))
                continue
            self._events.extend(_text_events(key, str(message)))
            self._events.append(_text_done(key, None, type(message).__name__))

    async def _afollow_text(self, key: str, message_promise: MessagePromise) -> None:
        error = None
        try:
            async for token in message_promise:
                for event in _text_events(key, token):
                    self._emit(event)
            class_name = type(await message_promise).__name__
        except Exception as exception:
            error = f"{type(exception).__name__}: {exception}"
            class_name = "Message"
        self._emit(_text_done(key, error, class_name))

    def _emit(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if self._flusher is None:
            self._flusher = self._start(self._aflush_loop())

    def _start(self, coroutine: Any) -> asyncio.Task[None]:
        """A task of the context (leaving it waits for it) that no agent call owns (see `start_detached`)."""
        try:
            self._mini_agents = MiniAgents.get_current()
        except PromisingContextError:  # (no context here: the one seen last, if any)
            pass
        task: asyncio.Task[None] = start_detached(coroutine, self._mini_agents)
        return task

    async def _aflush_loop(self) -> None:
        import httpx

        try:
            # http on 127.0.0.1 only (checked in __init__): no certificates to load, no proxy to go through
            async with httpx.AsyncClient(timeout=_TIMEOUT, verify=False, trust_env=False) as client:
                while True:
                    await asyncio.sleep(max(self.flush_interval, _RETRY_INTERVAL if self._failing else 0))
                    await self._aread_texts()
                    events, self._events = self._events, []
                    await self._asend(client, events)
                    for event in events:
                        if event["type"] == "status":
                            self._open_calls.pop(event["id"], None)
                    if not self._events and not self._unread:
                        self._flusher = None  # the next event starts a new flusher (even while this one closes)
                        break
        except BaseException:
            self._flusher = None
            raise

    async def _asend(self, client: Any, events: list[dict[str, Any]]) -> None:
        import httpx

        resend_open_calls = self._failing
        while True:
            # the server may have missed the start of the calls still running (and of those ending in this batch):
            # send them first (it skips the ones it has), so that the view shows them and the calls they start
            batch = events
            if resend_open_calls:
                new = {event["id"] for event in events if event["type"] == "call"}
                batch = [event for call_id, event in self._open_calls.items() if call_id not in new] + events
            head = {"run": self.run_id, "name": self.run_name, "started_at": self.started_at}
            if self._delivered and not resend_open_calls:
                head["continues"] = True  # (refused if the server does not have the run: it restarted meanwhile)
            sent = 0  # (events of this batch that got through, not counting the calls sent again)
            unsent_open_calls = len(batch) - len(events)
            try:
                for part, body in _bodies(head, batch):
                    response = await client.post(
                        f"{self.url}/api/ingest",
                        content=body,
                        headers={"content-type": "application/json"},
                        timeout=_RETRY_TIMEOUT if self._failing else _TIMEOUT,
                    )
                    if response.status_code != 200:
                        break
                    head.pop("continues", None)  # (this batch has created the run again, if need be)
                    self._delivered = True
                    sent += max(0, part - unsent_open_calls)
                    unsent_open_calls = max(0, unsent_open_calls - part)
            except httpx.HTTPError as error:
                self.sent_events += sent
                self._drop(
                    len(events) - sent,
                    f"the view server at {self.url} is not reachable ({type(error).__name__}: {error}); "
                    "start it with `miniagents view`",
                )
                return
            except Exception as error:  # (a bug of ours: it must not stop the publishing of the rest of the run)
                self.sent_events += sent
                self._drop(len(events) - sent, f"events for the view server at {self.url} failed: {error!r}")
                return
            if response.status_code == 409 and not resend_open_calls and sent == 0:
                resend_open_calls = True  # the server restarted since the last batch: it lacks the running calls
                continue
            break
        self.sent_events += sent
        if response.status_code != 200:
            self._drop(
                len(events) - sent,
                f"the view server at {self.url} refused events: {response.status_code} {response.text[:200]}",
            )
            return
        if self._failing:
            self._failing = False
            logger.warning(
                "the view server at %s takes the events of this run again (%d dropped); it shows the calls still "
                "running and those that start from now on",
                self.url,
                self.dropped_events,
            )

    def _drop(self, count: int, text: str) -> None:
        """Count ``count`` events as dropped; warn if the batch before got through (once per outage, not per batch)."""
        self.dropped_events += count
        if not self._failing:
            self._failing = True
            logger.warning("%s; events of this run are dropped until it takes them", text)


def _text_events(key: str, text: str) -> list[dict[str, Any]]:
    """The "text" events that send ``text`` (a long one in pieces, see `_MAX_TEXT_CHARS`)."""
    return [
        {"type": "text", "key": key, "text": text[start : start + _MAX_TEXT_CHARS]}
        for start in range(0, max(len(text), 1), _MAX_TEXT_CHARS)
    ]


def _encode(value: Any) -> bytes:
    """``value`` as JSON in UTF-8; a string with a lone surrogate (which UTF-8 cannot hold) is escaped instead."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # (e.g. a file name decoded with "surrogateescape"; the server shows U+FFFD)
        return json.dumps(value, separators=(",", ":")).encode()


def _bodies(head: dict[str, Any], events: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    """The bodies that send ``events`` in order, each about `_MAX_POST_BYTES` at most, with their event counts."""
    prefix = _encode(head)[:-1] + b',"events":['
    bodies: list[tuple[int, bytes]] = []
    part: list[bytes] = []
    size = 0
    for event in events:
        encoded = _encode(event)
        if part and size + len(encoded) > _MAX_POST_BYTES:
            bodies.append((len(part), prefix + b",".join(part) + b"]}"))
            part, size = [], 0
        part.append(encoded)
        size += len(encoded) + 1
    if part or not bodies:
        bodies.append((len(part), prefix + b",".join(part) + b"]}"))
    return bodies


def _text_done(key: str, error: str | None, class_name: str) -> dict[str, Any]:
    return {"type": "text", "key": key, "done": True, "error": error, "class": class_name}
