"""The SQL that the SQLite and PostgreSQL stores share (placeholders are written ``?`` and rewritten for asyncpg).

``{p}`` is the table prefix; ``{without_rowid}`` is `` WITHOUT ROWID`` for SQLite (tables keyed by text: one
B-tree each instead of a table and an index) and empty for PostgreSQL.
"""

from __future__ import annotations

import re

__all__ = ["CREATE_TABLES", "DEFAULT_PREFIX", "UPSERTS", "numbered_placeholders"]

DEFAULT_PREFIX = "miniagents_"

CREATE_TABLES = (
    "CREATE TABLE IF NOT EXISTS {p}schema (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}messages (hash_key TEXT PRIMARY KEY, class TEXT NOT NULL, json TEXT NOT NULL,"
    " schema_version INTEGER NOT NULL){without_rowid}",
    "CREATE TABLE IF NOT EXISTS {p}partials (partial_id TEXT PRIMARY KEY, class TEXT NOT NULL, metadata TEXT NOT NULL,"
    " text TEXT NOT NULL, status TEXT NOT NULL, hash_key TEXT, updated_at DOUBLE PRECISION NOT NULL){without_rowid}",
    "CREATE TABLE IF NOT EXISTS {p}calls (call_id TEXT PRIMARY KEY, parent_call_id TEXT, agent_alias TEXT NOT NULL,"
    " kwargs TEXT, status TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, error TEXT)"
    "{without_rowid}",
    "CREATE INDEX IF NOT EXISTS {p}calls_parent ON {p}calls (parent_call_id)",
    "CREATE TABLE IF NOT EXISTS {p}slots (owner_id TEXT NOT NULL, kind TEXT NOT NULL, position INTEGER NOT NULL,"
    " hash_key TEXT, partial_id TEXT, PRIMARY KEY (owner_id, kind, position)){without_rowid}",
)

UPSERTS = {
    "messages": "INSERT INTO {p}messages (hash_key, class, json, schema_version) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (hash_key) DO NOTHING",
    "partials": "INSERT INTO {p}partials (partial_id, class, metadata, text, status, hash_key, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partial_id) DO UPDATE SET metadata = excluded.metadata,"
    " text = excluded.text, status = excluded.status, hash_key = excluded.hash_key, updated_at = excluded.updated_at",
    "calls": "INSERT INTO {p}calls (call_id, parent_call_id, agent_alias, kwargs, status, started_at, ended_at, error)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET status = excluded.status,"
    " ended_at = excluded.ended_at, error = excluded.error",
    "slots": "INSERT INTO {p}slots (owner_id, kind, position, hash_key, partial_id) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (owner_id, kind, position) DO UPDATE SET hash_key = excluded.hash_key,"
    " partial_id = excluded.partial_id",
}

SELECT_MESSAGES = "SELECT hash_key, class, json, schema_version FROM {p}messages WHERE hash_key IN ({marks})"
SELECT_PARTIALS = (
    "SELECT partial_id, class, metadata, text, status, hash_key, updated_at FROM {p}partials"
    " WHERE partial_id IN ({marks})"
)
SELECT_CALL_TREE = (
    "WITH RECURSIVE tree(call_id) AS (SELECT call_id FROM {p}calls WHERE call_id = ?"
    " UNION ALL SELECT c.call_id FROM {p}calls c JOIN tree t ON c.parent_call_id = t.call_id)"
    " SELECT c.call_id, c.parent_call_id, c.agent_alias, c.kwargs, c.status, c.started_at, c.ended_at, c.error"
    " FROM {p}calls c JOIN tree t ON c.call_id = t.call_id ORDER BY c.started_at, c.call_id"
)
SELECT_ROOT_CALLS = (  # (`call_id <> ?` with "": every query of a backend takes parameters)
    "SELECT call_id FROM {p}calls WHERE parent_call_id IS NULL AND call_id <> ?"
    " ORDER BY started_at DESC, call_id LIMIT {limit}"
)
SELECT_SLOTS = (
    "SELECT owner_id, kind, position, hash_key, partial_id FROM {p}slots WHERE owner_id IN ({marks})"
    " ORDER BY owner_id, kind, position"
)

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a plain SQL identifier prefix (letters, digits, ``_``).

    Raises:
        ValueError: anything else (it is pasted into SQL).
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"a table prefix must be letters, digits and underscores, got {prefix!r}")
    return prefix


def numbered_placeholders(sql: str) -> str:
    """Rewrite ``?`` placeholders as ``$1``, ``$2`` … (PostgreSQL's style)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)
