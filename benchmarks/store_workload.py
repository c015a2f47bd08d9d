"""The SQLite message store: its cost on concurrent echo inquiries, and how many messages per second it writes.

``python -m benchmarks.store_workload [--n 10000] [--messages 100000] [-r 5]``

* **Echo, with and without the store.** N echo inquiries are started at once (each agent reads its input and
  replies with one message), then all replies are awaited, inside one ``MiniAgents`` context whose exit waits
  for the store's writer (so the time includes writing every call and message). Measured without a store and
  with ``MiniAgents(store=SQLiteMessageStore(path))`` on a fresh SQLite file; the ratio is the cost of the store.
  Also with a no-op ``on_persist_message`` handler (target: at most 1.5x) and a no-op `RunObserver`.
  Each measurement runs in a fresh process, alternating sides; each repetition runs every side back to back, and
  besides the ratio of the medians the ratios within each repetition are shown (the host's drift moves a
  repetition's sides alike). Target (issue 11): at most 2x at N = 10,000.
* **Write rate.** M distinct messages recorded at once with `StoreRecorder.record_message`, then `aflush`: the
  time from the first record to the last commit. Target: at least 20,000 messages/s.

Every run checks what it wrote (the number of calls and messages read back).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import BenchmarkError
from miniagents import InteractionContext, Message, MiniAgents, miniagent

ROOT = Path(__file__).resolve().parent.parent


@miniagent
async def echo_agent(ctx: InteractionContext) -> None:
    """Read the whole input, then reply with its text."""
    for message in await ctx.message_promises:
        ctx.reply(f"echo: {message.text}")


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute(f"SELECT count(*) FROM miniagents_{table}").fetchone()[0])


async def _noop_persist(_promise: Any, _message: Message) -> None:
    """An ``on_persist_message`` handler that does nothing (what the hook itself costs)."""


async def echo(n: int, with_store: bool, noop_observer: bool = False, noop_persist: bool = False) -> dict[str, Any]:
    from miniagents import RunObserver
    from miniagents.store import SQLiteMessageStore

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "runs.db"
        store = SQLiteMessageStore(path)
        start = time.perf_counter()
        observers = [RunObserver()] if noop_observer else []
        handlers = [_noop_persist] if noop_persist else []
        async with MiniAgents(store=store if with_store else None, observers=observers, on_persist_message=handlers):
            replies = [echo_agent.inquire(f"msg {i}") for i in range(n)]
            texts = [(await reply)[0].text for reply in replies]
        elapsed = time.perf_counter() - start
        await store.aclose()
        if texts != [f"echo: msg {i}" for i in range(n)]:
            raise BenchmarkError("wrong replies")
        if with_store and (_count(path, "calls"), _count(path, "messages")) != (n, 2 * n):
            raise BenchmarkError(f"stored {_count(path, 'calls')} calls and {_count(path, 'messages')} messages")
    return {"seconds": elapsed}


async def write_rate(messages: int) -> dict[str, Any]:
    from miniagents.store import SQLiteMessageStore

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "runs.db"
        store = SQLiteMessageStore(path)
        async with MiniAgents():
            batch = [Message(f"message number {i}", role="assistant", model="m") for i in range(messages)]
            recorder = store.observer()
            start, cpu_start = time.perf_counter(), time.process_time()
            for message in batch:
                recorder.record_message(message)
            await recorder.aflush()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        await store.aclose()
        if _count(path, "messages") != messages:
            raise BenchmarkError(f"stored {_count(path, 'messages')} of {messages} messages")
    return {"seconds": elapsed, "messages_per_s": messages / elapsed, "messages_per_cpu_s": messages / cpu}


def _child(function: str, **params: Any) -> dict[str, Any]:
    code = (
        "import asyncio, json, sys\n"
        "from benchmarks import store_workload as w\n"
        "print(json.dumps(asyncio.run(getattr(w, sys.argv[1])(**json.loads(sys.argv[2])))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code, function, json.dumps(params)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise BenchmarkError(f"{function}({params}) failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _describe_ratios(sides: list[float], bases: list[float]) -> str:
    """The ratios of each repetition's two sides, which ran back to back (the host's drift moves both alike)."""
    ratios = [side / base for side, base in zip(sides, bases, strict=True)]
    return f"median {statistics.median(ratios):.2f}x, {min(ratios):.2f}x-{max(ratios):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_workload", description=__doc__)
    parser.add_argument("--n", type=int, default=10000, help="concurrent echo inquiries (default 10000)")
    parser.add_argument("--messages", type=int, default=100000, help="messages for the write rate (100000)")
    parser.add_argument("-r", "--repetitions", type=int, default=5)
    args = parser.parse_args()
    without: list[float] = []
    noop: list[float] = []
    with_store: list[float] = []
    persist: list[float] = []
    rates: list[dict[str, Any]] = []
    for repetition in range(args.repetitions):
        sides = [({"with_store": False}, without), ({"with_store": False, "noop_observer": True}, noop)]
        sides.append(({"with_store": False, "noop_persist": True}, persist))
        sides.append(({"with_store": True}, with_store))
        for params, results in sides[:: -1 if repetition % 2 else 1]:
            results.append(_child("echo", n=args.n, **params)["seconds"])
        rates.append(_child("write_rate", messages=args.messages))
    plain, bare, stored = statistics.median(without), statistics.median(noop), statistics.median(with_store)
    hooked = statistics.median(persist)
    print(f"echo N={args.n}, medians of {args.repetitions}:")
    print(f"  no observer          {plain:.3f} s")
    print(f"  a no-op RunObserver  {bare:.3f} s  ({bare / plain:.2f}x: the core's observation cost)")
    print(
        f"  a no-op on_persist_message handler  {hooked:.3f} s  ({hooked / plain:.2f}x, target <= 1.5x; "
        f"repetition by repetition {_describe_ratios(persist, without)})"
    )
    print(
        f"  the SQLite store     {stored:.3f} s  ({stored / plain:.2f}x, target <= 2x; "
        f"repetition by repetition {_describe_ratios(with_store, without)}; {stored / bare:.2f}x the no-op)"
    )
    wall = statistics.median(rate["messages_per_s"] for rate in rates)
    cpu = statistics.median(rate["messages_per_cpu_s"] for rate in rates)
    print(f"write rate: {wall:,.0f} messages/s wall, {cpu:,.0f} per CPU-second (target >= 20,000/s), {args.messages}")


if __name__ == "__main__":
    main()
