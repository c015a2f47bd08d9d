"""`MessageStore`: the small protocol a storage backend implements (SQLite and PostgreSQL ship with miniagents)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol, runtime_checkable

from miniagents.store._rows import CallRow, MessageRow, PartialRow, SlotRow, StoreBatch

__all__ = ["MessageStore"]


@runtime_checkable
class MessageStore(Protocol):
    """Where runs are kept: rows in, rows out (see `miniagents.store._rows` for the tables).

    A backend only stores and fetches rows. Batching, streaming partial text, turning agent calls into rows
    (`StoreRecorder`) and turning rows back into messages and call trees (`aload_message`, `aload_call_tree`) are
    done on top of it, the same way for every backend. Writes are idempotent: writing a batch twice leaves the same
    rows as writing it once, so a failed batch can be retried.
    """

    async def awrite(self, batch: StoreBatch) -> None:
        """Write every row of ``batch`` in one transaction (all or nothing).

        Raises:
            Exception: whatever the database raises; nothing of the batch is written then.
        """

    async def aread_messages(self, hash_keys: Collection[str]) -> dict[str, MessageRow]:
        """The stored messages among ``hash_keys``, by hash key (missing ones are left out)."""

    async def aread_partials(self, partial_ids: Collection[str]) -> dict[str, PartialRow]:
        """The stored partial messages among ``partial_ids``, by id (missing ones are left out)."""

    async def aread_calls(self, root_call_id: str) -> list[CallRow]:
        """The call ``root_call_id`` and all its descendants, in the order they started (empty if unknown)."""

    async def aread_root_calls(self, limit: int = 100) -> list[str]:
        """The ids of the top-level calls (runs), newest first, at most ``limit`` of them."""

    async def aread_slots(self, owner_ids: Collection[str]) -> list[SlotRow]:
        """The slots of ``owner_ids`` (calls or histories), ordered by owner, kind and position."""

    async def aclose(self) -> None:
        """Close the connection (the store opens it again when it is used again)."""
