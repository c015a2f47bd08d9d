"""`open_store`: a message store from a file path or a ``postgresql://`` URL."""

from __future__ import annotations

import os

from miniagents.store._base import RecordingStore
from miniagents.store._postgres import PostgresMessageStore
from miniagents.store._sqlite import SQLiteMessageStore

__all__ = ["open_store"]


def open_store(location: str | os.PathLike[str]) -> RecordingStore:
    """Make the store that ``location`` names.

    Args:
        location: a ``postgresql://`` or ``postgres://`` URL (a `PostgresMessageStore`), or a file path (a
            `SQLiteMessageStore`, e.g. ``"chat.db"``).

    Returns:
        The store; it connects on first use.

    Raises:
        ImportError: the driver is not installed (the message names the ``pip install`` command).
        ValueError: an empty location, or another URL scheme.

    Example:
        >>> store = open_store("runs.db")
    """
    text = os.fspath(location)
    if not text:
        raise ValueError("a store location must be a file path or a postgresql:// URL, got ''")
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresMessageStore(text)
    scheme, separator, _ = text.partition("://")
    if separator and scheme.isalnum():
        raise ValueError(f"unknown store URL scheme {scheme!r}: use a file path (SQLite) or a postgresql:// URL")
    return SQLiteMessageStore(text)
