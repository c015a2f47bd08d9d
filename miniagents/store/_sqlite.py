"""`SQLiteMessageStore`: the embedded default, a SQLite file in WAL mode through aiosqlite."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.platform != "win32":
    import fcntl

from miniagents.store._base import RecordingStore
from miniagents.store._rows import StoreBatch
from miniagents.store._sql import (
    CREATE_TABLES,
    DEFAULT_PREFIX,
    SELECT_CALL_TREE,
    UPSERTS,
    check_prefix,
)
from miniagents.store._sqlite_writer import RowWriter, bind_none_cheaply, read_frame, write_frame

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["SQLiteMessageStore"]

logger = logging.getLogger("miniagents.store")

_CHUNK = 500  # keys per `IN (...)` query, well below SQLite's limit on parameters
_WRITER_SCRIPT = str(Path(__file__).with_name("_sqlite_writer.py"))
_CLOSE_SECONDS = 30.0  # how long closing waits for the writer process to finish its last batch and exit
_PIPE_BYTES = 1 << 20  # the pipe to the writer process (Linux's limit for unprivileged processes by default)


class _WriterProcessEnded(sqlite3.OperationalError):
    """The writer process is gone (killed, or it could not start): the batch in hand was not written."""


class _WriterProcess:
    """The program's end of the writer process (see `miniagents.store._sqlite_writer`): one exchange at a time.

    Its methods block: sending a batch, then waiting for the process to say it is written. They run on the
    recorder's writer thread, or on a thread of this object's own (see `SQLiteMessageStore.awrite`).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        # `-I`: neither the script's directory (the package's, whose modules must not shadow the standard
        # library's) nor the environment's Python settings; `-S`: no `site` (faster), as the program's `sys.path`
        # comes with the configuration. The path is there for `ps` to show (the configuration has it too).
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", _WRITER_SCRIPT, config["path"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="miniagents-sqlite-writer-pipe")
        self._exchanging = threading.Lock()  # held from sending a value until its answer is read
        self.closed = False
        assert self._process.stdin is not None  # (made with pipes)
        # Linux: a batch goes into the pipe in one or a few writes (each may wait for the interpreter's lock when it
        # returns), not in 64 KiB pieces.
        if sys.platform != "win32" and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):
                fcntl.fcntl(self._process.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            self.exchange(config)
        except BaseException:
            self.close()
            raise

    def exchange(self, value: Any) -> None:
        """`send` ``value``, then `receive` the answer."""
        self.send(value)
        self.receive()

    def send(self, value: Any) -> None:
        """Send a batch's values (or the configuration); `receive` says whether it was written.

        Until then no other thread may send (it waits): the answers stay in step with what was sent.

        Raises:
            _WriterProcessEnded: the process has ended (a `sqlite3.OperationalError`).
        """
        process = self._process
        assert process.stdin is not None  # (made with pipes)
        self._exchanging.acquire()
        try:
            if self.closed:
                raise _WriterProcessEnded("the SQLite writer process was closed")
            write_frame(process.stdin, value)
        except BaseException as error:
            self._exchanging.release()
            if isinstance(error, OSError):  # (a broken pipe: it ended)
                raise self._ended(error) from None
            raise

    def receive(self) -> None:
        """Wait for the answer to what was sent last; raise the error the process reports.

        Raises:
            sqlite3.Error: the database's error (or another exception class of the process's report), or
                `_WriterProcessEnded` (a `sqlite3.OperationalError`) when the process has ended.
        """
        assert self._process.stdout is not None  # (made with pipes)
        try:
            reply = read_frame(self._process.stdout)
        except (EOFError, OSError) as error:
            raise self._ended(error) from None
        finally:
            self._exchanging.release()
        if reply[0] != "ok":
            _, class_name, text = reply
            raise _reported_error(class_name, text)

    def _ended(self, error: BaseException) -> _WriterProcessEnded:
        process = self._process
        process.poll()
        return _WriterProcessEnded(
            f"the SQLite writer process ended (exit code {process.returncode}, {type(error).__name__})"
        )

    def close(self) -> None:
        """End the process (after the exchange in hand) and wait for it; kill it if it takes `_CLOSE_SECONDS`.

        A `send` afterwards raises `_WriterProcessEnded`, and `closed` says why.
        """
        process = self._process
        try:
            with self._exchanging:
                self.closed = True
                if process.stdin is not None:
                    with contextlib.suppress(OSError):
                        write_frame(process.stdin, None)  # (a child forked by the program may hold the pipe open)
                    with contextlib.suppress(OSError):
                        process.stdin.close()
            try:
                process.wait(_CLOSE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        finally:
            self.executor.shutdown(wait=False)


def _reported_error(class_name: str, text: str) -> Exception:
    """The error the writer process reported: of sqlite3's or a built-in class of that name, or a `sqlite3.Error`."""
    found = getattr(sqlite3, class_name, None) or getattr(builtins, class_name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        try:
            return found(text)
        except TypeError:  # (a class that takes other arguments, e.g. UnicodeEncodeError)
            pass
    return sqlite3.Error(f"{class_name}: {text}")


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

    Small batches are written from the program through an aiosqlite connection. A burst (a batch of at least
    ``writer_process_rows`` rows: hundreds of agent calls at once) starts a writer process
    (``python -I -S miniagents/store/_sqlite_writer.py``, which imports only aiosqlite), which writes every batch
    from then on: SQLite's work then runs on another core instead of taking turns with the program's event loop for
    the interpreter's lock (on 10,000 concurrent echo inquiries the store cost 1.95x the time without it, and 1.72x-
    1.80x with the process; see benchmarks/README.md). Starting it takes about 60 ms on the other core, which a
    single small write should not wait for. Both end when `aclose` is called, which the recorder does whenever it
    has written everything; the process also ends when the program ends, even by SIGKILL, after the batch it has
    received whole (a batch cut short is not written). Each read uses a short-lived aiosqlite connection of its own.
    Several processes may share the file: writers wait up to ``busy_timeout`` seconds for each other.

    Opening a connection registers an identity adapter for ``None`` with `sqlite3` (``sqlite3.register_adapter``,
    process-wide, unless one is registered already): ``None`` is still bound as NULL, only faster.

    Args:
        path: the database file (``str`` or path-like; parent directories are created). ``":memory:"`` is not
            accepted: the store closes its connection when idle.
        table_prefix: prefix of the table names (letters, digits, ``_``).
        busy_timeout: seconds to wait for another writer's lock before a write fails (and is retried).
        writer_process_rows: the rows of a batch from which the writer process is started (0: with the first
            batch; None: never, and so in a bundled application, whose ``sys.executable`` is not a Python). If it
            cannot be started (no usable ``sys.executable``, say), the store says so (a warning on the logger
            ``miniagents.store``) and writes from the program.

    Raises:
        ImportError: aiosqlite is not installed (``pip install "miniagents[sqlite]"``).
        ValueError: a bad path or prefix.

    Example:
        >>> store = SQLiteMessageStore("runs.db")  # then MiniAgents(store=store) or store.observer()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table_prefix: str = DEFAULT_PREFIX,
        busy_timeout: float = 5.0,
        writer_process_rows: int | None = 2_000,
    ) -> None:
        _import_aiosqlite()
        if str(path) in ("", ":memory:"):
            raise ValueError("SQLiteMessageStore needs a file path (an in-memory database would vanish when idle)")
        super().__init__()
        self.path = Path(path)
        self._prefix = check_prefix(table_prefix)
        self._busy_timeout = busy_timeout
        if writer_process_rows is not None and writer_process_rows < 0:
            raise ValueError(f"writer_process_rows must be >= 0 or None, got {writer_process_rows!r}")
        if getattr(sys, "frozen", False):  # a bundled application: `sys.executable` is the application itself
            writer_process_rows = None
        self.writer_process_rows = writer_process_rows
        """The rows of a batch from which the writer process is started (see the class's docstring)."""
        # The program's writing connection and the writer process, used by one writer at a time (the recorder's
        # task); opened by `awrite`, closed by `aclose`.
        self._writing: aiosqlite.Connection | None = None
        self._process: _WriterProcess | None = None
        self._starting = threading.Lock()  # held while the writer process starts (see `_writer_process_started`)
        self._schema_ready = False
        self._row_writer = RowWriter({table: self._sql(sql) for table, sql in UPSERTS.items()}, StoreBatch.WIDTHS)

    def __repr__(self) -> str:
        return f"SQLiteMessageStore({str(self.path)!r})"

    def _sql(self, template: str, marks: int = 0) -> str:
        return template.format(p=self._prefix, marks=", ".join("?" * marks), without_rowid=" WITHOUT ROWID")

    def _check_path(self) -> None:
        """Fail early, with a clear error, on a location SQLite could not make a database file at."""
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path}: is a directory, not a SQLite database file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() and not os.access(self.path.parent, os.W_OK):
            raise PermissionError(f"{self.path.parent}: the directory is not writable (to create {self.path.name})")

    def _connection_script(self, for_writing: bool) -> str:
        """The statements a new connection runs first (one script: one round trip to its thread)."""
        script = [f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)};"]
        if for_writing:
            # Only the writer switches the file to WAL (it persists): a journal-mode change does not wait for other
            # connections, so a reader doing it at the same moment failed with "database is locked".
            script += ["PRAGMA journal_mode = WAL;"]
        if not self._schema_ready:
            script += ["BEGIN IMMEDIATE;"]
            script += [self._sql(statement) + ";" for statement in CREATE_TABLES]
            script += ["COMMIT;"]
        script += ["PRAGMA synchronous = NORMAL;"]
        if for_writing:  # 16 MiB of page cache (2 MiB by default): fewer pages spilled within a big batch
            script += ["PRAGMA cache_size = -16384;"]
        return "\n".join(script)

    async def _aconnect(self, for_writing: bool = False) -> aiosqlite.Connection:
        driver = _import_aiosqlite()
        if not self._schema_ready:
            # Checked here: a failed aiosqlite connect leaves its thread to report to our loop after we return.
            self._check_path()
        bind_none_cheaply()
        connection: aiosqlite.Connection = await driver.connect(self.path, isolation_level=None)
        try:
            await connection.executescript(self._connection_script(for_writing))
            self._schema_ready = True
        except BaseException:
            await connection.close()
            raise
        return connection

    async def awrite(self, batch: StoreBatch) -> None:
        """Write ``batch`` in one transaction (see `MessageStore.awrite`).

        A writer process that cannot be started leaves the store writing from the program (see the class).

        Raises:
            sqlite3.Error: the database's error (`sqlite3.OperationalError` also when the writer process ended).
            OSError: an unusable location (a directory, a folder that cannot be written).
        """
        process = self._process
        if process is None and (self.writer_process_rows is None or len(batch) < self.writer_process_rows):
            connection = self._writing
            if connection is None:
                connection = self._writing = await self._aconnect(for_writing=True)
            await self._row_writer.awrite(connection, batch.values)
            return
        if process is None:
            if not self._schema_ready:
                self._check_path()
            config = {
                "path": str(self.path),
                "script": self._connection_script(for_writing=True),
                "upserts": self._row_writer.upserts,
                "widths": self._row_writer.widths,
                "sys_path": [entry for entry in sys.path if entry],
            }
            try:
                process = await asyncio.get_running_loop().run_in_executor(None, self._writer_process_started, config)
            except (OSError, ImportError, _WriterProcessEnded) as error:  # (not the database's errors)
                logger.warning(
                    "%r cannot start its writer process (%s: %s); it writes from this process instead",
                    self,
                    type(error).__name__,
                    error,
                )
                self.writer_process_rows = None
                await self.awrite(batch)
                return
            self._schema_ready = True
        try:
            await self._aexchange(process, batch)
        except _WriterProcessEnded:
            if not process.closed:
                raise
            await self.awrite(batch)  # closed meanwhile (the recorder had written everything): written anew

    async def _aexchange(self, writing: _WriterProcess, batch: StoreBatch) -> None:
        """Have the writer process write ``batch``."""
        if self._recorder.in_writer_thread():
            # The recorder's writer thread, whose loop has nothing else to do: the batch is sent at once, and the
            # answer read when the recorder comes back to this (having built the next batch meanwhile). Neither
            # waits for the interpreter's lock on another thread's behalf while the program's loop is busy.
            writing.send(batch.values)
            try:
                await asyncio.sleep(0)
            except BaseException:
                with contextlib.suppress(Exception):
                    writing.receive()  # (the answer is read all the same: the next one must be the next's)
                raise
            writing.receive()
        else:  # on a thread of the process's own: the caller's loop goes on meanwhile
            try:
                exchanged = asyncio.get_running_loop().run_in_executor(writing.executor, writing.exchange, batch.values)
            except RuntimeError:  # (its thread is shut down: it was closed)
                raise _WriterProcessEnded("the SQLite writer process was closed") from None
            await exchanged

    def _writer_process_started(self, config: dict[str, Any]) -> _WriterProcess:
        """The writer process, started now unless it runs (one for concurrent first writes, from any thread)."""
        with self._starting:
            process = self._process
            if process is None:
                process = self._process = _WriterProcess(config)
            return process

    async def _aclose_connection(self) -> None:
        """Close the program's writing connection and end the writer process, if they are open."""
        process, self._process = self._process, None
        try:
            if process is not None:
                await asyncio.get_running_loop().run_in_executor(None, process.close)
        finally:
            await super()._aclose_connection()

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
