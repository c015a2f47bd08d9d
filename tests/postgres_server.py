"""A throwaway PostgreSQL server on 127.0.0.1 for the store tests: Debian's binaries, a data directory in /tmp.

As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root). `.ci/run` installs the
``postgresql`` package; without its binaries the tests that need a server are skipped, naming what is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or None."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))[::-1]:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_postgres(bin_dir: Path) -> Iterator[str]:
    """Start a server with trust authentication on a free port; yield its URL; stop it and delete its data."""
    root = Path(tempfile.mkdtemp(prefix="miniagents-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def adrop_history_tables(location: str) -> None:
    """Drop the tables a store's chat history lives in, on the PostgreSQL server at ``location`` (a test's end)."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(location)
    try:
        await connection.execute("DROP TABLE IF EXISTS miniagents_slots, miniagents_partials, miniagents_messages")
    finally:
        await connection.close()
