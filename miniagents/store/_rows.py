"""The rows a message store keeps, and the batch of them that one transaction writes.

Tables (every backend keeps the same five, prefixed ``miniagents_``):

- ``messages``: one row per distinct message, keyed by its hash key (content-addressed: a message that recurs is
  stored once). ``json`` holds its fields (``message.serialize()``: nested messages replaced by their hash keys,
  in ``<field>__hash_key`` and ``<field>__hash_keys`` fields).
- ``partials``: one row per message promise that was still streaming when it was first reported; its text so far
  (JSON-encoded), a status (``streaming``, ``complete`` or ``failed``) and, once complete, the hash key.
- ``calls``: one row per agent call: id, parent call, agent alias, kwargs (JSON), status (``running``,
  ``finished``, ``failed``, ``cancelled``), start and end times (seconds since the epoch), error.
- ``slots``: the ordered messages of an owner: a call's ``input`` and ``reply`` messages, or the entries of a
  ``history``; each slot names a message by hash key or a partial by id.
- ``schema``: the schema version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = ["SCHEMA_VERSION", "CallRow", "MessageRow", "PartialRow", "SlotRow", "StoreBatch"]

SCHEMA_VERSION = 1
"""The version of the table layout and of the ``json`` of messages (stored with every message)."""

SlotKind = Literal["input", "reply", "history"]
PartialStatus = Literal["streaming", "complete", "failed"]


class MessageRow(NamedTuple):
    """A stored message: its hash key, class name, fields as JSON (``serialize()``) and the schema version."""

    hash_key: str
    class_: str
    json: str
    schema_version: int = SCHEMA_VERSION


class PartialRow(NamedTuple):
    """A message that was streaming when it was reported: its text so far, JSON-encoded in ``text_json``.

    ``metadata_json`` holds the preliminary metadata (a JSON object). ``hash_key`` is set once it is complete.
    """

    partial_id: str
    class_: str
    metadata_json: str
    text_json: str
    status: PartialStatus
    hash_key: str | None
    updated_at: float


class CallRow(NamedTuple):
    """An agent call (see `miniagents.AgentCall`); ``kwargs_json`` is a JSON object or None."""

    call_id: str
    parent_call_id: str | None
    agent_alias: str
    kwargs_json: str | None
    status: str
    started_at: float
    ended_at: float | None
    error: str | None


class SlotRow(NamedTuple):
    """The message at ``position`` (from 0) of an owner's ``kind`` sequence: a hash key or a partial id."""

    owner_id: str
    kind: SlotKind
    position: int
    hash_key: str | None
    partial_id: str | None


@dataclass
class StoreBatch:
    """Rows to write in one transaction. Within each list, later rows win (upserts); messages are never replaced."""

    messages: list[MessageRow] = field(default_factory=list)
    partials: list[PartialRow] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)
    slots: list[SlotRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages) + len(self.partials) + len(self.calls) + len(self.slots)

    def tables(self) -> Iterator[tuple[str, list[Any]]]:
        """``(table, rows)`` for every table with rows, in the order they are written (messages first)."""
        for table, rows in (
            ("messages", self.messages),
            ("partials", self.partials),
            ("calls", self.calls),
            ("slots", self.slots),
        ):
            if rows:
                yield table, rows
