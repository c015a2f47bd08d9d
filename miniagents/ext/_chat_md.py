r"""The CHAT.md chat-history file format (SPEC §6.5): streaming writer and reader.

Each message is written as a blank line, a header line ``role`` or ``role / model``, a line of 40 ``=`` (so the
header is a setext level-1 Markdown heading), the escaped content, and a final newline::

    \nuser\n========================================\nhi\n

Reading parses the file as CommonMark (markdown-it-py) and splits it at the top-level h1 headings whose text is
``<role>[ / <model>]``, where the role is one word (letters, digits, ``_``, ``-``; ``user``, ``assistant`` and
``system`` are the known ones, in any case) and the model has no whitespace. Other headings are ordinary content.
Damage costs at most the entry it is in: a leading BOM is dropped, text before the first heading is an entry
without a role, a heading with an unknown role word starts an entry of its own, and a fence or HTML block left
open ends at the next role heading instead of swallowing the rest of the file. That is the CommonMark reading;
a line scanner finds the same entries without markdown-it-py wherever no line could open or hide a block (see
`parse_chat_md_entries`), which makes reading a long file about 20 times faster.

Escaping scheme (applied per content line, so ordinary text is written verbatim):

* A line gets one ``\`` prepended when it starts with ``\``, or when, after at most 3 columns of space/tab
  indentation, it starts with a block construct that could fake a heading or swallow later headings: ``# `` or
  ``#\t`` (ATX h1), ``=`` (setext underline), ` ``` ` or ``~~~`` (fences), ``<!``, ``<?``, ``<script``, ``<pre``,
  ``<style`` or ``<textarea`` (HTML blocks that do not end at a blank line).
* The first and the last line of a non-empty content are also escaped when blank (spaces/tabs only), because the
  reader drops leading and trailing blank lines.
* The reader strips the ``\`` from a line that starts with ``\`` exactly when the rest would have been escaped.

``\r``, ``\n`` and ``\r\n`` all end a line, as in Markdown. For ``\r`` to survive, the caller must open the file
with ``encoding="utf-8", newline=""`` both for writing and for reading (no newline translation).

The writer streams: :class:`ContentEscaper` holds back only the start of the current line until the escape
decision can be made, i.e. its leading whitespace plus at most 9 more characters (a whitespace-only line is held
until it ends, since it may turn out to be the last line).
"""

from __future__ import annotations

import itertools
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


class ContentEscaper:
    """Escapes the content of one message as its tokens arrive (see the module docstring)."""

    def __init__(self) -> None:
        self._line = ""  # held-back beginning of the current line
        self._decided = False  # the current line's beginning has been written, the rest passes through
        self._first = True  # the current line is the first line of the content
        self._fed = False  # some text has been fed

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
                self._decided = self._first = False
            elif self._decided:
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
            The text to write at the end of the message, including the final newline.
        """
        tail = "" if self._decided or not self._fed else self._flush(_needs_escape(self._line, edge=True))
        return tail + "\n"

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


def _parse_heading(text: str) -> tuple[str, str | None] | None:
    """``(role, model or None)`` when a heading's text has the shape ``<word>[ / <model>]``, else None."""
    left, _, right = text.replace(BOM, "").partition("/")
    role, model = left.strip().lower(), right.strip()
    if not _ROLE_WORD.fullmatch(role) or any(char.isspace() for char in model):
        return None
    return role, model or None


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


def _role_line(lines: list[tuple[str, str]], index: int) -> bool:
    """Whether raw line ``index`` starts a role heading (ATX, or setext with its underline on the next line)."""
    line = lines[index][0]
    match = _ATX_HEADING.fullmatch(line)
    if match:
        return _parse_heading(match.group(1)) is not None
    indent = len(line) - len(line.lstrip(" "))
    if (
        indent > 3
        or _is_blank(line)
        or index + 1 >= len(lines)
        or not _SETEXT_H1_UNDERLINE.fullmatch(lines[index + 1][0])
    ):
        return False
    return _parse_heading(line) is not None


def _swallowing_block_end(token: Token, lines: list[tuple[str, str]], first: int, count: int) -> int | None:
    """Where an unclosed block (a fence or an HTML block that runs to the end) must stop: its first role line.

    Args:
        token: a top-level block token.
        lines: all lines of the file.
        first: the index in ``lines`` of the first line parsed (token maps are relative to it).
        count: how many lines were parsed.

    Returns:
        The index in ``lines`` of the first role heading inside an unclosed block, or None.
    """
    if token.type not in ("fence", "html_block") or not token.map or token.map[1] < count:
        return None  # only a block that runs to the end of the text can be unclosed
    start, end = first + token.map[0], first + token.map[1]
    last = lines[end - 1][0].strip(" \t")
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
    """A ``(role or None, model or None, text)`` tuple per entry, with the role lower-cased and possibly unknown."""
    stable_chars: int
    """How many characters of the source hold only final entries: text appended to the source can change or
    extend only the entries from there on (the last one, and any whose open block was repaired)."""
    stable_entries: int
    """How many of the entries lie within `stable_chars`."""


def parse_chat_md_entries(source: str) -> ParsedChatMd:
    r"""Reads back the entries of a CHAT.md text and tells which of them later appends cannot change.

    Damage costs at most the entry it is in: a leading BOM is dropped, text before the first heading is an entry
    of its own (role None), a heading with an unknown role word (``# tool``) starts an entry of its own, and a
    fence or HTML block left open ends at the next role heading instead of swallowing the rest of the file.

    The result is exactly `parse_chat_md_entries_markdown_it`'s (the CommonMark reading), found faster: a line
    scanner takes the file apart at the headings a writer writes (a blank line, a role line at column 0, a line
    of ``=``) as long as no line between them could open a block that spans blank lines or hide a heading (a
    fence, an HTML block of CommonMark's types 1-5, a ``#`` or ``=`` line, after any indentation and container
    markers). Only the stretches
    where such a line occurs are given to markdown-it-py, from the last heading known to be top-level to the
    first one that it confirms as top-level. A text with a lone ``\r`` line break or a NUL is read by
    markdown-it-py as a whole.

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
    headings: list[tuple[int, int, str, str | None]] = []  # (role line, first content line, role, model)
    start = 0  # a line where markdown-it's block state is known to be at the top level (0 or a heading's line)
    next_suspicious = 0
    next_candidate = 0
    while next_candidate < len(candidates):
        while next_suspicious < len(suspicious) and suspicious[next_suspicious] < start:
            next_suspicious += 1
        line, role, model = candidates[next_candidate]
        if next_suspicious == len(suspicious) or suspicious[next_suspicious] >= line:  # nothing in between
            headings.append((line, line + 2, role, model))
            start = line
            next_candidate += 1
            continue
        # A stretch the scanner cannot decide: markdown-it from `start` up to a candidate it confirms, trying
        # 1, 2, 4 … candidates ahead (the first confirmed one may be far when a block swallows some).
        ahead = 1
        while True:
            end = candidates[next_candidate + ahead - 1][0]
            found = _markdown_it_headings(lines, start, end + 2)
            if found and found[-1][0] == end:
                headings += [heading for heading in found if heading[0] > start or (not start and not headings)]
                start = end
                next_candidate += ahead
                break
            if next_candidate + ahead == len(candidates):
                return _with_reference_tail(source, skipped, lines, headings, start)
            ahead = min(2 * ahead, len(candidates) - next_candidate)
    while next_suspicious < len(suspicious) and suspicious[next_suspicious] < start:
        next_suspicious += 1
    if next_suspicious < len(suspicious):  # the last stretch may hold an open block: the reference repairs it
        return _with_reference_tail(source, skipped, lines, headings, start)
    stable_line = headings[-1][0] if headings else 0
    entries = _entries(lines, headings, len(lines))
    stable_entries = sum(1 for heading in headings if heading[0] < stable_line)
    if stable_line and headings[0][0] and entries and entries[0][0] is None:
        stable_entries += 1
    return ParsedChatMd(entries, skipped + len(text) - len("\n".join(lines[stable_line:])), stable_entries)


_SCAN_CHUNK = 1 << 20
_SCAN_FIRST = frozenset(" \t>*+-0123456789.)`~<#=")
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


def _scan_lines(lines: list[str]) -> tuple[list[tuple[int, str, str | None]], list[int]]:
    """The candidate role headings (blank line, role line at column 0, ``=`` line) and the suspicious lines.

    Returns:
        ``(role line, role, model)`` per candidate, and the indexes of the lines that might open a block spanning
        blank lines or be (part of) a heading: after any indentation and container markers (``>``, list markers),
        they start with a fence, an HTML block that does not end at a blank line, ``=``, or ``#`` followed by a
        space, a tab or the line's end.
    """
    candidates: list[tuple[int, str, str | None]] = []
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
                    candidates.append((index - 1, *heading))
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
        bare = line.removesuffix("\r")
        known[line] = None if not bare or bare[0].isspace() or bare[0] in _SCAN_FIRST else _parse_heading(bare)
    return known[line]


def _markdown_it_headings(lines: list[str], start: int, end: int) -> list[tuple[int, int, str, str | None]]:
    """The top-level role headings markdown-it finds in ``lines[start:end]`` (line numbers in ``lines``)."""
    tokens = _block_parser().parse("\n".join(lines[start:end]))
    headings = []
    for index, token in enumerate(tokens):
        if token.level == 0 and token.map and token.type == "heading_open" and token.tag == "h1":
            parsed = _parse_heading(tokens[index + 1].content)
            if parsed:
                headings.append((start + token.map[0], start + token.map[1], *parsed))
    return headings


_parser_local = threading.local()


def _block_parser() -> MarkdownIt:
    """markdown-it-py's CommonMark block parser (inline parsing off: inline tokens keep their text), per thread."""
    parser: MarkdownIt | None = getattr(_parser_local, "parser", None)
    if parser is None:
        from markdown_it import MarkdownIt  # pylint: disable=import-outside-toplevel

        parser = _parser_local.parser = MarkdownIt("commonmark").disable("inline")
    return parser


def _entries(
    lines: list[str], headings: list[tuple[int, int, str, str | None]], end: int
) -> list[tuple[str | None, str | None, str]]:
    entries: list[tuple[str | None, str | None, str]] = []
    preamble = _content_text(lines, 0, headings[0][0] if headings else end)
    if preamble:
        entries.append((None, None, preamble))
    ends = [heading[0] for heading in headings[1:]] + ([end] if headings else [])
    for (_, content_line, role, model), stop in zip(headings, ends, strict=True):
        entries.append((role, model, _content_text(lines, content_line, stop)))
    return entries


def _with_reference_tail(
    source: str, skipped: int, lines: list[str], headings: list[tuple[int, int, str, str | None]], start: int
) -> ParsedChatMd:
    """The entries before line ``start`` (a top-level heading, or 0) as scanned, the rest by the reference reader."""
    if not start:
        return parse_chat_md_entries_markdown_it(source)
    tail = parse_chat_md_entries_markdown_it("\n".join(lines[start:]))
    before = _entries(lines, [heading for heading in headings if heading[0] < start], start)
    chars_before = len(source) - skipped - len("\n".join(lines[start:]))
    return ParsedChatMd(
        before + tail.entries, skipped + chars_before + tail.stable_chars, len(before) + tail.stable_entries
    )


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

    Damage costs at most the entry it is in: a leading BOM is dropped, text before the first heading is an entry
    of its own (role None), a heading with an unknown role word (``# tool``) starts an entry of its own, and a
    fence or HTML block left open ends at the next role heading instead of swallowing the rest of the file.

    Args:
        source: The text (read with ``newline=""`` so that ``\r`` is kept).

    Returns:
        The entries, and how much of them later appends cannot change.
    """
    from markdown_it import MarkdownIt  # pylint: disable=import-outside-toplevel

    if source.startswith(BOM):
        source = source[1:]
        skipped = 1
    else:
        skipped = 0
    pieces = _LINE_BREAK.split(source)  # the same line breaks as markdown-it, so that token maps index `lines`
    lines = list(zip(pieces[::2], [*pieces[1::2], ""], strict=True))
    starts = list(itertools.accumulate((len(line) + len(line_break) for line, line_break in lines), initial=0))
    parser = MarkdownIt("commonmark").disable("inline")  # block structure only: inline tokens keep their text
    headings: list[tuple[int, int, str, str | None]] = []  # (first line, first content line, role, model)
    first = 0
    stable_line: int | None = None
    while first < len(lines):
        tokens = parser.parse(source[starts[first] :])
        count = len(lines) - first - (1 if lines[-1] == ("", "") else 0)
        cut = None
        for index, token in enumerate(tokens):
            if token.level != 0 or not token.map:
                continue
            if token.type == "heading_open" and token.tag == "h1":
                parsed = _parse_heading(tokens[index + 1].content)  # the heading's inline token
                if parsed:
                    headings.append((first + token.map[0], first + token.map[1], *parsed))
            cut = _swallowing_block_end(token, lines, first, count)
            if cut is not None:
                break
        if cut is None:
            break
        if stable_line is None:  # the repaired block's entry could change once the block gets closed
            stable_line = headings[-1][0] if headings else 0
        first = cut
    entries: list[tuple[str | None, str | None, str]] = []
    preamble = _content(lines[: headings[0][0] if headings else len(lines)])
    if preamble:
        entries.append((None, None, preamble))
    ends = [heading[0] for heading in headings[1:]] + ([len(lines)] if headings else [])
    for (_, start, role, model), end in zip(headings, ends, strict=True):
        entries.append((role, model, _content(lines[start:end])))
    last_heading = headings[-1][0] if headings else 0
    stable_line = last_heading if stable_line is None else min(stable_line, last_heading)
    stable_entries = (1 if preamble and stable_line else 0) + sum(1 for heading in headings if heading[0] < stable_line)
    return ParsedChatMd(entries, skipped + starts[stable_line], stable_entries)


def parse_chat_md(source: str) -> list[tuple[str | None, str | None, str]]:
    r"""Reads back the entries of a CHAT.md text (see `parse_chat_md_entries`).

    Args:
        source: The file contents (read with ``newline=""`` so that ``\r`` is kept).

    Returns:
        A ``(role or None, model or None, text)`` tuple per entry.
    """
    return parse_chat_md_entries(source).entries
