r"""The CHAT.md chat-history file format (SPEC §6.5): streaming writer and reader.

Each message is written as a blank line, a header line ``role`` or ``role / model``, a line of 40 ``=`` (so the
header is a setext level-1 Markdown heading), the escaped content, and a final newline::

    \nuser\n========================================\nhi\n

Reading parses the file as CommonMark (markdown-it-py) and splits it at the top-level h1 headings whose text is
``<role>[ / <model>]``, where the role is ``user``, ``assistant`` or ``system`` (in any case) and the model has no
whitespace. Other headings (``# Notes``) are ordinary content, kept verbatim in the entry they are in. A *written
heading* (a blank line or the text's start, a role line at column 0, a line of exactly 40 ``=`` and its line
break) always starts an entry, and its role may be any one word (letters, digits, ``_``, ``-``): an entry that a
writer wrote with another role (``tool``) is read with that role (`read_messages` gives it its default role). Damage
costs at most the entry it is in: a leading BOM is dropped, text before the first heading is an entry without a
role, and a fence or HTML block left open cannot swallow a written heading: the text is cut at each written
heading and each part is read as CommonMark by itself (the writer escapes every content line that starts with
``=``, so no content looks like that). Within a part, a fence or HTML block left open ends at the next role
heading instead of running to the part's end. That is the CommonMark reading; a line scanner finds the same
entries without markdown-it-py wherever no line could open or hide a block, or only closed fences do (see
`parse_chat_md_entries`), which makes reading a long file about 20 times faster.

Escaping scheme (applied per content line, so ordinary text is written verbatim):

* A line gets one ``\`` prepended when it starts with ``\``, or when, after at most 3 columns of space/tab
  indentation, it starts with a block construct that could fake a heading or swallow later headings: ``# `` or
  ``#\t`` (ATX h1), ``=`` (setext underline), ` ``` ` or ``~~~`` (fences), ``<!``, ``<?``, ``<script``, ``<pre``,
  ``<style`` or ``<textarea`` (HTML blocks that do not end at a blank line).
* The first and the last line of a non-empty content are also escaped when blank (spaces/tabs only), because the
  reader drops leading and trailing blank lines.
* The reader strips the ``\`` from a line that starts with ``\`` exactly when the rest would have been escaped.
* When the last line of a content looks like a header line of a known role (`is_header_line`) and the line before
  it is empty, one more newline follows the final one. A file that ends with an empty line and such a line is
  then always a header that a crash cut short before its ``=`` line, never a whole message, so that
  `miniagents.ext._chat_md_file.close_cut_write` can drop it (the reader drops trailing blank lines).

``\r``, ``\n`` and ``\r\n`` all end a line, as in Markdown. For ``\r`` to survive, the caller must open the file
with ``encoding="utf-8", newline=""`` both for writing and for reading (no newline translation).

The writer streams: :class:`ContentEscaper` holds back only the start of the current line until the escape
decision can be made, i.e. its leading whitespace plus at most 9 more characters (a whitespace-only line is held
until it ends, since it may turn out to be the last line).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

HEADER_UNDERLINE = "=" * 40
ROLES = ("user", "assistant", "system")
BOM = "\ufeff"

_ROLE_WORD = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_ATX_HEADING = re.compile(r" {0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_SETEXT_H1_UNDERLINE = re.compile(r" {0,3}=+[ \t]*")

_BLOCK_STARTS = ("# ", "#\t", "=", "```", "~~~", "<!", "<?", "<script", "<pre", "<style", "<textarea")
_LINE_BREAK_CHAR = re.compile(r"([\r\n])")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
# Characters that can start a block construct (or its container) at the start of a line; a role line at column 0
# starts with none of them (nor with whitespace).
_SCAN_FIRST = frozenset(" \t>*+-0123456789.)`~<#=")
_HEADER_LINE_LIMIT = 4096  # a longer last line is never taken for a header line (see `ContentEscaper.finish`)

_Heading = tuple[int, int, str, str | None]  # (role line, first content line, role, model); lines from 0


def _is_blank(line: str) -> bool:
    return not line.strip(" \t")


def _needs_escape(line: str, complete: bool = True, edge: bool = False) -> bool | None:
    """Decides whether a content line (without its line break) must be prefixed with a backslash.

    Args:
        line: The line, or only its beginning when ``complete`` is false.
        complete: Whether ``line`` is the whole line.
        edge: Whether it is the first or the last line of the content (blank edge lines are escaped).

    Returns:
        True or False, or None when the beginning given is not enough to decide.
    """
    if line.startswith("\\"):
        return True
    body = line.lstrip(" \t")
    if not body:
        return edge if complete else None
    columns = 0
    for char in line[: len(line) - len(body)]:
        columns += 4 - columns % 4 if char == "\t" else 1
    if columns >= 4:  # indented code or paragraph continuation: never starts a block at the top level
        return False
    body = body.lower()
    if body.startswith(_BLOCK_STARTS):
        return True
    if not complete and any(start.startswith(body) for start in _BLOCK_STARTS):
        return None
    return False


def format_header(role: str, model: str | None) -> str:
    r"""Formats the header of a message.

    Args:
        role: The role, written verbatim (only ``user``, ``assistant`` and ``system`` are recognized on read).
        model: The model, appended after ``" / "`` when truthy (it must contain no whitespace to be recognized on read).

    Returns:
        ``"\n{role}[ / {model}]\n{HEADER_UNDERLINE}\n"``.
    """
    return f"\n{role}{f' / {model}' if model else ''}\n{HEADER_UNDERLINE}\n"


def _parse_heading(text: str) -> tuple[str, str | None] | None:
    """``(role, model or None)`` when a heading's text has the shape ``<word>[ / <model>]``, else None."""
    left, _, right = text.replace(BOM, "").partition("/")
    role, model = left.strip().lower(), right.strip()
    if not _ROLE_WORD.fullmatch(role) or any(char.isspace() for char in model):
        return None
    return role, model or None


def _known_heading(text: str) -> tuple[str, str | None] | None:
    """`_parse_heading` for any heading but a written one: only a role of `ROLES` makes it a role heading."""
    heading = _parse_heading(text)
    return heading if heading is not None and heading[0] in ROLES else None


def _column_0_heading(line: str) -> tuple[str, str | None] | None:
    """``(role, model)`` when ``line`` is a role line that starts at column 0 with no block marker, else None."""
    if not line or line[0].isspace() or line[0] in _SCAN_FIRST:
        return None
    return _parse_heading(line)


def is_header_line(line: str) -> bool:
    """Tells whether a line reads as the header line of a message of a known role, as `format_header` writes it.

    Args:
        line: The line, without its line break.

    Returns:
        True for a line such as ``user`` or ``Assistant / gpt-4o``: a role of `ROLES` (in any case) at column 0,
        and maybe ``/`` and a model without whitespace.
    """
    heading = _column_0_heading(line)
    return heading is not None and heading[0] in ROLES


def is_header_line_start(text: str) -> bool:
    """Tells whether a line cut short could be the start of a header line that `format_header` writes.

    Args:
        text: The beginning of a line, without a line break.

    Returns:
        True when ``text`` is not empty and is the beginning of ``<role>`` or ``<role> / <model>`` for a role of
        `ROLES` (in any case) and a model without whitespace.
    """
    if not text or text[0].isspace():
        return False
    for role in ROLES:
        if len(text) <= len(role):
            if role.startswith(text.lower()):
                return True
        elif text[: len(role)].lower() == role:
            rest = text[len(role) :]
            return " / ".startswith(rest) or (rest.startswith(" / ") and not any(char.isspace() for char in rest[3:]))
    return False


class ContentEscaper:
    """Escapes the content of one message as its tokens arrive (see the module docstring)."""

    def __init__(self) -> None:
        self._line = ""  # held-back beginning of the current line
        self._decided = False  # the current line's beginning has been written, the rest passes through
        self._first = True  # the current line is the first line of the content
        self._fed = False  # some text has been fed
        self._after_cr = False  # the last character fed was "\r" (a "\n" right after it ends no other line)
        self._raw: list[str] | None = []  # the current line as fed, while it is short enough to be a header line
        self._raw_length = 0
        self._previous_empty = False  # the line before the current one is empty (as written)

    def feed(self, token: str) -> str:
        """Feeds the next token of the content.

        Args:
            token: The token.

        Returns:
            The text to write now.
        """
        out = []
        for part in _LINE_BREAK_CHAR.split(token):
            if not part:
                continue
            self._fed = True
            if part in ("\r", "\n"):
                if not self._decided:
                    out.append(self._flush(_needs_escape(self._line, edge=self._first)))
                out.append(part)
                if part == "\r" or not self._after_cr:  # a line ended (the "\n" of "\r\n" ends none)
                    self._previous_empty = self._raw == [] and not self._first  # a first line is escaped
                    self._raw, self._raw_length = [], 0
                self._after_cr = part == "\r"
                self._decided = self._first = False
                continue
            self._after_cr = False
            if self._raw is not None:
                self._raw_length += len(part)
                if self._raw_length <= _HEADER_LINE_LIMIT:
                    self._raw.append(part)
                else:
                    self._raw = None
            if self._decided:
                out.append(part)
            else:
                self._line += part
                escape = _needs_escape(self._line, complete=False)
                if escape is not None:
                    out.append(self._flush(escape))
        return "".join(out)

    def finish(self) -> str:
        """Ends the content.

        Returns:
            The text to write at the end of the message: the final newline, and one more when the last line
            looks like a header line of a known role after an empty line (see the module docstring).
        """
        tail = "" if self._decided or not self._fed else self._flush(_needs_escape(self._line, edge=True))
        looks_cut = self._previous_empty and self._raw is not None and is_header_line("".join(self._raw))
        return tail + ("\n\n" if looks_cut else "\n")

    def _flush(self, escape: bool | None) -> str:
        text = "\\" + self._line if escape else self._line
        self._line, self._decided = "", True
        return text


def format_message(role: str, model: str | None, text: str) -> str:
    """Formats a whole message: its header and its escaped content.

    Args:
        role: The role.
        model: The model or None.
        text: The content.

    Returns:
        The text to append to the file.
    """
    escaper = ContentEscaper()
    return format_header(role, model) + escaper.feed(text) + escaper.finish()


def _content(lines: list[tuple[str, str]]) -> str:
    while lines and _is_blank(lines[0][0]):
        lines = lines[1:]
    while lines and _is_blank(lines[-1][0]):
        lines = lines[:-1]
    parts = []
    for index, (line, line_break) in enumerate(lines):
        last = index == len(lines) - 1
        if line.startswith("\\") and _needs_escape(line[1:], edge=index == 0 or last):
            line = line[1:]
        parts.append(line if last else line + line_break)
    return "".join(parts)


def _role_line(lines: list[str], index: int) -> bool:
    """Whether line ``index`` starts a heading of a known role (ATX, or setext with its underline on the next line)."""
    line = lines[index]
    match = _ATX_HEADING.fullmatch(line)
    if match:
        return _known_heading(match.group(1)) is not None
    indent = len(line) - len(line.lstrip(" "))
    if indent > 3 or _is_blank(line) or index + 1 >= len(lines) or not _SETEXT_H1_UNDERLINE.fullmatch(lines[index + 1]):
        return False
    return _known_heading(line) is not None


def _swallowing_block_end(token: Token, lines: list[str], first: int) -> int | None:
    """Where an unclosed block (a fence or an HTML block that runs to the end) must stop: its first role line.

    Args:
        token: a top-level block token of the text parsed from line ``first`` on.
        lines: the lines of the part of the text being read (without line breaks), up to its end.
        first: the index in ``lines`` of the first line parsed (token maps are relative to it).

    Returns:
        The index in ``lines`` of the first role heading inside an unclosed block, or None.
    """
    if token.type not in ("fence", "html_block") or not token.map or token.map[1] < len(lines) - first:
        return None  # only a block that runs to the end of the text can be unclosed
    start, end = first + token.map[0], first + token.map[1]
    last = lines[end - 1].strip(" \t")
    if token.type == "fence":
        closed = end - start >= 2 and last.startswith(token.markup) and not last.strip(token.markup[0])
    else:
        closed = ">" in last
    if closed:
        return None
    return next((index for index in range(start + 1, end) if _role_line(lines, index)), None)


class ParsedChatMd(NamedTuple):
    """What `parse_chat_md_entries` returns."""

    entries: list[tuple[str | None, str | None, str]]
    """A ``(role or None, model or None, text)`` tuple per entry, with the role lower-cased (an unknown one only from a
    written heading)."""
    stable_chars: int
    """How many characters of the source hold only final entries: text appended to the source can change or
    extend only the entries from there on (the last one, one whose heading has no line break after it yet, and,
    after the last written heading, any from the first one with a repaired block on)."""
    stable_entries: int
    """How many of the entries lie within `stable_chars`."""


def parse_chat_md_entries(source: str) -> ParsedChatMd:
    r"""Reads back the entries of a CHAT.md text and tells which of them later appends cannot change.

    A heading starts an entry when its role is a known one, or, whatever its role word (``tool``), when the writer
    wrote it (a blank line, a role line at column 0, a line of 40 ``=`` and its line break); any other heading
    (``# Notes``, ``# tool``) is content of the entry it is in. Damage costs at most the entry it is in: a
    leading BOM is dropped, text before the first heading is an entry of its own (role None), and a fence or
    HTML block left open ends at the next role heading; one never swallows a written heading, where each part of
    the text is read by itself.

    The result is exactly `parse_chat_md_entries_markdown_it`'s (the CommonMark reading), found faster: a line
    scanner finds the written headings and the other setext ones (a blank line, a role line at column 0, a line
    of ``=``), and the lines that could open a block that spans blank lines or hide a heading (a fence, an HTML
    block of CommonMark's types 1-5, a ``#`` or ``=`` line, after any indentation and container markers). Where
    the only such lines are fences at column 0 that close within the part (and no HTML block may be open before
    them), it follows the fences itself; elsewhere it hands the stretch to markdown-it-py, from the last heading
    known to be top-level to the first one that it confirms as top-level, or to the part's end. A text with a
    lone ``\r`` line break or a NUL is read by markdown-it-py as a whole.

    Args:
        source: The text (read with ``newline=""`` so that ``\r`` is kept).

    Returns:
        The entries, and how much of them later appends cannot change.
    """
    skipped = 1 if source.startswith(BOM) else 0
    text = source[skipped:]
    lines = _split_lines(text)
    if lines is None:  # a lone "\r" or a NUL: markdown-it's reading as a whole
        return parse_chat_md_entries_markdown_it(source)
    candidates, suspicious = _scan_lines(lines)
    end = len(lines) - 1 if len(lines) > 1 and not lines[-1] else len(lines)  # not the "line" after a last break
    headings: list[_Heading] = []
    repaired: int | None = None
    next_suspicious = 0
    part_start = first_candidate = 0
    for index in [*(index for index, candidate in enumerate(candidates) if candidate[3]), len(candidates)]:
        part_end = candidates[index][0] if index < len(candidates) else end
        if part_end > part_start:  # a part: from the text's start or a written heading up to the next one
            repaired, next_suspicious = _scan_part(
                lines, part_start, part_end, candidates[first_candidate:index], suspicious, next_suspicious, headings
            )
        part_start, first_candidate = part_end, index
    stable_line = repaired if repaired is not None else _stable_line(headings, len(lines) - 1)
    entries = _entries(lines, headings, len(lines))
    stable_entries = sum(1 for heading in headings if heading[0] < stable_line)
    if stable_line and headings[0][0] and entries[0][0] is None:  # the preamble
        stable_entries += 1
    if not stable_line:  # nothing is final (not even a BOM: the text after it may start with another)
        return ParsedChatMd(entries, 0, 0)
    tail_chars = sum(map(len, lines[stable_line:])) + len(lines) - 1 - stable_line
    return ParsedChatMd(entries, skipped + len(text) - tail_chars, stable_entries)


def _stable_line(headings: list[_Heading], complete_lines: int) -> int:
    """The line of the last heading whose lines are all among the first ``complete_lines`` lines (with a break)."""
    for heading in reversed(headings):
        if heading[1] <= complete_lines:
            return heading[0]
    return 0


_SCAN_CHUNK = 1 << 20
_CONTAINER_PREFIX = " \t>*+-0123456789.)"
_UNDERLINE_LINE = re.compile(r" {0,3}=+[ \t]*\r?")
# The HTML blocks that do not end at a blank line (CommonMark types 1-5), a superset of markdown-it-py's patterns
# (same flags); the others end at the blank line before a role heading and hold no heading (a heading line is
# suspicious by itself).
_SPANNING_HTML = re.compile(r"<(?:[!?]|script|pre|style|textarea)", re.IGNORECASE)
_ESCAPED_REST = re.compile(r"\\| {0,3}(?ai:# |#\t|=|```|~~~|<!|<\?|<script|<pre|<style|<textarea)")


def _split_lines(text: str) -> list[str] | None:
    r"""``text.split("\n")``, a megabyte at a time (no long call holds the GIL); None for a lone ``\r`` or a NUL."""
    lines: list[str] = []
    start = 0
    while start <= len(text):
        end = text.find("\n", start + _SCAN_CHUNK)
        end = len(text) if end < 0 else end
        chunk = text[start:end]
        if "\0" in chunk or ("\r" in chunk and text.count("\r", start, end + 1) != text.count("\r\n", start, end + 1)):
            return None
        lines.extend(chunk.split("\n"))
        start = end + 1
    return lines


def _line_pairs(text: str) -> list[tuple[str, str]]:
    r"""``(line, line break)`` pairs, the last one's break ``""``; split a megabyte at a time, as `_split_lines`."""
    pairs: list[tuple[str, str]] = []
    start = 0
    while True:
        end = text.find("\n", start + _SCAN_CHUNK) + 1 or len(text)  # a chunk ends after a "\n" (or the text)
        pieces = _LINE_BREAK.split(text[start:end])
        pairs += zip(pieces[:-1:2], pieces[1::2], strict=True)
        if end == len(text):
            pairs.append((pieces[-1], ""))
            return pairs
        start = end


def _scan_lines(lines: list[str]) -> tuple[list[tuple[int, str, str | None, bool]], list[int]]:
    """The candidate role headings (blank line, role line at column 0, ``=`` line) and the suspicious lines.

    Returns:
        ``(role line, role, model, written)`` per candidate, where ``written`` tells a heading the writer writes
        (its ``=`` line is 40 ``=`` and a line break), and the indexes of the lines that might open a block
        spanning blank lines or be (part of) a heading: after any indentation and container markers (``>``, list
        markers), they start with a fence, an HTML block that does not end at a blank line, ``=``, or ``#``
        followed by a space, a tab or the line's end.
    """
    candidates: list[tuple[int, str, str | None, bool]] = []
    suspicious: list[int] = []
    first = _SCAN_FIRST
    known: dict[str, tuple[str, str | None] | None] = {}  # role lines repeat: parse each only once
    for index in [index for index, line in enumerate(lines) if line[:1] in first]:
        line = lines[index]
        rest = line.lstrip(_CONTAINER_PREFIX)
        if (
            rest.startswith(("```", "~~~", "="))
            or (rest[:1] == "#" and rest[1:2] in ("", " ", "\t", "\r"))
            or (rest[:1] == "<" and _SPANNING_HTML.match(rest))
        ):
            if index and rest[:1] == "=" and (line == HEADER_UNDERLINE or _UNDERLINE_LINE.fullmatch(line)):
                heading = _role_candidate(lines, index - 1, known)
                if heading is not None:
                    written = line.removesuffix("\r") == HEADER_UNDERLINE and index + 1 < len(lines)
                    if written or heading[0] in ROLES:  # any other heading is content (markdown-it reads it)
                        candidates.append((index - 1, *heading, written))
                        continue
            suspicious.append(index)
    return candidates, suspicious


def _role_candidate(
    lines: list[str], index: int, known: dict[str, tuple[str, str | None] | None]
) -> tuple[str, str | None] | None:
    """``(role, model)`` when line ``index`` is a role line at column 0 after a blank line (or the text's start)."""
    if index and lines[index - 1].strip(" \t\r"):
        return None
    line = lines[index]
    if line not in known:
        known[line] = _column_0_heading(line.removesuffix("\r"))
    return known[line]


def _scan_part(
    lines: list[str],
    start: int,
    end: int,
    candidates: list[tuple[int, str, str | None, bool]],
    suspicious: list[int],
    next_suspicious: int,
    headings: list[_Heading],
) -> tuple[int | None, int]:
    """Finds the role headings of ``lines[start:end]``, one part of the text, and appends them to ``headings``.

    Args:
        lines: all lines of the text.
        start: where the part starts: at the text's start or at a written heading (at the top level).
        end: where it ends: at the next written heading or at the text's end.
        candidates: the candidate headings of the part (`_scan_lines`).
        suspicious: all suspicious lines of the text (`_scan_lines`).
        next_suspicious: the index in ``suspicious`` of the first one from ``start`` on.
        headings: the headings found so far, before ``start``.

    Returns:
        The line of the heading (or 0 for none) of the entry that holds the part's first repaired block, or None;
        and the index in ``suspicious`` of the first one from ``end`` on.
    """
    top = start  # the block state is the top level here: at the part's start or at a heading found
    low = 0  # the first candidate after `top`
    while True:
        # Follow fences at column 0 over the suspicious lines and the candidates; a candidate outside is a heading.
        fence: tuple[str, int] | None = None
        after_fence = top
        index, suspect = low, next_suspicious
        while True:
            line = candidates[index][0] if index < len(candidates) else end
            suspicious_line = suspicious[suspect] if suspect < len(suspicious) else end
            if line < min(suspicious_line, end):
                if fence is None:
                    headings.append((line, line + 2, candidates[index][1], candidates[index][2]))
                    top, low, next_suspicious = line, index + 1, suspect
                index += 1
                continue
            if suspicious_line >= end:
                if fence is None:
                    return None, suspect
                break  # left open: the reference repairs it
            text = lines[suspicious_line].removesuffix("\r")
            suspect += 1
            if fence is not None:
                if _closes_fence(text, fence):
                    fence, after_fence = None, suspicious_line + 1
                continue
            fence = _opening_fence(text)
            if fence is None or _html_block_may_be_open(lines, max(top, after_fence), suspicious_line):
                break
        confirmed = _confirm_by_markdown_it(lines, top, candidates, low, headings)
        if confirmed is None:  # the reference reads the rest of the part
            repaired = _markdown_it_part([line.removesuffix("\r") for line in lines[top:end]], top, headings)
            while next_suspicious < len(suspicious) and suspicious[next_suspicious] < end:
                next_suspicious += 1
            return repaired, next_suspicious
        top, low = candidates[confirmed - 1][0], confirmed
        while next_suspicious < len(suspicious) and suspicious[next_suspicious] < top:
            next_suspicious += 1


def _opening_fence(line: str) -> tuple[str, int] | None:
    """``(marker, length)`` when ``line`` opens a code fence at column 0, else None."""
    marker = line[:1]
    if marker not in ("`", "~"):
        return None
    length = len(line) - len(line.lstrip(marker))
    if length < 3 or (marker == "`" and "`" in line[length:]):
        return None
    return marker, length


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    """Whether ``line`` closes a top-level code fence opened with ``fence`` (see `_opening_fence`)."""
    marker, length = fence
    body = line.lstrip(" \t")
    columns = 0
    for char in line[: len(line) - len(body)]:
        columns += 4 - columns % 4 if char == "\t" else 1
    run = len(body) - len(body.lstrip(marker))
    return columns < 4 and run >= length and not body[run:].strip(" \t")


def _html_block_may_be_open(lines: list[str], stop: int, index: int) -> bool:
    """Whether an HTML block may be open at line ``index`` (a fence at column 0 there would be its content).

    It may when a line since the last blank one (from ``stop`` on) starts with ``<``, after any indentation and
    container markers.
    """
    for before in range(index - 1, stop - 1, -1):
        line = lines[before]
        if not line.strip(" \t\r"):
            return False
        if line.lstrip(_CONTAINER_PREFIX)[:1] == "<":
            return True
    return False


def _confirm_by_markdown_it(
    lines: list[str], top: int, candidates: list[tuple[int, str, str | None, bool]], low: int, headings: list[_Heading]
) -> int | None:
    """Reads from line ``top`` (at the top level) up to the first candidate that markdown-it confirms as top-level.

    It tries the candidates from ``low`` on, 1, 2, 4 … ahead (the first confirmed one may be far when a block
    swallows some), and appends the headings found.

    Returns:
        The index of the candidate after the confirmed one, or None when none is.
    """
    ahead = 1
    while low + ahead <= len(candidates):
        line = candidates[low + ahead - 1][0]
        found = _markdown_it_headings(lines, top, line + 2)
        if found and found[-1][0] == line:
            _add_headings(headings, found)
            return low + ahead
        if low + ahead == len(candidates):
            return None
        ahead = min(2 * ahead, len(candidates) - low)
    return None


def _add_headings(headings: list[_Heading], found: list[_Heading]) -> None:
    """Appends the headings of ``found`` (in order) that lie after the last one of ``headings``."""
    headings += [heading for heading in found if not headings or heading[0] > headings[-1][0]]


def _markdown_it_headings(lines: list[str], start: int, end: int) -> list[_Heading]:
    """The top-level role headings markdown-it finds in ``lines[start:end]`` (line numbers in ``lines``)."""
    tokens = _block_parser().parse("\n".join(lines[start:end]))
    headings = []
    for index, token in enumerate(tokens):
        if token.level == 0 and token.map and token.type == "heading_open" and token.tag == "h1":
            parsed = _known_heading(tokens[index + 1].content)
            if parsed:
                headings.append((start + token.map[0], start + token.map[1], *parsed))
    return headings


def _markdown_it_part(lines: list[str], offset: int, headings: list[_Heading]) -> int | None:
    """The reference reading of one part of a text: appends the top-level role headings markdown-it-py finds.

    A fence or HTML block that runs to the part's end unclosed ends at its first role line, and the part is
    parsed again from there.

    Args:
        lines: the lines of the part (without line breaks); it starts at the top level (the text's start, a
            written heading, or a heading found), and ends at a written heading or at the text's end.
        offset: the line number of its first line in the text.
        headings: the headings found so far, before ``offset`` (or at it).

    Returns:
        The line of the heading (or 0 for none) of the entry that holds the first repaired block, or None.
    """
    first = 0
    repaired = None
    while first < len(lines):
        tokens = _block_parser().parse("\n".join(lines[first:]) + "\n")
        cut = None
        for index, token in enumerate(tokens):
            if token.level != 0 or not token.map:
                continue
            if token.type == "heading_open" and token.tag == "h1":
                parsed = _known_heading(tokens[index + 1].content)  # the heading's inline token
                if parsed:
                    line = offset + first + token.map[0]
                    _add_headings(headings, [(line, offset + first + token.map[1], *parsed)])
            cut = _swallowing_block_end(token, lines, first)
            if cut is not None:
                break
        if cut is None:
            break
        if repaired is None:  # the repaired block's entry could change once the block gets closed
            repaired = headings[-1][0] if headings else 0
        first = cut
    return repaired


_parser_local = threading.local()


def _block_parser() -> MarkdownIt:
    """markdown-it-py's CommonMark block parser (inline parsing off: inline tokens keep their text), per thread."""
    parser: MarkdownIt | None = getattr(_parser_local, "parser", None)
    if parser is None:
        from markdown_it import MarkdownIt  # pylint: disable=import-outside-toplevel

        parser = _parser_local.parser = MarkdownIt("commonmark").disable("inline")
    return parser


def _entries(lines: list[str], headings: list[_Heading], end: int) -> list[tuple[str | None, str | None, str]]:
    entries: list[tuple[str | None, str | None, str]] = []
    preamble = _content_text(lines, 0, headings[0][0] if headings else end)
    if preamble:
        entries.append((None, None, preamble))
    ends = [heading[0] for heading in headings[1:]] + ([end] if headings else [])
    for (_, content_line, role, model), stop in zip(headings, ends, strict=True):
        entries.append((role, model, _content_text(lines, content_line, stop)))
    return entries


def _content_text(lines: list[str], start: int, end: int) -> str:
    r"""The content of an entry from its lines (what `_content` does to its line pairs; no lone ``\r`` here)."""
    while start < end and not lines[start].strip(" \t\r"):
        start += 1
    while end > start and not lines[end - 1].strip(" \t\r"):
        end -= 1
    body = "\n".join(lines[start:end])
    if body.endswith("\r"):  # the last line's "\r\n" line break
        body = body[:-1]
    if "\\" not in body:
        return body
    last_start = max(body.rfind("\n"), body.rfind("\r")) + 1
    if last_start and body.startswith("\\", last_start) and _is_blank(body[last_start + 1 :]):
        body = body[:last_start] + body[last_start + 1 :]
    first_break = _LINE_BREAK.search(body)
    if body.startswith("\\") and _is_blank(body[1 : first_break.start() if first_break else len(body)]):
        body = body[1:]
    return _unescape(body)


def _unescape(body: str) -> str:
    r"""Drops the ``\`` of the lines (after ``\n``, no lone ``\r`` here) that the writer escaped (edges done)."""
    pieces = []
    done = 0
    index = 0 if body.startswith("\\") else body.find("\n\\") + 1 or -1
    while index >= 0:
        if _ESCAPED_REST.match(body, index + 1):
            pieces.append(body[done:index])
            done = index + 1
        index = body.find("\n\\", index + 1) + 1 or -1
    return "".join(pieces) + body[done:] if pieces else body


def parse_chat_md_entries_markdown_it(source: str) -> ParsedChatMd:
    r"""The reference reader: `parse_chat_md_entries` by markdown-it-py's block parser alone (slower, same result).

    `parse_chat_md_entries` uses it for the parts of a text that its line scanner cannot decide by itself; the
    tests compare the two on random documents.

    A heading starts an entry when its role is a known one, or, whatever its role word (``tool``), when the writer
    wrote it (a blank line or the text's start, a role line at column 0, a line of 40 ``=`` and its line break);
    any other heading (``# Notes``, ``# tool``) is content. Damage costs at most the entry it is in: a leading
    BOM is dropped, text before the first heading is an entry of its own (role None), and a fence or HTML block
    left open ends at the next role heading. The text is cut at every written heading, and each part is parsed
    by itself, so that no block swallows one.

    Args:
        source: The text (read with ``newline=""`` so that ``\r`` is kept).

    Returns:
        The entries, and how much of them later appends cannot change.
    """
    skipped = 1 if source.startswith(BOM) else 0
    pairs = _line_pairs(source[skipped:])  # the same line breaks as markdown-it's
    lines = [line for line, _ in pairs]
    end = len(pairs) - 1 if len(pairs) > 1 and pairs[-1] == ("", "") else len(pairs)
    written: list[_Heading] = []  # whatever their role word (markdown-it's reading takes only the known roles)
    for underline, (line, line_break) in enumerate(pairs):
        if (
            line == HEADER_UNDERLINE
            and line_break
            and underline
            and (underline == 1 or _is_blank(lines[underline - 2]))
        ):
            heading = _column_0_heading(lines[underline - 1])
            if heading is not None:
                written.append((underline - 1, underline + 1, *heading))
    headings: list[_Heading] = []
    repaired: int | None = None
    part_starts = [0, *(heading[0] for heading in written)]
    part_ends = [*(heading[0] for heading in written), end]
    for part_start, part_end, first in zip(part_starts, part_ends, [None, *written], strict=True):
        if part_end > part_start:
            if first is not None:
                _add_headings(headings, [first])
            repaired = _markdown_it_part(lines[part_start:part_end], part_start, headings)
    entries: list[tuple[str | None, str | None, str]] = []
    preamble = _content(pairs[: headings[0][0] if headings else len(pairs)])
    if preamble:
        entries.append((None, None, preamble))
    ends = [heading[0] for heading in headings[1:]] + ([len(pairs)] if headings else [])
    for (_, start, role, model), stop in zip(headings, ends, strict=True):
        entries.append((role, model, _content(pairs[start:stop])))
    stable_line = repaired if repaired is not None else _stable_line(headings, len(pairs) - 1)
    stable_entries = (1 if preamble and stable_line else 0) + sum(1 for heading in headings if heading[0] < stable_line)
    if not stable_line:  # nothing is final (not even a BOM: the text after it may start with another)
        return ParsedChatMd(entries, 0, 0)
    stable_chars = sum(len(line) + len(line_break) for line, line_break in pairs[:stable_line])
    return ParsedChatMd(entries, skipped + stable_chars, stable_entries)


def parse_chat_md(source: str) -> list[tuple[str | None, str | None, str]]:
    r"""Reads back the entries of a CHAT.md text (see `parse_chat_md_entries`).

    Args:
        source: The file contents (read with ``newline=""`` so that ``\r`` is kept).

    Returns:
        A ``(role or None, model or None, text)`` tuple per entry.
    """
    return parse_chat_md_entries(source).entries
