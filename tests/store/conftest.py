from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from miniagents.store import PostgresMessageStore, RecordingStore, SQLiteMessageStore
from tests.postgres_server import find_bin_dir, running_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session (skipped only when its binaries are not installed)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    with running_postgres(bin_dir) as url:
        yield url


@pytest.fixture(params=["sqlite", "sqlite-process", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """``factory()`` makes a store of the parameter's kind; every call of one test gets the same tables.

    ``sqlite`` writes the tests' small batches from the test's process, ``sqlite-process`` every batch from its
    writer process (``writer_process_rows=0``).
    """
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    if request.param.startswith("sqlite"):
        rows = 0 if request.param == "sqlite-process" else 2_000

        def factory() -> RecordingStore:
            return SQLiteMessageStore(tmp_path / "store.db", table_prefix=prefix, writer_process_rows=rows)

    else:
        url = request.getfixturevalue("postgres_url")

        def factory() -> RecordingStore:
            return PostgresMessageStore(url, table_prefix=prefix)

    yield factory


@pytest.fixture
async def store(store_factory: object) -> AsyncIterator[RecordingStore]:
    store = store_factory()  # type: ignore[operator]
    try:
        yield store
    finally:
        await store.aclose()
