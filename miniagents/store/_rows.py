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

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Literal, NamedTuple

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


class StoreBatch:
    """Rows to write in one transaction. Within each table, later rows win (upserts); messages are never replaced.

    Each table's rows are kept flat: one list of values, row after row (`values`, with `WIDTHS` values per row).
    A batch of ten thousand rows is then a few lists, not ten thousand tuples that the garbage collector would
    count (every 700 of them start a collection, and the rarer older ones walk everything the event loop holds).
    The row sequences (`messages`, `partials`, `calls`, `slots`) are made on demand.

    Args:
        messages: `MessageRow` tuples to start with (or any tuples of their four values).
        partials: `PartialRow` tuples.
        calls: `CallRow` tuples.
        slots: `SlotRow` tuples.

    Raises:
        ValueError: a row with the wrong number of values.
    """

    WIDTHS: ClassVar[dict[str, int]] = {"messages": 4, "partials": 7, "calls": 8, "slots": 5}
    """The tables, in the order they are written (messages first), and the number of values of each's rows."""

    def __init__(
        self,
        messages: Iterable[tuple[Any, ...]] = (),
        partials: Iterable[tuple[Any, ...]] = (),
        calls: Iterable[tuple[Any, ...]] = (),
        slots: Iterable[tuple[Any, ...]] = (),
    ) -> None:
        self.values: dict[str, list[Any]] = {table: [] for table in self.WIDTHS}
        """The values of each table's rows, row after row."""
        for table, rows in (("messages", messages), ("partials", partials), ("calls", calls), ("slots", slots)):
            for row in rows:
                self.add(table, row)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Add a row to ``table`` (``"messages"``, ``"partials"``, ``"calls"`` or ``"slots"``).

        Raises:
            ValueError: an unknown table, or ``row`` does not have the table's number of values.
        """
        if table not in self.WIDTHS:
            raise ValueError(f"no table {table!r} in a StoreBatch (one of {', '.join(self.WIDTHS)})")
        if len(row) != self.WIDTHS[table]:
            raise ValueError(f"a row of {table} has {self.WIDTHS[table]} values, got {len(row)}: {row!r}")
        self.values[table] += row

    def rows(self, table: str) -> tuple[Any, ...]:
        """The rows of ``table``, as its row type (`MessageRow` …)."""
        row_type, width, values = _ROW_TYPES[table], self.WIDTHS[table], self.values[table]
        return tuple(row_type(*values[start : start + width]) for start in range(0, len(values), width))

    @property
    def messages(self) -> tuple[MessageRow, ...]:
        """The `MessageRow` rows."""
        return self.rows("messages")

    @property
    def partials(self) -> tuple[PartialRow, ...]:
        """The `PartialRow` rows."""
        return self.rows("partials")

    @property
    def calls(self) -> tuple[CallRow, ...]:
        """The `CallRow` rows."""
        return self.rows("calls")

    @property
    def slots(self) -> tuple[SlotRow, ...]:
        """The `SlotRow` rows."""
        return self.rows("slots")

    def row_count(self, table: str) -> int:
        """How many rows ``table`` has."""
        return len(self.values[table]) // self.WIDTHS[table]

    def __len__(self) -> int:
        return sum(len(values) // self.WIDTHS[table] for table, values in self.values.items())

    def __repr__(self) -> str:
        counts = ", ".join(f"{table}={self.row_count(table)}" for table in self.WIDTHS)
        return f"StoreBatch({counts} rows)"

    def tables(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """``(table, rows)`` for every table with rows, in the order they are written (messages first).

        The SQLite store reads `values` instead (no tuple per row).
        """
        for table, values in self.values.items():
            if values:
                yield table, self.rows(table)


_ROW_TYPES: dict[str, Any] = {"messages": MessageRow, "partials": PartialRow, "calls": CallRow, "slots": SlotRow}
