"""`open_store`: a message store from a file path or a ``postgresql://`` URL."""

from __future__ import annotations

import os
import re

from miniagents.store._base import RecordingStore
from miniagents.store._postgres import PostgresMessageStore
from miniagents.store._sqlite import SQLiteMessageStore

__all__ = ["open_store"]

URL = re.compile(r"([a-z][a-z0-9+.-]+)://", re.IGNORECASE)
"""A URL's start, its scheme as group 1 (RFC 3986, section 3.1; one letter would be a Windows drive)."""
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_TYPO = re.compile(r"postgres(?:ql)?:(?!//)", re.IGNORECASE)
"""A PostgreSQL URL without its ``//`` (e.g. ``postgresql:/host/db``): a mistake, not a file named so."""


def store_key(location: str | os.PathLike[str]) -> str:
    """One spelling of a store's location for all of them, to know one store in a process by.

    A URL gets its scheme in lower case (schemes are case-insensitive, RFC 3986, section 3.1); a file its real path
    (``chat.db``, ``./chat.db`` and a symbolic link to it are one file, and a later ``chdir`` does not change it). A
    ``postgresql:`` location without ``//`` is left as it is, for `open_store` to refuse.
    """
    text = os.fspath(location)
    url = URL.match(text)
    if url is not None:
        return url.group(1).lower() + text[url.end(1) :]
    if not text or POSTGRES_TYPO.match(text):
        return text
    return os.path.realpath(text)


def open_store(location: str | os.PathLike[str]) -> RecordingStore:
    """Make the store that ``location`` names.

    Args:
        location: a ``postgresql://`` or ``postgres://`` URL, the scheme in any case (a `PostgresMessageStore`), or
            a file path (a `SQLiteMessageStore`, e.g. ``"chat.db"``).

    Returns:
        The store; it connects on first use.

    Raises:
        ImportError: the driver is not installed (the message names the ``pip install`` command).
        ValueError: an empty location, another URL scheme, or ``postgresql:`` without ``//``.

    Example:
        >>> store = open_store("runs.db")
    """
    text = os.fspath(location)
    if not text:
        raise ValueError("a store location must be a file path or a postgresql:// URL, got ''")
    url = URL.match(text)
    if url is not None:
        scheme = url.group(1).lower()
        if scheme not in POSTGRES_SCHEMES:
            raise ValueError(
                f"unknown store URL scheme {url.group(1)!r}: use a file path (SQLite) or a postgresql:// URL"
            )
        return PostgresMessageStore(scheme + text[url.end(1) :])
    if POSTGRES_TYPO.match(text):
        raise ValueError(f"{text!r} is not a URL: write it as postgresql://user@host:5432/database")
    return SQLiteMessageStore(text)
