"""Writing text whose encoding cannot hold all of it: lone surrogates, and characters a console cannot show.

A lone surrogate (half of a character that a broken stream cut in two, or a file name decoded with
``surrogateescape``) is a valid Python string but no UTF-8 text: writing it fails with `UnicodeEncodeError`. So does
any character that a console's legacy encoding (``cp1252``, ``ascii``) lacks. A chat must not lose an answer to
either, so the framework writes such a character as U+FFFD, the replacement character, or as ``?`` where the
encoding has no U+FFFD.
"""

from __future__ import annotations

import codecs
import sys
from functools import cache

__all__ = ["REPLACE_UNENCODABLE", "write_to_console"]

REPLACE_UNENCODABLE = "miniagents.replace_unencodable"
"""An encoding error handler (``open(..., errors=REPLACE_UNENCODABLE)``, ``str.encode(encoding, REPLACE_UNENCODABLE)``):
each character the encoding cannot hold is written as U+FFFD, or as ``?`` in an encoding without U+FFFD."""


def _replace_unencodable(error: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    # (bytes, not str: the UTF-8 encoder takes only ASCII text as a replacement)
    return _replacement(error.encoding) * (error.end - error.start), error.end


@cache
def _replacement(encoding: str) -> bytes:
    try:
        return "\ufffd".encode(encoding)
    except (UnicodeError, LookupError):
        return b"?"


codecs.register_error(REPLACE_UNENCODABLE, _replace_unencodable)


def write_to_console(text: str) -> None:
    """Write ``text`` to ``sys.stdout`` and flush it (looked up on every call: a redirected stdout is honoured).

    What the stream's encoding cannot hold is written as U+FFFD or ``?`` (`REPLACE_UNENCODABLE`) instead of
    raising `UnicodeEncodeError` in the middle of an answer.
    """
    stdout = sys.stdout
    try:
        stdout.write(text)
    except UnicodeEncodeError:  # (a text stream encodes the whole text before it writes any of it)
        encoding = stdout.encoding or "utf-8"
        stdout.write(text.encode(encoding, REPLACE_UNENCODABLE).decode(encoding, "replace"))
    stdout.flush()
