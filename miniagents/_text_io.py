r"""Writing text whose encoding cannot hold all of it: lone surrogates, and characters a console cannot show.

A lone surrogate (half of a character that a broken stream cut in two, or a file name decoded with
``surrogateescape``) is a valid Python string but no UTF-8 text: writing it fails with `UnicodeEncodeError`. So does
any character that a console's legacy encoding (``cp1252``, ``ascii``) lacks. A chat must not lose an answer to
either, so the framework writes such a character as U+FFFD, the replacement character, or as ``?`` where the
encoding has no U+FFFD. A high surrogate followed by a low one, the two halves of one character (e.g. a JSON
``"\ud83d\ude00"`` split between two chunks, each decoded alone), is written as that character.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import sys
from functools import cache
from typing import Any, TypeVar

__all__ = ["REPLACE_UNENCODABLE", "is_terminal", "utf8_text", "utf8_texts_in", "write_to_console"]

REPLACE_UNENCODABLE = "miniagents.replace_unencodable"
"""An encoding error handler (``open(..., errors=REPLACE_UNENCODABLE)``, ``str.encode(encoding, REPLACE_UNENCODABLE)``):
each character the encoding cannot hold is written as U+FFFD, or as ``?`` in an encoding without U+FFFD."""


def _replace_unencodable(error: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    encoding = error.encoding
    characters = _join_surrogates(error.object[error.start : error.end])
    # (bytes, not str: the UTF-8 encoder takes only ASCII text as a replacement)
    return b"".join(_encoded(character, encoding) for character in characters), error.end


def _encoded(character: str, encoding: str) -> bytes:
    try:
        return character.encode(encoding)
    except UnicodeEncodeError:
        return _replacement(encoding)


@cache
def _replacement(encoding: str) -> bytes:
    try:
        return "\ufffd".encode(encoding)
    except (UnicodeError, LookupError):
        return b"?"


def _join_surrogates(text: str) -> str:
    """``text`` with each surrogate pair as its character and each lone surrogate as U+FFFD (UTF-16's reading)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


_JSONLike = TypeVar("_JSONLike")

_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: a surrogate pair becomes its character, a lone surrogate U+FFFD.

    Returns ``text`` itself when it has no surrogate (the common case: checked without copying it).
    """
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _join_surrogates(text)


def utf8_texts_in(value: _JSONLike) -> _JSONLike:
    r"""`utf8_text` of every string in ``value`` (JSON-like: dicts, lists, strings); dicts and lists change in place.

    For a request that is about to be sent as JSON: an API reads UTF-8, and a lone surrogate escaped in JSON
    (``"\ud83d"``) is an error to a strict parser (llama.cpp's: "invalid string: surrogate U+D800..U+DBFF must be
    followed by U+DC00..U+DFFF").

    Returns:
        ``value`` (a new string, where ``value`` is a string that changed).
    """
    if isinstance(value, str):
        return utf8_text(value)  # type: ignore[return-value]  # (a str for a str)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (str, dict, list)):
                value[key] = utf8_texts_in(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (str, dict, list)):
                value[index] = utf8_texts_in(item)
    return value


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


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` (``sys.stdin``, ``sys.stdout`` …) is a terminal; False for None, a closed or odd stream."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return bool(stream.isatty())
    return False
