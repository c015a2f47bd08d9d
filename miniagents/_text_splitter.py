"""Streaming splitter that cuts a stream of text chunks into messages.

The text is cut at every ``delimiter`` found outside code blocks. A code block
(from an opening ``code_block_delimiter`` through the closing one, fences
included) is never cut and always forms a message of its own; an unclosed block
runs to the end of the input. Leading and trailing newlines are stripped from
every segment, and empty or whitespace-only segments are dropped.

Matching is leftmost-first: the input is scanned left to right and, at each
position, the fence is tried before the delimiter. Inside a code block only the
closing fence is looked for.

The splitter is a pure state machine: :meth:`TextSplitter.feed` takes a chunk
and returns the events it produced, and text is held back only while it is
genuinely ambiguous (a possible partial delimiter or fence at the end of the
buffer, newlines that may turn out to be trailing, or whitespace of a segment
that may turn out to be whitespace-only).
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class EventKind(enum.Enum):
    """Kind of a :class:`SplitEvent`."""

    START = "start"
    TEXT = "text"
    END = "end"


class SplitEvent(NamedTuple):
    """An event produced by :class:`TextSplitter`.

    Attributes:
        kind: ``START`` (a new message begins), ``TEXT`` (more text of the
            current message) or ``END`` (the current message is complete).
        text: The text for ``TEXT`` events (never empty); ``""`` otherwise.
    """

    kind: EventKind
    text: str = ""


START = SplitEvent(EventKind.START)
END = SplitEvent(EventKind.END)


def _scan(buf: str, start: int, patterns: tuple[str, ...], final: bool) -> tuple[int, int | None]:
    """Finds the first pattern match in ``buf[start:]``, leftmost first.

    At equal positions an earlier pattern in ``patterns`` wins.

    Args:
        buf: The text to scan.
        start: Where to start scanning.
        patterns: Non-empty patterns, highest priority first.
        final: Whether ``buf`` is the end of the input (so partial matches at
            its end can never complete).

    Returns:
        ``(pos, index)`` for a full match of ``patterns[index]`` at ``pos``, or
        ``(pos, None)`` when nothing can match before ``pos`` but a match might
        start at ``pos`` once more text arrives (``pos == len(buf)`` when no
        match is possible at all).
    """
    pos, found = len(buf), None
    for index, pattern in enumerate(patterns):
        hit = buf.find(pattern, start)
        if hit != -1 and hit < pos:
            pos, found = hit, index
    if final:
        return pos, found
    longest = max(len(pattern) for pattern in patterns)
    for at in range(max(start, len(buf) - longest + 1), min(pos + 1, len(buf))):
        tail = buf[at:]
        for index, pattern in enumerate(patterns):
            if at == pos and found is not None and index >= found:
                break  # a higher-priority full match at this position wins
            if len(tail) < len(pattern) and pattern.startswith(tail):
                return at, None
    return pos, found


class _Segment:
    """Emits one segment at a time, stripping newlines and dropping blanks."""

    def __init__(self) -> None:
        self._started = False
        self._pending = ""

    def add(self, text: str, events: list[SplitEvent]) -> None:
        """Adds text to the current segment, appending events to ``events``."""
        if not self._started:
            if not text or text.isspace():
                self._pending += text  # might still be a whitespace-only segment
                return
            self._started = True
            events.append(START)
            text = (self._pending + text).lstrip("\n")
            self._pending = ""
        body = text.rstrip("\n")  # trailing newlines are held: they may be stripped
        if not body:
            self._pending += text
            return
        out = self._pending + body  # the held newlines were not trailing after all
        if events and events[-1].kind is EventKind.TEXT:  # merge into one TEXT event
            events[-1] = SplitEvent(EventKind.TEXT, events[-1].text + out)
        else:
            events.append(SplitEvent(EventKind.TEXT, out))
        self._pending = text[len(body) :]

    def end(self, events: list[SplitEvent]) -> None:
        """Ends the current segment, appending events to ``events``."""
        if self._started:
            events.append(END)
        self._started = False
        self._pending = ""


class TextSplitter:
    r"""Incrementally splits a stream of text chunks into messages.

    Example:
        >>> splitter = TextSplitter()
        >>> events = splitter.feed("Hello\\n\\nWor") + splitter.close()
        >>> [(e.kind.value, e.text) for e in events]  # doctest: +NORMALIZE_WHITESPACE
        [('start', ''), ('text', 'Hello'), ('end', ''),
         ('start', ''), ('text', 'Wor'), ('end', '')]
    """

    def __init__(self, delimiter: str = "\n\n", code_block_delimiter: str | None = "```") -> None:
        """Initializes the splitter.

        Args:
            delimiter: Text at which messages are cut outside code blocks.
            code_block_delimiter: Fence opening and closing a code block, or
                ``None`` to disable code-block handling.

        Raises:
            ValueError: If ``delimiter`` or ``code_block_delimiter`` is empty.
        """
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        if code_block_delimiter == "":
            raise ValueError("code_block_delimiter must not be empty (use None to disable)")
        self._fence = code_block_delimiter
        self._outside = (delimiter,) if code_block_delimiter is None else (code_block_delimiter, delimiter)
        self._inside = (code_block_delimiter,) if code_block_delimiter else ()
        self._in_code = False
        self._buf = ""
        self._segment = _Segment()
        self._closed = False

    def feed(self, chunk: str) -> list[SplitEvent]:
        """Feeds the next chunk of text.

        Args:
            chunk: The next piece of the input (may be empty).

        Returns:
            The events made certain by this chunk (consecutive text of one
            message comes as a single ``TEXT`` event).

        Raises:
            RuntimeError: If the splitter has been closed.
        """
        if self._closed:
            raise RuntimeError("feed() called after close()")
        self._buf += chunk
        return self._process(final=False)

    def close(self) -> list[SplitEvent]:
        """Signals the end of the input, flushing held-back text.

        Returns:
            The remaining events, ending the last message if one is open.
            Calling ``close()`` again returns an empty list.
        """
        if self._closed:
            return []
        self._closed = True
        events = self._process(final=True)
        self._segment.end(events)
        return events

    def _process(self, final: bool) -> list[SplitEvent]:
        """Consumes the buffer as far as possible and returns the events."""
        events: list[SplitEvent] = []
        buf, start = self._buf, 0
        while start < len(buf):
            patterns = self._inside if self._in_code else self._outside
            pos, found = _scan(buf, start, patterns, final)
            if found is None:  # no complete match yet: emit what is certain
                self._segment.add(buf[start:pos], events)
                start = pos
                break
            matched = patterns[found]
            end = pos + len(matched)
            if self._in_code:  # closing fence: the code block ends here
                self._segment.add(buf[start:end], events)
                self._segment.end(events)
                self._in_code = False
            else:
                self._segment.add(buf[start:pos], events)
                self._segment.end(events)
                if self._fence is not None and found == 0:  # opening fence
                    self._segment.add(matched, events)
                    self._in_code = True
            start = end
        self._buf = buf[start:]
        return events
