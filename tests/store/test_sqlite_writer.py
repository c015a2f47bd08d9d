"""The SQLite store's writer process: it writes beside the program, reports errors, ends with it, survives Ctrl+C."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from miniagents import Message, MiniAgents
from miniagents.store import SQLiteMessageStore, StoreBatch, StoreRecorder

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes through /proc")


def _writer_pids(database: Path) -> list[int]:
    """The writer processes of ``database`` that are alive (zombies left out), found by their command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # (it ended meanwhile)
            continue
        if state != "Z" and str(database).encode() in arguments and any(b"_sqlite_writer" in a for a in arguments):
            pids.append(int(entry.name))
    return pids


def _batch(*texts: str) -> StoreBatch:
    return StoreBatch(messages=[(f"key-{text}", "Message", f'{{"text": "{text}"}}', 1) for text in texts])


async def _stored_keys(store: SQLiteMessageStore, *texts: str) -> set[str]:
    return set(await store.aread_messages([f"key-{text}" for text in texts]))


async def _astarted_writer(database: Path) -> tuple[SQLiteMessageStore, int]:
    """A store whose writer process runs (it wrote ``key-a``), and the process's id."""
    store = SQLiteMessageStore(database, writer_process_rows=0)
    await store.awrite(_batch("a"))
    (pid,) = _writer_pids(database)
    return store, pid


async def test_an_error_whose_class_takes_other_arguments_comes_back_as_a_sqlite_error(tmp_path: Path) -> None:
    store = SQLiteMessageStore(tmp_path / "runs.db", writer_process_rows=0)
    with pytest.raises(sqlite3.Error, match=r"UnicodeEncodeError: .*surrogate"):  # (sqlite3 cannot bind it)
        await store.awrite(StoreBatch(messages=[("key-bad", "Message", '{"text": "\ud800"}', 1)]))
    await store.awrite(_batch("after"))
    assert await _stored_keys(store, "after") == {"key-after"}
    await store.aclose()


async def test_batches_are_written_by_a_process_of_its_own_that_ends_when_the_store_is_closed(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    store = SQLiteMessageStore(database, writer_process_rows=0)
    await store.awrite(_batch("a", "b"))
    pids = _writer_pids(database)
    assert len(pids) == 1 and pids[0] != os.getpid()
    assert await _stored_keys(store, "a", "b") == {"key-a", "key-b"}
    await store.aclose()
    assert _writer_pids(database) == []


async def test_closing_ends_the_writer_process_though_a_forked_child_holds_its_pipe(tmp_path: Path) -> None:
    # A child forked without exec (multiprocessing's "fork") keeps a copy of the pipe: its end never comes.
    database = tmp_path / "runs.db"
    store, _ = await _astarted_writer(database)
    assert store._process is not None and store._process._process.stdin is not None
    held = os.dup(store._process._process.stdin.fileno())  # (what the forked child would hold)
    try:
        started = time.monotonic()
        await store.aclose()
        assert time.monotonic() - started < 10 and _writer_pids(database) == []  # (it waited 30 s, then killed it)
    finally:
        os.close(held)


async def test_small_batches_are_written_by_the_program_and_a_burst_starts_the_process(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    store = SQLiteMessageStore(database, writer_process_rows=3)
    await store.awrite(_batch("a", "b"))
    assert _writer_pids(database) == []
    await store.awrite(_batch("c", "d", "e"))
    assert len(_writer_pids(database)) == 1
    await store.awrite(_batch("f"))  # (the process writes everything from then on)
    assert await _stored_keys(store, "a", "b", "c", "d", "e", "f") == {f"key-{k}" for k in "abcdef"}
    await store.aclose()
    assert _writer_pids(database) == []
    await store.awrite(_batch("g"))  # (after the close: small again)
    assert _writer_pids(database) == []
    await store.aclose()


async def test_without_a_writer_process_the_program_writes_itself(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    store = SQLiteMessageStore(database, writer_process_rows=None)
    await store.awrite(_batch(*(str(index) for index in range(3000))))
    assert _writer_pids(database) == []
    assert len(await _stored_keys(store, *(str(index) for index in range(3000)))) == 3000
    await store.aclose()


def test_a_bundled_application_never_starts_a_writer_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (PyInstaller and the like set `sys.frozen`: `sys.executable` would start the application again)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert SQLiteMessageStore(tmp_path / "runs.db", writer_process_rows=0).writer_process_rows is None


def test_a_negative_row_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writer_process_rows"):
        SQLiteMessageStore(tmp_path / "runs.db", writer_process_rows=-1)


async def test_the_database_error_comes_back_as_its_own_class_and_the_process_goes_on(tmp_path: Path) -> None:
    store = SQLiteMessageStore(tmp_path / "runs.db", writer_process_rows=0)
    bad_call = ("call-1", None, None, None, "running", 1.0, None, None)  # (the agent alias is NOT NULL)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        await store.awrite(StoreBatch(messages=_batch("x").messages, calls=[bad_call]))
    assert await _stored_keys(store, "x") == set()  # all or nothing
    await store.awrite(_batch("after"))
    assert await _stored_keys(store, "after") == {"key-after"}
    await store.aclose()


async def test_a_writer_process_that_died_fails_the_write_and_the_next_one_starts_anew(tmp_path: Path) -> None:
    store, pid = await _astarted_writer(tmp_path / "runs.db")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(sqlite3.OperationalError, match="writer process ended"):
        await store.awrite(_batch("b"))
    await store.aclose()  # (what the recorder does after a failed write)
    await store.awrite(_batch("b"))
    assert await _stored_keys(store, "a", "b") == {"key-a", "key-b"}
    await store.aclose()


class _KillingTheWriterOnce:
    """A store wrapper whose first write finds the writer process killed (by the OOM killer, say)."""

    def __init__(self, store: SQLiteMessageStore) -> None:
        self.store = store
        self.killed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def awrite(self, batch: StoreBatch) -> None:
        if not self.killed:
            self.killed = True
            await self.store.awrite(StoreBatch())  # (the process is started by a write)
            for pid in _writer_pids(self.store.path):
                os.kill(pid, signal.SIGKILL)
        await self.store.awrite(batch)


async def test_the_recorder_writes_everything_after_the_writer_process_was_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteMessageStore(tmp_path / "runs.db", writer_process_rows=0)
    wrapper = _KillingTheWriterOnce(store)
    messages = [Message(f"m{index}") for index in range(30)]
    async with MiniAgents():
        recorder = StoreRecorder(wrapper, retry_delays=(0, 0))  # type: ignore[arg-type]
        for message in messages:
            recorder.record_message(message)
        await recorder.aflush()
    assert wrapper.killed and recorder.failed_rows == 0
    assert len(await store.aread_messages([message.hash_key for message in messages])) == 30
    assert any("writer process ended" in record.getMessage() for record in caplog.records)
    await store.aclose()


async def test_ctrl_c_in_the_terminal_does_not_stop_the_writer_process(tmp_path: Path) -> None:
    # Ctrl+C sends SIGINT to every process of the terminal's foreground group: the program decides what ends.
    database = tmp_path / "runs.db"
    store, pid = await _astarted_writer(database)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    await store.awrite(_batch("b"))
    assert _writer_pids(database) == [pid]
    assert await _stored_keys(store, "a", "b") == {"key-a", "key-b"}
    await store.aclose()


def test_the_writer_process_ends_when_the_program_is_killed_keeping_what_it_wrote(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    program = textwrap.dedent(
        f"""
        import asyncio, sys
        from miniagents.store import SQLiteMessageStore, StoreBatch

        async def main():
            store = SQLiteMessageStore({str(database)!r}, writer_process_rows=0)
            await store.awrite(StoreBatch(messages=[("key-kept", "Message", '{{"text": "kept"}}', 1)]))
            print("written", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"written\n"
            assert len(_writer_pids(database)) == 1
        finally:
            process.kill()
    deadline = time.monotonic() + 10
    while _writer_pids(database) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _writer_pids(database) == []
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT hash_key FROM miniagents_messages").fetchall() == [("key-kept",)]


@pytest.mark.parametrize("broken", ["interpreter", "script"])
async def test_a_writer_process_that_cannot_start_leaves_the_program_writing_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    from miniagents.store import _sqlite

    if broken == "interpreter":
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    else:
        monkeypatch.setattr(_sqlite, "_WRITER_SCRIPT", str(tmp_path / "no-script.py"))
    database = tmp_path / "runs.db"
    store = SQLiteMessageStore(database, writer_process_rows=0)
    await store.awrite(_batch("a"))
    assert store.writer_process_rows is None and _writer_pids(database) == []
    assert await _stored_keys(store, "a") == {"key-a"}
    assert any("cannot start its writer process" in record.getMessage() for record in caplog.records)
    await store.aclose()


async def test_writes_of_the_recorder_and_of_the_program_at_once_keep_their_answers_in_step(tmp_path: Path) -> None:
    # The recorder's writer thread and the program's loop (a thread of the process's own) share one pipe.
    database = tmp_path / "runs.db"
    store = SQLiteMessageStore(database, writer_process_rows=0)
    recorder = store.observer()
    messages = [Message(f"recorded {index}") for index in range(3000)]
    async with MiniAgents():
        for message in messages:
            recorder.record_message(message)
        await asyncio.gather(*(store.awrite(_batch(f"direct-{index}")) for index in range(50)))
        await recorder.aflush()
    assert recorder.failed_rows == 0
    assert len(await store.aread_messages([message.hash_key for message in messages])) == 3000
    assert len(await _stored_keys(store, *(f"direct-{index}" for index in range(50)))) == 50
    await store.aclose()
    assert _writer_pids(database) == []  # (concurrent first writes start one process, not one each)
