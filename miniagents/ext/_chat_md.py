r"""The CHAT.md chat-history file format (SPEC §6.5): streaming writer and reader.

Each message is written as a blank line, a header line ``role`` or ``role / model``, a line of 40 ``=`` (so the
header is a setext level-1 Markdown heading), the escaped content, and a final newline::

    \nuser\n========================================\nhi\n

Reading parses the file as CommonMark (markdown-it-py) and splits it at the top-level h1 headings whose text is
``<role>[ / <model>]``, where the role is ``user``, ``assistant`` or ``system`` (any case) and the model has no
whitespace. Other headings are ordinary content; text before the first recognized heading is ignored.

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

import itertools
import re

HEADER_UNDERLINE = "=" * 40
ROLES = ("user", "assistant", "system")

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
    left, _, right = text.partition("/")
    role, model = left.strip().lower(), right.strip()
    if role not in ROLES or any(char.isspace() for char in model):
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


def parse_chat_md(source: str) -> list[tuple[str, str | None, str]]:
    r"""Reads back the messages of a CHAT.md file.

    Args:
        source: The file contents (read with ``newline=""`` so that ``\r`` is kept).

    Returns:
        A ``(role, model or None, text)`` tuple per message.
    """
    from markdown_it import MarkdownIt  # pylint: disable=import-outside-toplevel

    pieces = _LINE_BREAK.split(source)  # the same line breaks as markdown-it, so that token maps index `lines`
    lines = list(zip(pieces[::2], [*pieces[1::2], ""], strict=True))
    tokens = MarkdownIt("commonmark").parse(source)
    headings = []  # (first line, first content line, role, model)
    for token, inline in itertools.pairwise(tokens):
        if token.type == "heading_open" and token.tag == "h1" and token.level == 0 and token.map:
            parsed = _parse_heading(inline.content)
            if parsed:
                headings.append((token.map[0], token.map[1], *parsed))
    if not headings:
        return []
    ends = [heading[0] for heading in headings[1:]] + [len(lines)]
    return [
        (role, model, _content(lines[start:end])) for (_, start, role, model), end in zip(headings, ends, strict=True)
    ]
