"""Tests for the streaming text splitter."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniagents._text_splitter import EventKind, SplitEvent, TextSplitter

F = "```"
EXAMPLE = f"A\n\nB\n\n{F}py\nx\n\ny\n{F}\nC"
EXAMPLE_MESSAGES = ["A", "B", f"{F}py\nx\n\ny\n{F}", "C"]


def reference_split(text: str, delimiter: str = "\n\n", fence: str | None = F) -> list[str]:
    """Splits a whole string at once; the non-streaming reference semantics."""
    segments, start, i, in_code = [], 0, 0, False
    while i < len(text):
        if fence is not None and text.startswith(fence, i):
            if in_code:
                i += len(fence)
                segments.append(text[start:i])
                start = i
            else:
                segments.append(text[start:i])
                start = i
                i += len(fence)
            in_code = not in_code
        elif not in_code and text.startswith(delimiter, i):
            segments.append(text[start:i])
            i += len(delimiter)
            start = i
        else:
            i += 1
    segments.append(text[start:])
    stripped = (segment.strip("\n") for segment in segments)
    return [segment for segment in stripped if segment and not segment.isspace()]


class Recorder:
    """Applies splitter events, checking their grammar and recording progress."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.current: str | None = None

    def apply(self, events: list[SplitEvent]) -> None:
        for event in events:
            if event.kind is EventKind.START:
                assert self.current is None, "START inside a message"
                assert event.text == ""
                self.current = ""
            elif event.kind is EventKind.TEXT:
                assert self.current is not None, "TEXT outside a message"
                assert event.text, "empty TEXT"
                self.current += event.text
            else:
                assert event.kind is EventKind.END
                assert self.current, "END without TEXT"
                self.done.append(self.current)
                self.current = None

    @property
    def emitted(self) -> int:
        """Number of message characters emitted so far."""
        return sum(map(len, self.done)) + len(self.current or "")


def split(chunks: list[str], delimiter: str = "\n\n", fence: str | None = F) -> list[str]:
    """Streams ``chunks`` through a splitter and returns the messages."""
    splitter, recorder = TextSplitter(delimiter, fence), Recorder()
    for chunk in chunks:
        recorder.apply(splitter.feed(chunk))
    recorder.apply(splitter.close())
    assert recorder.current is None
    return recorder.done


def cut(text: str, points: list[int]) -> list[str]:
    """Cuts ``text`` into chunks at the given points."""
    bounds = [0, *sorted(set(points)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def tokenized(draw: st.DrawFn, text: str) -> list[str]:
    """Draws a random tokenization of ``text`` (possibly with empty chunks)."""
    points = draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 2))
    return cut(text, points) + draw(st.sampled_from([[], [""]]))


random_text = st.text(st.sampled_from("\n\n\n```  ab-"), max_size=40)


# --- the SPEC example -------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        [EXAMPLE],
        list(EXAMPLE),
        ["A\n", "\nB\n", "\n`", "``py\nx\n", "\ny\n``", "`\nC"],
        ["A\n\nB\n\n``", "`py\nx\n\ny\n`", "``", "\nC"],
        ["", "A", "", "\n\n", "B\n\n", F, "py\nx\n\ny\n", F, "\n", "C", ""],
    ],
)
def test_example_fixed_tokenizations(chunks: list[str]) -> None:
    assert "".join(chunks) == EXAMPLE
    assert split(chunks) == EXAMPLE_MESSAGES


@given(tokenized(EXAMPLE))
def test_example_random_tokenizations(chunks: list[str]) -> None:
    assert split(chunks) == EXAMPLE_MESSAGES


def test_reference_agrees_with_example() -> None:
    assert reference_split(EXAMPLE) == EXAMPLE_MESSAGES


# --- edge cases -------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "\n\n", "\n\n\n", "\n\n\n\n\n", " \n\n \t\n\n  ", "   "])
def test_delimiter_or_whitespace_only_input_gives_no_messages(text: str) -> None:
    assert split([text]) == []
    assert split(list(text)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"A\n\n{F}py\nx\n\ny", ["A", f"{F}py\nx\n\ny"]),
        (f"A{F}py\nx\n\n", ["A", f"{F}py\nx"]),
        (f"A\n\n{F}", ["A", F]),
        (f"{F}{F}{F}", [F + F, F]),
    ],
)
def test_unclosed_fence_runs_to_end(text: str, expected: list[str]) -> None:
    assert split([text]) == expected
    assert split(list(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{F}x{F}", [f"{F}x{F}"]),
        (f"{F}\n\n{F}", [f"{F}\n\n{F}"]),
        (f"{F}x{F}after", [f"{F}x{F}", "after"]),
        (f"before{F}x{F}", ["before", f"{F}x{F}"]),
        (f"a {F}x{F} b", ["a ", f"{F}x{F}", " b"]),
        (f"\n\n{F}a{F}\n\n{F}b{F}\n\n", [f"{F}a{F}", f"{F}b{F}"]),
        (f"{F}{F}", [F + F]),
    ],
)
def test_fences_at_start_and_end(text: str, expected: list[str]) -> None:
    assert split([text]) == expected
    assert split(list(text)) == expected


def test_code_block_delimiter_none_splits_inside_fences() -> None:
    text = f"A\n\n{F}py\nx\n\ny\n{F}\nC"
    assert split([text], fence=None) == ["A", f"{F}py\nx", f"y\n{F}\nC"]
    assert split(list(text), fence=None) == ["A", f"{F}py\nx", f"y\n{F}\nC"]


def test_custom_delimiter() -> None:
    text = "a---b------c\n\nd---"
    assert split([text], delimiter="---") == ["a", "b", "c\n\nd"]
    assert split(list(text), delimiter="---") == ["a", "b", "c\n\nd"]
    fenced = f"x---{F}1---2{F}---y"
    assert split(list(fenced), delimiter="---") == ["x", f"{F}1---2{F}", "y"]


def test_custom_code_block_delimiter() -> None:
    assert split(list("a\n\n%%x\n\ny%%b"), fence="%%") == ["a", "%%x\n\ny%%", "b"]


def test_only_newlines_are_stripped() -> None:
    assert split(["\n  A \n\n\n\n \nB\n \n"]) == ["  A ", " \nB\n "]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        TextSplitter("")
    with pytest.raises(ValueError):
        TextSplitter(code_block_delimiter="")


def test_feed_after_close_and_double_close() -> None:
    splitter = TextSplitter()
    assert splitter.feed("x\n") == [SplitEvent(EventKind.START), SplitEvent(EventKind.TEXT, "x")]
    assert splitter.close() == [SplitEvent(EventKind.END)]
    assert splitter.close() == []
    with pytest.raises(RuntimeError):
        splitter.feed("y")


# --- streaming ----------------------------------------------------------------


def test_streams_without_needless_holding_back() -> None:
    splitter = TextSplitter()
    assert splitter.feed("Hello wor") == [SplitEvent(EventKind.START), SplitEvent(EventKind.TEXT, "Hello wor")]
    assert splitter.feed("ld\n") == [SplitEvent(EventKind.TEXT, "ld")]  # the newline may be trailing
    assert splitter.feed("\n") == [SplitEvent(EventKind.END)]
    assert splitter.feed("  \n ") == []  # may still be a whitespace-only segment
    assert splitter.feed("x``") == [SplitEvent(EventKind.START), SplitEvent(EventKind.TEXT, "  \n x")]
    assert splitter.feed("`co") == [
        SplitEvent(EventKind.END),
        SplitEvent(EventKind.START),
        SplitEvent(EventKind.TEXT, "```co"),
    ]
    assert splitter.feed("de\n\n") == [SplitEvent(EventKind.TEXT, "de")]
    assert splitter.feed("more") == [SplitEvent(EventKind.TEXT, "\n\nmore")]
    assert splitter.close() == [SplitEvent(EventKind.END)]


def test_message_starts_only_on_non_whitespace() -> None:
    splitter = TextSplitter()
    assert splitter.feed("\n \n\t") == []
    assert splitter.feed("\n\n") == []  # whitespace-only segment dropped
    assert splitter.feed("\n\nz") == [SplitEvent(EventKind.START), SplitEvent(EventKind.TEXT, "z")]
    assert splitter.close() == [SplitEvent(EventKind.END)]


def check_streaming(chunks: list[str], delimiter: str, fence: str | None) -> None:
    """Checks streamed output against the reference after every chunk."""
    text = "".join(chunks)
    final = reference_split(text, delimiter, fence)
    longest = max(len(delimiter), len(fence or ""))
    splitter, recorder = TextSplitter(delimiter, fence), Recorder()
    prefix = ""
    for chunk in chunks:
        recorder.apply(splitter.feed(chunk))
        prefix += chunk
        # Everything emitted so far agrees with the final result.
        assert recorder.done == final[: len(recorder.done)]
        if recorder.current is not None:
            assert final[len(recorder.done)].startswith(recorder.current)
        # Nothing is held back needlessly: at most a partial delimiter/fence
        # plus the whitespace run right before it.
        before_partial = prefix[: max(0, len(prefix) - longest + 1)]
        pending_ws = len(before_partial) - len(before_partial.rstrip())
        expected = sum(map(len, reference_split(prefix, delimiter, fence)))
        assert expected - recorder.emitted <= len(delimiter) + len(fence or "") + pending_ws
    recorder.apply(splitter.close())
    assert recorder.current is None
    assert recorder.done == final


@settings(max_examples=500)
@given(st.data(), random_text)
def test_matches_reference_default_delimiters(data: st.DataObject, text: str) -> None:
    check_streaming(data.draw(tokenized(text)), "\n\n", F)


@settings(max_examples=200)
@given(random_text)
def test_matches_reference_char_by_char(text: str) -> None:
    check_streaming(list(text), "\n\n", F)
    check_streaming([text], "\n\n", F)


@settings(max_examples=500)
@given(
    st.data(),
    st.text(st.sampled_from("\n\n`` ab-"), max_size=40),
    st.sampled_from(["\n\n", "---", "\n", "a", "ab", "aba", "`a"]),
    st.sampled_from([F, None, "`", "ba", "b``", "abab", "a`"]),
)
def test_matches_reference_custom_delimiters(data: st.DataObject, text: str, delimiter: str, fence: str | None) -> None:
    check_streaming(data.draw(tokenized(text)), delimiter, fence)
