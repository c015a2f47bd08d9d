"""`PostgresMessageStore`: a message store on a PostgreSQL server through asyncpg."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from miniagents.store._base import RecordingStore
from miniagents.store._rows import StoreBatch
from miniagents.store._sql import (
    CREATE_TABLES,
    DEFAULT_PREFIX,
    SELECT_CALL_TREE,
    UPSERTS,
    check_prefix,
    numbered_placeholders,
)

__all__ = ["PostgresMessageStore"]

_CHUNK = 1000


def _import_asyncpg() -> Any:
    try:
        import asyncpg  # type: ignore[import-untyped]  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise ImportError(
            'PostgresMessageStore needs asyncpg: pip install "miniagents[postgres]" (or pip install asyncpg)'
        ) from exc
    return asyncpg


class PostgresMessageStore(RecordingStore):
    """A message store in a PostgreSQL database (the tables are created on first use).

    The writing connection is opened on first use and closed by `aclose`, which the recorder calls whenever it has
    written everything (an asyncpg connection belongs to one event loop); each read uses a connection of its own.

    Args:
        dsn: a ``postgresql://`` (or ``postgres://``) URL, as asyncpg accepts it
            (``postgresql://user:password@host:port/database``).
        table_prefix: prefix of the table names (letters, digits, ``_``).
        connect_timeout: seconds to wait for a connection.

    Raises:
        ImportError: asyncpg is not installed (``pip install "miniagents[postgres]"``).
        ValueError: not a PostgreSQL URL, or a bad prefix.

    Example:
        >>> store = PostgresMessageStore("postgresql://app@127.0.0.1:5432/runs")
    """

    def __init__(self, dsn: str, *, table_prefix: str = DEFAULT_PREFIX, connect_timeout: float = 10.0) -> None:
        _import_asyncpg()
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"PostgresMessageStore needs a postgresql:// URL, got {dsn!r}")
        super().__init__()
        self.dsn = dsn
        self._prefix = check_prefix(table_prefix)
        self._connect_timeout = connect_timeout
        self._schema_ready = False

    def __repr__(self) -> str:
        host = self.dsn.rpartition("@")[2]  # no password in logs
        return f"PostgresMessageStore('postgresql://…@{host}')"

    def _sql(self, template: str, marks: int = 0) -> str:
        return numbered_placeholders(template.format(p=self._prefix, marks=", ".join("?" * marks), without_rowid=""))

    async def _aconnect(self) -> Any:
        asyncpg = _import_asyncpg()
        connection = await asyncpg.connect(self.dsn, timeout=self._connect_timeout)
        try:
            if not self._schema_ready:
                async with connection.transaction():
                    # one creator at a time: concurrent CREATE TABLE IF NOT EXISTS can clash in PostgreSQL
                    await connection.execute("SELECT pg_advisory_xact_lock(7355608)")
                    for statement in CREATE_TABLES:
                        await connection.execute(self._sql(statement))
                self._schema_ready = True
        except BaseException:
            await connection.close()
            raise
        return connection

    async def awrite(self, batch: StoreBatch) -> None:
        """Write ``batch`` in one transaction (see `MessageStore.awrite`)."""
        if self._writing is None:
            self._writing = await self._aconnect()
        connection = self._writing
        async with connection.transaction():
            for table, rows in batch.tables():
                await connection.executemany(self._sql(UPSERTS[table]), rows)

    async def _aquery(self, template: str, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        connection = await self._aconnect()
        try:
            rows: list[Any] = []
            if template is SELECT_CALL_TREE:
                return list(await connection.fetch(self._sql(template), *keys))
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                rows.extend(await connection.fetch(self._sql(template, len(chunk)), *chunk))
            return rows
        finally:
            await connection.close()

    async def _acheck_location(self) -> None:
        await (await self._aconnect()).close()

    async def _aclaim(self, history_id: str) -> Any:
        connection = await self._aconnect()  # held while the claim is: the lock is the session's
        try:
            taken = await connection.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", f"miniagents history {self._prefix}{history_id}"
            )
        except BaseException:
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return None
        return connection

    async def _arelease(self, claim: Any) -> None:
        await claim.close()  # (ends the session, and its lock)
