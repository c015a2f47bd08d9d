"""`SQLiteMessageStore`: the embedded default, a SQLite file in WAL mode through aiosqlite."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniagents.store._base import RecordingStore
from miniagents.store._rows import StoreBatch
from miniagents.store._sql import (
    CREATE_TABLES,
    DEFAULT_PREFIX,
    SELECT_CALL_TREE,
    UPSERTS,
    check_prefix,
)

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["SQLiteMessageStore"]

_CHUNK = 500  # keys per `IN (...)` query, well below SQLite's limit on parameters
# SQLite's limit on parameters per statement (https://www.sqlite.org/limits.html, "Maximum Number Of Host
# Parameters In A Single SQL Statement"): 32,766 since 3.32.0, 999 before.
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


_MOST_ROWS = 1024
"""Rows per ``INSERT`` at most (fewer where SQLite's parameter limit says so).

Each statement is a round trip to the connection's thread, which hands the GIL over several times (up to the
interpreter's switch interval, 5 ms, each while the event loop is busy): fewer, bigger statements wait less. But a
statement's text is parsed and compiled first (about as costly as running it, per row), and a bigger one costs
more per row to compile, run and keep in the statement cache. On 10,000 echo inquiries, 1,024 rows per statement
took 1.84-1.93x the time without a store, 128 rows 2.14x, 4,096 rows 2.10x and 8,192 rows 1.92x.
"""


def _rows_per_statement(columns: int) -> int:
    """The most rows an ``INSERT`` of a table with ``columns`` columns takes: a power of two within the limits."""
    rows = 1
    while 2 * rows <= _MOST_ROWS and 2 * rows * columns <= _MAX_PARAMETERS:
        rows *= 2
    return rows


def _statement_sizes(rows: int, most: int) -> list[int]:
    """How many rows each ``INSERT`` of ``rows`` rows takes: ``most`` each, and a power of two for the rest.

    Every size is then one of a few statements, each compiled once per connection and then taken from the
    statement cache (when the rest took its own size, it was compiled anew nearly every batch). The last one is
    filled up with copies of the last row (see `SQLiteMessageStore._ainsert`).
    """
    sizes = [most] * (rows // most)
    if rows % most:
        sizes.append(1 << (rows % most - 1).bit_length())
    return sizes


def _bind_none_cheaply() -> None:
    """Give ``None`` an identity adapter in `sqlite3` (once, unless one is registered already).

    `sqlite3` binds ``None`` as NULL only after its adaptation protocol found no adapter, which costs a failed
    attribute lookup with its error message (about 0.6 µs per ``None``; a call row has up to four). With an
    adapter registered, it is one dictionary lookup and a call of ``{}.get`` (``None`` for ``None``, without a
    Python frame). NULL is bound as before, for every connection of the process.
    """
    if (type(None), sqlite3.PrepareProtocol) not in getattr(sqlite3, "adapters", {}):
        none_to_none: dict[None, None] = {}
        sqlite3.register_adapter(type(None), none_to_none.get)


def _import_aiosqlite() -> Any:
    try:
        import aiosqlite  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise ImportError(
            'SQLiteMessageStore needs aiosqlite: pip install "miniagents[sqlite]" (or pip install aiosqlite)'
        ) from exc
    return aiosqlite


class SQLiteMessageStore(RecordingStore):
    """A message store in a SQLite file, the embedded default.

    WAL journal, ``synchronous=NORMAL``: a committed batch survives a crash of the process; only a power loss
    can take the last ones.

    The writing connection is opened on first use (the tables are created if needed) and closed by `aclose`, which
    the recorder calls whenever it has written everything; each read uses a short-lived connection of its own.
    Several processes may share the file: writers wait up to ``busy_timeout`` seconds for each other.

    Opening a connection registers an identity adapter for ``None`` with `sqlite3` (``sqlite3.register_adapter``,
    process-wide, unless one is registered already): ``None`` is still bound as NULL, only faster.

    Args:
        path: the database file (``str`` or path-like; parent directories are created). ``":memory:"`` is not
            accepted: the store closes its connection when idle.
        table_prefix: prefix of the table names (letters, digits, ``_``).
        busy_timeout: seconds to wait for another writer's lock before a write fails (and is retried).

    Raises:
        ImportError: aiosqlite is not installed (``pip install "miniagents[sqlite]"``).
        ValueError: a bad path or prefix.

    Example:
        >>> store = SQLiteMessageStore("runs.db")  # then MiniAgents(store=store) or store.observer()
    """

    def __init__(
        self, path: str | os.PathLike[str], *, table_prefix: str = DEFAULT_PREFIX, busy_timeout: float = 5.0
    ) -> None:
        _import_aiosqlite()
        if str(path) in ("", ":memory:"):
            raise ValueError("SQLiteMessageStore needs a file path (an in-memory database would vanish when idle)")
        super().__init__()
        self.path = Path(path)
        self._prefix = check_prefix(table_prefix)
        self._busy_timeout = busy_timeout
        self._writing: aiosqlite.Connection | None = None  # used by one writer at a time (the recorder's task)
        self._schema_ready = False
        self._statements: dict[tuple[str, int], str] = {}
        self._rows_per_statement = {table: _rows_per_statement(sql.count("?")) for table, sql in UPSERTS.items()}

    def __repr__(self) -> str:
        return f"SQLiteMessageStore({str(self.path)!r})"

    def _sql(self, template: str, marks: int = 0) -> str:
        return template.format(p=self._prefix, marks=", ".join("?" * marks), without_rowid=" WITHOUT ROWID")

    async def _aconnect(self, for_writing: bool = False) -> aiosqlite.Connection:
        driver = _import_aiosqlite()
        if not self._schema_ready:
            # Checked here: a failed aiosqlite connect leaves its thread to report to our loop after we return.
            if self.path.is_dir():
                raise IsADirectoryError(f"{self.path}: is a directory, not a SQLite database file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists() and not os.access(self.path.parent, os.W_OK):
                raise PermissionError(f"{self.path.parent}: the directory is not writable (to create {self.path.name})")
        _bind_none_cheaply()
        connection: aiosqlite.Connection = await driver.connect(self.path, isolation_level=None)
        try:
            # One script, one round trip to the connection's thread: each costs an event-loop iteration.
            script = [f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)};"]
            if for_writing:
                # Only the writer switches the file to WAL (it persists): a journal-mode change does not wait for
                # other connections, so a reader doing it at the same moment failed with "database is locked".
                script += ["PRAGMA journal_mode = WAL;"]
            if not self._schema_ready:
                script += ["BEGIN IMMEDIATE;"]
                script += [self._sql(statement) + ";" for statement in CREATE_TABLES]
                script += ["COMMIT;"]
            script += ["PRAGMA synchronous = NORMAL;"]
            if for_writing:  # 16 MiB of page cache (2 MiB by default): fewer pages spilled within a big batch
                script += ["PRAGMA cache_size = -16384;"]
            await connection.executescript("\n".join(script))
            self._schema_ready = True
        except BaseException:
            await connection.close()
            raise
        return connection

    async def awrite(self, batch: StoreBatch) -> None:
        """Write ``batch`` in one transaction (see `MessageStore.awrite`)."""
        if self._writing is None:
            self._writing = await self._aconnect(for_writing=True)
        connection = self._writing
        await connection.execute("BEGIN IMMEDIATE")
        try:
            for table, values in batch.values.items():
                if values:
                    await self._ainsert(connection, table, values)
            await connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.execute("ROLLBACK")
            raise

    async def _ainsert(self, connection: aiosqlite.Connection, table: str, values: list[Any]) -> None:
        """Insert the rows of ``values`` (flat, see `StoreBatch.values`), many rows per ``VALUES`` list.

        One statement per row (``executemany``) hands the GIL between the database thread and the event loop
        once per row, which is slow while the loop is busy; see `_MOST_ROWS` and `_statement_sizes`. The copies of
        the last row that fill up the last statement change nothing: the same row is inserted, or updated to the
        same values (SQLite applies the rows of an ``INSERT`` one after the other).
        """
        width = StoreBatch.WIDTHS[table]
        rows = len(values) // width
        start = 0
        for count in _statement_sizes(rows, self._rows_per_statement[table]):
            end = start + count * width
            chunk = values[start:end]
            if end > len(values):  # the last statement: padded with copies of the last row (an upsert of the same)
                chunk += values[-width:] * ((end - len(values)) // width)
            await connection.execute(self._multi_row_sql(table, count), chunk)
            start = end

    def _multi_row_sql(self, table: str, count: int) -> str:
        key = (table, count)
        sql = self._statements.get(key)
        if sql is None:
            single = self._sql(UPSERTS[table])
            head, _, rest = single.partition(" VALUES ")
            group, _, tail = rest.partition(")")
            sql = f"{head} VALUES {', '.join([group + ')'] * count)}{tail}"
            self._statements[key] = sql
        return sql

    async def _aquery(self, template: str, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        connection = await self._aconnect()  # a connection of its own: reads never wait for the writer
        try:
            rows: list[Any] = []
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = 0 if template is SELECT_CALL_TREE else len(chunk)
                async with connection.execute(self._sql(template, marks), chunk) as cursor:
                    rows.extend(await cursor.fetchall())
            return rows
        finally:
            await connection.close()

    async def _acheck_location(self) -> None:
        # (not `for_writing`: switching to WAL would fail at once, not wait, while another connection writes)
        await (await self._aconnect()).close()
        # SQLite opens a file that it may not write read-only, without a word: every write would fail later. The
        # directory matters too while there is no WAL file: SQLite makes it (and the shared-memory file) beside.
        if not os.access(self.path, os.W_OK):
            raise PermissionError(f"{self.path}: the database file is not writable")
        if not self.path.with_name(self.path.name + "-wal").exists() and not os.access(self.path.parent, os.W_OK):
            raise PermissionError(f"{self.path.parent}: the directory is not writable (SQLite writes its WAL there)")

    async def _aclaim(self, history_id: str) -> Any:
        from filelock import FileLock, Timeout  # pylint: disable=import-outside-toplevel

        digest = hashlib.sha256(f"{self._prefix}{history_id}".encode()).hexdigest()[:16]
        lock = FileLock(f"{self.path}.history-{digest}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return lock

    async def _arelease(self, claim: Any) -> None:
        claim.release()
