"""A CHAT.md file on disk: a lock for concurrent writers, cut writes closed, incremental reads.

- **Lock.** Every message is written while holding a lock on ``<file>.lock`` (`filelock`, an OS lock that dies with
  its process), so writers in several tasks or processes never interleave inside a message.
- **Cut writes.** A writer killed mid-message leaves the file ending inside a line, maybe inside a UTF-8
  character, or inside the header of the next message. `close_cut_write` (called under the lock before each
  message) drops a trailing partial character and a header cut short, and ends the line, so the blank line that
  starts the next header separates it: the next message is an entry of its own, and the entries before the cut
  stay as they were.
- **Reading.** `read_messages` decodes strictly (an invalid byte is a `ChatMdDecodeError` naming its offset; an
  incomplete character at the very end is a cut write in progress and is left out, see `decode_chat_md`) and
  parses incrementally: the entries that later appends cannot change (all but the last, see
  `parse_chat_md_entries`) are cached with the bytes they came from; the next read compares those bytes with the
  file and reads and parses only what follows them, if they are unchanged. Comparing and decoding go a megabyte
  at a time and parsing is mostly a line scanner, so the thread that reads never holds the GIL for long (the
  event loop keeps running).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from miniagents._text_io import REPLACE_UNENCODABLE
from miniagents.errors import MiniAgentsError
from miniagents.ext._chat_md import (
    BOM,
    HEADER_UNDERLINE,
    ROLES,
    is_header_line,
    is_header_line_start,
    parse_chat_md_entries,
)
from miniagents.messages import Message

if TYPE_CHECKING:
    from collections.abc import Callable

    from filelock import AsyncFileLock

__all__ = [
    "ChatMdDecodeError",
    "chat_md_lock",
    "close_cut_write",
    "decode_chat_md",
    "open_for_appending",
    "read_messages",
]


class ChatMdDecodeError(MiniAgentsError, ValueError):
    """A CHAT.md file holds bytes that are not UTF-8; nothing is written to it until they are fixed.

    Attributes:
        path: the file.
        offset: the offset of the first invalid byte, in bytes from the start of the file.
        line: its line number (from 1).
    """

    def __init__(self, path: Path, offset: int, line: int, reason: str) -> None:
        super().__init__(
            f"{path}: invalid UTF-8 at byte {offset} (line {line}): {reason}. The chat history must be UTF-8 text; "
            f"fix or remove that byte (nothing was written to the file)"
        )
        self.path = path
        self.offset = offset
        self.line = line


def open_for_appending(path: Path) -> TextIO:
    """Open ``path`` to append messages: UTF-8, no newline translation, line-buffered, mode ``a+``.

    ``a+`` lets `close_cut_write` read the file's end. A lone surrogate in the text (which UTF-8 cannot hold) is
    written as U+FFFD instead of failing the write: the file stays valid UTF-8, and the message is not cut off.
    """
    return open(path, "a+", encoding="utf-8", errors=REPLACE_UNENCODABLE, newline="", buffering=1)


def chat_md_lock(path: Path) -> AsyncFileLock:
    """The lock that writers of ``path`` hold while they write a message (the file ``<path>.lock``).

    It polls without blocking the event loop, so several agents of one process can wait for it too.
    """
    from filelock import AsyncFileLock  # pylint: disable=import-outside-toplevel

    return AsyncFileLock(f"{path}.lock", poll_interval=0.01, run_in_executor=False)


_CUT_TAIL = 4096  # bytes read from the end of a file to close a cut write (a longer header line is kept)
_LINE_BREAKS = re.compile(rb"(\r\n|\r|\n)")
_BOM_BYTES = BOM.encode()
_UNDERLINE_BYTES = HEADER_UNDERLINE.encode()


def close_cut_write(fd: int) -> None:
    r"""End a write that a crash cut short, so that the next message is an entry of its own.

    A partial UTF-8 character at the end is dropped, and so is a header cut short: an empty line (or the file's
    start) followed by the start of a header line of a known role without its line break, by a whole header line
    (`is_header_line`) and its line break, or by a header line and a partial line of ``=`` (at most 40, no line
    break). That is what the write of a header leaves when it is cut after a whole message (the writer never ends
    a message that way, see `ContentEscaper.finish`); the same text after a line that is not empty is kept. Then
    the last line is ended, unless the file ends with ``\n``.

    Call it while holding `chat_md_lock`, with ``fd`` open for appending. A file that is empty or ends with a
    whole message is left alone.

    Args:
        fd: a file descriptor of the file, opened for reading and appending (mode ``a+``).
    """
    size = os.fstat(fd).st_size
    start = max(0, size - _CUT_TAIL)
    tail = os.pread(fd, size - start, start)
    keep = start + _complete_length(tail, whole=start == 0)
    if keep < size:
        os.ftruncate(fd, keep)
    if keep and os.pread(fd, 1, keep - 1) != b"\n":
        os.write(fd, b"\n")


def _complete_length(tail: bytes, whole: bool) -> int:
    """How many bytes of ``tail``, the end of a file (all of it when ``whole``), to keep (see `close_cut_write`)."""
    kept = len(tail) - _partial_character_length(tail[-4:])
    pieces = _LINE_BREAKS.split(tail[:kept])
    lines = pieces[::2]  # the last one has no line break (it is empty when the text ends with one)
    last = len(lines) - 1
    if lines[last]:  # cut inside a line: the start of a header line, or a header line and part of its "=" line
        if _decoded_is(is_header_line_start, lines[last]):
            empty = last - 1
        elif len(lines[last]) <= len(_UNDERLINE_BYTES) and not lines[last].strip(b"=") and last >= 1:
            empty = last - 2 if _decoded_is(is_header_line, lines[last - 1]) else -1
        else:
            empty = -1
    else:  # a whole header line and its line break (a partial "\r\n" included), no "=" line
        empty = last - 2 if last >= 1 and _decoded_is(is_header_line, lines[last - 1]) else -1
    empty_lines = (b"", _BOM_BYTES) if empty == 0 and whole else (b"",)  # (a line cut by the tail's start is not)
    if empty < 0 or (empty == 0 and not whole) or lines[empty] not in empty_lines:
        return kept  # not after an empty line: text to keep
    return sum(map(len, pieces[: 2 * empty])) + len(lines[empty])  # up to the empty line's line break


def _decoded_is(test: Callable[[str], bool], line: bytes) -> bool:
    try:
        return test(line.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def _partial_character_length(tail: bytes) -> int:
    """How many bytes at the end of ``tail`` are the start of a UTF-8 character that is not complete."""
    for back in range(1, min(len(tail), 3) + 1):
        byte = tail[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the lead byte of the last character (or ASCII)
            needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return back if needed > back else 0
    return 0


@dataclass
class _Cache:
    """What an earlier read of one file parsed for good: the bytes it read and their entries as messages."""

    prefix: bytearray = field(default_factory=bytearray)  # grown in place: no copy of the file per read
    messages: tuple[Message, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)


_DECODE_CHUNK = 1 << 20
_COMPARE_CHUNK = 1 << 20
_MAX_CACHED_FILES = 16  # files whose parsed entries are kept; the least recently read one is dropped beyond
_caches: OrderedDict[tuple[str, str], _Cache] = OrderedDict()  # by (real path, default role), most recent last
_caches_lock = threading.Lock()


def read_messages(path: Path, default_role: str) -> tuple[Message, ...]:
    """Read the entries of a CHAT.md file as ``Message(role=…, model=… or None, text=…)``, incrementally.

    Blocking (it reads the file): call it in a worker thread (`asyncio.to_thread`). A missing file has no entries.
    The bytes parsed before are compared with the file a megabyte at a time (any change to them, even of the
    same length, means the whole file is parsed again); only what follows them is read into memory and parsed.
    What was parsed is kept for the `_MAX_CACHED_FILES` files read last.

    Args:
        path: the file.
        default_role: the role of entries without a known one (text before the first heading, a ``tool`` entry
            written with the writer's heading …).

    Returns:
        The messages, earlier ones the same objects as on the previous read of this file.

    Raises:
        ChatMdDecodeError: the file holds an invalid UTF-8 byte.
    """
    key = (os.path.realpath(path), default_role)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = _Cache()
            while len(_caches) > _MAX_CACHED_FILES:
                _caches.popitem(last=False)
        else:
            _caches.move_to_end(key)
    with cache.lock:
        try:
            with open(path, "rb") as stream:
                if not _starts_with(stream, cache.prefix):  # rewritten or edited: parse it all again
                    cache.prefix, cache.messages = bytearray(), ()
                    stream.seek(0)
                data = stream.read()  # what follows the prefix
        except FileNotFoundError:
            cache.prefix, cache.messages = bytearray(), ()
            data = b""
        source, decoded = _decode(path, data, cache.prefix)
        parsed = parse_chat_md_entries(source)
        messages = tuple(
            Message(text=text, role=role if role in ROLES else default_role, model=model)
            for role, model, text in parsed.entries
        )
        result = cache.messages + messages
        if parsed.stable_entries:
            cache.messages += messages[: parsed.stable_entries]
            cache.prefix += data[: decoded - len(source[parsed.stable_chars :].encode("utf-8"))]
        return result


def decode_chat_md(path: Path, data: bytes) -> str:
    """Decode the bytes of a CHAT.md file; an incomplete UTF-8 character at the very end is a cut write, left out.

    Args:
        path: the file (named in the error).
        data: its bytes.

    Returns:
        The text.

    Raises:
        ChatMdDecodeError: ``data`` holds a byte that is not UTF-8 (other than such a cut character).
    """
    return _decode(path, data, b"")[0]


def _decode(path: Path, data: bytes, before: bytes | bytearray) -> tuple[str, int]:
    """`decode_chat_md` of ``data``, the bytes that follow ``before`` in the file, a megabyte at a time.

    Returns:
        The text and how many bytes of ``data`` it holds (all but a cut character at the end).
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:  # a megabyte at a time, so that no single call holds the GIL for long (the event loop keeps running)
        source = "".join(
            decoder.decode(data[offset : offset + _DECODE_CHUNK], final=False)  # a cut character stays pending
            for offset in range(0, len(data), _DECODE_CHUNK)
        )
    except UnicodeDecodeError:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.end < len(data) or exc.reason != "unexpected end of data":
                line = before.count(b"\n") + data.count(b"\n", 0, exc.start) + 1
                raise ChatMdDecodeError(path, len(before) + exc.start, line, exc.reason) from None
        raise  # not reached: the incremental decoder fails only where the whole one does
    return source, len(data) - len(decoder.getstate()[0])


def _starts_with(stream: io.BufferedReader, prefix: bytearray) -> bool:
    """Whether the file read by ``stream`` starts with ``prefix``; reads it a megabyte at a time, up to its end."""
    chunk = bytearray(min(len(prefix), _COMPARE_CHUNK))
    for offset in range(0, len(prefix), _COMPARE_CHUNK):
        size = min(_COMPARE_CHUNK, len(prefix) - offset)
        if size < len(chunk):
            del chunk[size:]
        if stream.readinto(chunk) != size or not prefix.startswith(chunk, offset):
            return False
    return True
