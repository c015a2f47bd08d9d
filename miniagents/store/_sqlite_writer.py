"""How the SQLite store writes a batch, and the writer process that does it beside the program (`SQLiteMessageStore`).

`RowWriter` writes the rows of a `StoreBatch` in one transaction, many rows per ``INSERT``, through an aiosqlite
connection: in the program itself (small batches) or in a process of its own (from the first burst on, see
`SQLiteMessageStore`).

The writer process runs this file as a script (``python -I -S <this file> <database path>``). It imports nothing
of miniagents, so it starts in the time Python and aiosqlite take to import (the program's ``sys.path`` comes
with the configuration), and its SQLite work runs on another core, beside the program's event loop rather than in
turns with it for the interpreter's lock. It talks to the program over its standard input and output in frames:
8 bytes of length (little-endian), then a `marshal` dump (plain values only: dicts, lists, str, int, float,
None). The program sends a configuration first, then one batch per frame (`StoreBatch.values`); the process
answers each with ``("ok",)`` or ``("error", class name, text)``. A frame of ``None`` (the program closes the
store), or the end of its input (the program ended, even by SIGKILL), makes it close the database and exit; a
batch cut short is not written. (``None`` does not wait for the end of the pipe, which children the program
forked may hold open.) It ignores SIGINT: Ctrl+C in a terminal reaches the whole process group, and the program
decides when writing ends.
"""

from __future__ import annotations

import asyncio
import marshal
import os
import signal
import sqlite3
import struct
import sys
from typing import IO, Any

__all__ = ["RowWriter", "rows_per_statement", "statement_sizes"]

# SQLite's limit on parameters per statement (https://www.sqlite.org/limits.html, "Maximum Number Of Host
# Parameters In A Single SQL Statement"): 32,766 since 3.32.0, 999 before.
MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

MOST_ROWS = 1024
"""Rows per ``INSERT`` at most (fewer where SQLite's parameter limit says so).

Each statement is a round trip to the connection's thread, which hands the interpreter's lock over several
times: fewer, bigger statements wait less. But a statement's text is parsed and compiled first (about as costly
as running it, per row), and a bigger one costs more per row to compile, run and keep in the statement cache. On
10,000 echo inquiries (in the program, before the writer process), 1,024 rows per statement took 1.84-1.93x the
time without a store, 128 rows 2.14x, 4,096 rows 2.10x and 8,192 rows 1.92x.
"""

_LENGTH = struct.Struct("<Q")
_MARSHAL_VERSION = 4


def rows_per_statement(columns: int) -> int:
    """The most rows an ``INSERT`` of a table with ``columns`` columns takes: a power of two within the limits."""
    rows = 1
    while 2 * rows <= MOST_ROWS and 2 * rows * columns <= MAX_PARAMETERS:
        rows *= 2
    return rows


def statement_sizes(rows: int, most: int) -> list[int]:
    """How many rows each ``INSERT`` of ``rows`` rows takes: ``most`` each, and a power of two for the rest.

    Every size is then one of a few statements, each compiled once per connection and then taken from the
    statement cache (when the rest took its own size, it was compiled anew nearly every batch). The last one is
    filled up with copies of the last row (see `RowWriter.awrite`).
    """
    sizes = [most] * (rows // most)
    if rows % most:
        sizes.append(1 << (rows % most - 1).bit_length())
    return sizes


def bind_none_cheaply() -> None:
    """Give ``None`` an identity adapter in `sqlite3` (once, unless one is registered already).

    `sqlite3` binds ``None`` as NULL only after its adaptation protocol found no adapter, which costs a failed
    attribute lookup with its error message (about 0.6 µs per ``None``; a call row has up to four). With an
    adapter registered, it is one dictionary lookup and a call of ``{}.get`` (``None`` for ``None``, without a
    Python frame). NULL is bound as before, for every connection of the process.
    """
    if (type(None), sqlite3.PrepareProtocol) not in getattr(sqlite3, "adapters", {}):
        none_to_none: dict[None, None] = {}
        sqlite3.register_adapter(type(None), none_to_none.get)


class RowWriter:
    """Writes the flat rows of a batch (`StoreBatch.values`) in one transaction, many rows per ``INSERT``.

    Args:
        upserts: each table's single-row upsert (``INSERT … VALUES (?, …) ON CONFLICT …``), table prefix applied.
        widths: each table's number of values per row, in the order the tables are written.
    """

    def __init__(self, upserts: dict[str, str], widths: dict[str, int]) -> None:
        self.upserts = upserts
        self.widths = widths
        self.most_rows = {table: rows_per_statement(sql.count("?")) for table, sql in upserts.items()}
        self._statements: dict[tuple[str, int], str] = {}

    async def awrite(self, connection: Any, values: dict[str, list[Any]]) -> None:
        """Write ``values`` (each table's values, row after row) through the aiosqlite ``connection``.

        One statement per row (``executemany``) hands the interpreter's lock between the database thread and the
        event loop once per row, which is slow while the loop is busy; see `MOST_ROWS` and `statement_sizes`.
        The copies of the last row that fill up the last statement change nothing: the same row is inserted, or
        updated to the same values (SQLite applies the rows of an ``INSERT`` one after the other).

        Raises:
            sqlite3.Error: the database's error; the transaction is rolled back, nothing of the batch is written.
        """
        await connection.execute("BEGIN IMMEDIATE")
        try:
            for table, width in self.widths.items():
                table_values = values.get(table)
                if not table_values:
                    continue
                start = 0
                for count in statement_sizes(len(table_values) // width, self.most_rows[table]):
                    end = start + count * width
                    chunk = table_values[start:end]
                    if end > len(table_values):  # the last statement: padded with copies of the last row
                        chunk += table_values[-width:] * ((end - len(table_values)) // width)
                    await connection.execute(self._multi_row_sql(table, count), chunk)
                    start = end
            await connection.execute("COMMIT")
        except BaseException:
            try:
                await connection.execute("ROLLBACK")
            except Exception:  # (no transaction left to roll back: the error came with its end)
                pass
            raise

    def _multi_row_sql(self, table: str, count: int) -> str:
        key = (table, count)
        sql = self._statements.get(key)
        if sql is None:
            head, _, rest = self.upserts[table].partition(" VALUES ")
            group, _, tail = rest.partition(")")
            sql = self._statements[key] = f"{head} VALUES {', '.join([group + ')'] * count)}{tail}"
        return sql


# --- the frames between the program and the writer process ----------------------------------------------------------


def write_frame(stream: IO[bytes], value: Any) -> None:
    """Send ``value`` (plain values only) as one frame, and flush."""
    data = marshal.dumps(value, _MARSHAL_VERSION)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's value; `EOFError` at the end of the stream, also in the middle of a frame."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (length,) = _LENGTH.unpack(head)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    return marshal.loads(data)


# --- the writer process ---------------------------------------------------------------------------------------------


def _error_reply(error: Exception) -> tuple[str, str, str]:
    """The answer that reports ``error`` (the program raises it again by its class name: `_sqlite._reported_error`)."""
    return ("error", type(error).__name__, str(error))


async def _aserve(requests: IO[bytes], replies: IO[bytes]) -> None:
    try:
        config = read_frame(requests)
    except EOFError:
        return
    try:
        sys.path[:0] = [entry for entry in config["sys_path"] if entry not in sys.path]  # (where the program's are)
        import aiosqlite  # pylint: disable=import-outside-toplevel

        bind_none_cheaply()
        connection = await aiosqlite.connect(config["path"], isolation_level=None)
    except Exception as error:
        write_frame(replies, _error_reply(error))
        return
    try:
        try:
            await connection.executescript(config["script"])
        except Exception as error:
            write_frame(replies, _error_reply(error))
            return
        write_frame(replies, ("ok",))
        writer = RowWriter(config["upserts"], config["widths"])
        while True:
            try:
                values = read_frame(requests)  # (blocking: nothing else runs in this process meanwhile)
            except EOFError:
                return
            if values is None:  # the program closes the store (its pipe may live on in children it forked)
                return
            try:
                await writer.awrite(connection, values)
            except Exception as error:
                write_frame(replies, _error_reply(error))
            else:
                write_frame(replies, ("ok",))
    finally:
        await connection.close()


def main() -> None:
    """Serve the program that started this process until its pipe ends (see the module's docstring).

    The process ends with `os._exit` once the database is closed: there is nothing left to tidy up, and the
    program waits for the end of this process when it closes the store.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # (whatever prints goes to stderr, not into the frames)
    try:
        asyncio.run(_aserve(sys.stdin.buffer, replies))
    except BrokenPipeError:  # the program ended while this answered
        pass
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
