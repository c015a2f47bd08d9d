"""Tests for the CHAT.md format: writing (streamed, escaped) and reading back."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniagents.ext import _chat_md
from miniagents.ext._chat_md import (
    HEADER_UNDERLINE,
    ROLES,
    ContentEscaper,
    format_header,
    format_message,
    is_header_line,
    is_header_line_start,
    parse_chat_md,
    parse_chat_md_entries,
    parse_chat_md_entries_markdown_it,
)

SPEC_EXAMPLE = "\nuser\n" + "=" * 40 + "\nhi\n" + "\nassistant / claude-3-5-sonnet-20240620\n" + "=" * 40 + "\nHello!\n"


def _stream(role, model, tokens):
    escaper = ContentEscaper()
    return format_header(role, model) + "".join(escaper.feed(token) for token in tokens) + escaper.finish()


def test_spec_example_is_byte_exact():
    assert HEADER_UNDERLINE == "=" * 40
    assert ROLES == ("user", "assistant", "system")
    written = _stream("user", None, ["hi"]) + _stream("assistant", "claude-3-5-sonnet-20240620", ["Hel", "lo", "!"])
    assert written == SPEC_EXAMPLE
    assert (
        format_message("user", None, "hi") + format_message("assistant", "claude-3-5-sonnet-20240620", "Hello!")
        == SPEC_EXAMPLE
    )
    assert parse_chat_md(SPEC_EXAMPLE) == [("user", None, "hi"), ("assistant", "claude-3-5-sonnet-20240620", "Hello!")]


def test_empty_model_and_empty_text():
    assert format_header("user", "") == "\nuser\n" + "=" * 40 + "\n"
    assert format_message("assistant", None, "") == "\nassistant\n" + "=" * 40 + "\n\n"
    assert parse_chat_md(format_message("assistant", None, "") + format_message("user", None, "x")) == [
        ("assistant", None, ""),
        ("user", None, "x"),
    ]


def test_ordinary_text_is_written_verbatim():
    text = "Some *markdown*:\n\n- a list\n> a quote\n#hashtag and `code`\n    indented # x\n\tint x;\n1. one\n---\nend"
    escaper = ContentEscaper()
    assert escaper.feed(text) + escaper.finish() == text + "\n"


def test_escapes_special_lines():
    text = "# user\n===\n```\n~~~ x\n<pre>\n<!-- c\n\\back\n   # system\n#\nplain"
    expected = "\\# user\n\\===\n\\```\n\\~~~ x\n\\<pre>\n\\<!-- c\n\\\\back\n\\   # system\n#\nplain\n"
    escaper = ContentEscaper()
    assert escaper.feed(text) + escaper.finish() == expected
    assert parse_chat_md(format_message("user", None, text)) == [("user", None, text)]


def test_blank_edge_lines_round_trip():
    for text in ["\nx", "x\n", "\n\nx\n\n", " ", "\n", "\r\n", "x\r", "  \n\t", "\\\n"]:
        assert parse_chat_md(format_message("system", None, text)) == [("system", None, text)], repr(text)


def test_human_written_atx_file():
    source = "# user\nhello\n# assistant / gpt-4\nhi"
    assert parse_chat_md(source) == [("user", None, "hello"), ("assistant", "gpt-4", "hi")]


def test_human_written_setext_and_mixed_case():
    source = "User\n===\n\nhello\n\n  world\n\nAssistant /  gpt-4o \n=\n\nhi there\n\n\n# SYSTEM\nbe nice\n"
    assert parse_chat_md(source) == [
        ("user", None, "hello\n\n  world"),
        ("assistant", "gpt-4o", "hi there"),
        ("system", None, "be nice"),
    ]


def test_heading_inside_code_block_is_content():
    source = "# user\nlook:\n```\n# user\nassistant\n===\n```\n~~~\n# system\n~~~\n    # assistant\n# assistant\nok"
    assert parse_chat_md(source) == [
        ("user", None, "look:\n```\n# user\nassistant\n===\n```\n~~~\n# system\n~~~\n    # assistant"),
        ("assistant", None, "ok"),
    ]


def test_only_top_level_h1_headings_with_a_role_word_count():
    source = "# user\n- # assistant\n> # system\n## assistant\n# hello world\n# user: hi\n\nx"
    assert parse_chat_md(source) == [
        ("user", None, "- # assistant\n> # system\n## assistant\n# hello world\n# user: hi\n\nx")
    ]


def test_heading_with_whitespace_in_model_is_content():
    source = "# user\nhi\n# assistant / gpt 4\nstill user\n# assistant / a/b\nyes"
    assert parse_chat_md(source) == [
        ("user", None, "hi\n# assistant / gpt 4\nstill user"),
        ("assistant", "a/b", "yes"),
    ]


def test_text_before_first_heading_is_an_entry_without_a_role():
    source = "preamble\n\n# not a role\ntext\n# system\nbe brief\n"
    assert parse_chat_md(source) == [(None, None, "preamble\n\n# not a role\ntext"), ("system", None, "be brief")]
    assert parse_chat_md("no headings\n") == [(None, None, "no headings")]
    assert parse_chat_md("\n \n") == []
    assert parse_chat_md("") == []


def test_a_bom_is_ignored():
    assert parse_chat_md("\ufeff" + SPEC_EXAMPLE) == parse_chat_md(SPEC_EXAMPLE)
    assert parse_chat_md("\ufeff# user\nhi") == [("user", None, "hi")]


_RULE = "=" * 40


def test_an_unknown_role_is_an_entry_of_its_own_in_a_written_heading():
    """A heading as the writer writes it (a blank line, the role line, 40 ``=``) starts an entry whatever its role."""
    source = f"# user\nhi\n\ntool / fn-1\n{_RULE}\nresult\n\nTool\n{_RULE}\nmore\n# assistant\nok"
    expected = [("user", None, "hi"), ("tool", "fn-1", "result"), ("tool", None, "more"), ("assistant", None, "ok")]
    assert parse_chat_md(source) == expected
    assert parse_chat_md_entries_markdown_it(source).entries == expected
    assert parse_chat_md(format_message("Tool", "fn-1", "result")) == [("tool", "fn-1", "result")]


_NOT_A_ROLE = {  # hand-written headings that are not role headings, and a line after each
    "atx-notes": "# Notes\nsome notes",
    "atx-tool": "# Tool\nresult",
    "atx-tool-model": "# tool / fn-1\nresult",
    "setext-3": "Notes\n===\nsome notes",
    "setext-1": "Notes\n=\nx",
    "setext-39": f"notes\n{_RULE[1:]}\nx",
    "setext-41": f"Notes\n{_RULE}=\nx",
}


@pytest.mark.parametrize("block", _NOT_A_ROLE.values(), ids=_NOT_A_ROLE)
@pytest.mark.parametrize(
    "user, assistant",
    [("# user", "# assistant"), (f"\nuser\n{_RULE}", f"\nassistant\n{_RULE}")],
    ids=["between-atx", "between-written"],
)
def test_a_heading_without_a_known_role_is_content(block, user, assistant):
    """Only a heading the writer writes may start an entry of an unknown role; any other one is kept as text."""
    source = f"{user}\nhi\n\n{block}\n{assistant}\nok\n"
    expected = [("user", None, f"hi\n\n{block}"), ("assistant", None, "ok")]
    assert parse_chat_md(source) == expected
    assert parse_chat_md_entries_markdown_it(source).entries == expected
    crlf = "\ufeff" + source.replace("\n", "\r\n")
    assert parse_chat_md(crlf) == [(role, model, text.replace("\n", "\r\n")) for role, model, text in expected]


def test_a_written_underline_after_a_line_of_text_is_content():
    source = f"\nuser\n{_RULE}\nhi\ntool\n{_RULE}\nx\n"  # not after a blank line: not a written heading
    assert parse_chat_md(source) == [("user", None, f"hi\ntool\n{_RULE}\nx")]


def test_a_heading_without_a_known_role_before_the_first_entry_is_in_the_preamble():
    for source in ("# Notes\nintro\n\n# user\nhi\n", f"# Notes\nintro\n\nuser\n{_RULE}\nhi\n"):
        expected = [(None, None, "# Notes\nintro"), ("user", None, "hi")]
        assert parse_chat_md(source) == expected
        assert parse_chat_md_entries_markdown_it(source).entries == expected
    assert parse_chat_md("Notes\n===\n") == [(None, None, "Notes\n===")]
    assert parse_chat_md("# notes") == [(None, None, "# notes")]


def test_a_heading_without_a_known_role_does_not_end_an_open_block():
    source = "# user\n```\ncode\n# Notes\nmore\n# assistant\nok\n"
    expected = [("user", None, "```\ncode\n# Notes\nmore"), ("assistant", None, "ok")]
    assert parse_chat_md(source) == expected
    assert parse_chat_md_entries_markdown_it(source).entries == expected


def test_text_with_heading_lines_round_trips():
    text = f"# Notes\nsome notes\n\nNotes\n===\n\ntool\n{_RULE}\nx\n\n# Tool\n  # user\nuser\n=\nend"
    for role in ROLES:
        source = format_message("user", None, "q") + format_message(role, "m", text) + format_message("user", None, "z")
        expected = [("user", None, "q"), (role, "m", text), ("user", None, "z")]
        assert parse_chat_md(source) == expected
        assert parse_chat_md_entries_markdown_it(source).entries == expected


def test_an_unclosed_fence_ends_at_the_next_role_heading():
    source = "# user\nhi\n# assistant\n```py\ncode\n# user\nnext\n\nassistant\n===\nlater ``` x\n"
    assert parse_chat_md(source) == [
        ("user", None, "hi"),
        ("assistant", None, "```py\ncode"),
        ("user", None, "next"),
        ("assistant", None, "later ``` x"),
    ]
    # an open HTML comment (or <pre>) is repaired the same way; a closed one keeps its headings as content
    assert parse_chat_md("# user\n<!-- c\n# assistant\nx\n") == [("user", None, "<!-- c"), ("assistant", None, "x")]
    assert parse_chat_md("# user\n<!--\n# assistant\n-->\n") == [("user", None, "<!--\n# assistant\n-->")]


def test_a_block_left_open_never_swallows_a_written_heading():
    """An open fence or HTML comment costs only its entry, even when a later block could close it."""
    written = [
        ("user", None, "What is 2+2?"),
        ("assistant", None, "4"),
        ("user", None, "Explain a pipeline"),
        ("assistant", "m", "Data flows: input --> parse --> output\n```\ncode\n```"),
    ]
    tail = "".join(format_message(*message) for message in written)
    for opened in ("<!-- TODO: ask about caching", "```python\nprint(1)", "~~~", "<pre>", "<?php"):
        source = f"# user\n{opened}\n" + tail  # a hand-written entry with a block left open
        expected = [("user", None, opened), *written]
        assert parse_chat_md(source) == expected, opened
        assert parse_chat_md_entries_markdown_it(source).entries == expected, opened
        assert parse_chat_md("\ufeff" + source.replace("\n", "\r\n")) == [  # a BOM, CRLF line breaks
            (role, model, text.replace("\n", "\r\n")) for role, model, text in expected
        ], opened
    # a heading that is not the writer's (ATX, or a short underline) is still read as CommonMark says
    assert parse_chat_md("# user\n```\nopen\n# assistant\n```\nx\n") == [
        ("user", None, "```\nopen\n# assistant\n```\nx")
    ]
    assert parse_chat_md("# user\n<!--\n\nassistant\n===\n-->\n") == [("user", None, "<!--\n\nassistant\n===\n-->")]


def test_entries_after_a_repaired_block_are_final():
    """A block repaired in one entry does not make every later entry unstable (they would be parsed again)."""
    messages = [("user" if index % 2 else "assistant", None, f"#{index} text") for index in range(12)]
    source = "".join(format_message(*message) for message in messages).replace("#3 text", "#3 open\n```\n\nx", 1)
    parsed = parse_chat_md_entries(source)
    assert parsed.entries[3] == ("user", None, "#3 open\n```\n\nx")
    assert parsed.stable_entries == len(messages) - 1
    assert source[parsed.stable_chars :] == format_message(*messages[-1])[1:]
    assert parsed == parse_chat_md_entries_markdown_it(source)


def test_closed_fences_at_column_0_are_read_without_markdown_it(monkeypatch: pytest.MonkeyPatch):
    """A hand-written file with raw code blocks (headings inside them are content) needs no CommonMark parser."""

    def no_parser():
        raise AssertionError("markdown-it was used")

    rule = "=" * 40
    block = "````python\n# a comment\n\nuser\n===\n```\n~~~\n````\n"
    source = "".join(f"\n{role}\n{rule}\nHere:\n{block}and more.\n" for role in ("user", "assistant") * 3)
    expected = [(role, None, f"Here:\n{block}and more.") for role in ("user", "assistant") * 3]
    assert parse_chat_md_entries_markdown_it(source).entries == expected
    monkeypatch.setattr(_chat_md, "_block_parser", no_parser)
    assert parse_chat_md(source) == expected
    tilde = "User\n===\n~~~~ x\n# assistant\n```\n  ~~~~~\n\nsystem\n=\nok\n"  # short underlines too
    assert parse_chat_md(tilde) == [("user", None, "~~~~ x\n# assistant\n```\n  ~~~~~"), ("system", None, "ok")]


def test_stable_part_excludes_the_last_entry_and_repaired_ones():
    two = format_message("user", None, "a") + format_message("assistant", None, "b")
    parsed = parse_chat_md_entries(two)
    # up to the last heading's line (after the blank line that starts its header)
    assert (parsed.stable_chars, parsed.stable_entries) == (len(format_message("user", None, "a")) + 1, 1)
    assert parse_chat_md_entries("").stable_entries == 0
    assert parse_chat_md_entries("pre\n# user\nx").stable_entries == 1  # the preamble is final
    repaired = "# user\na\n# assistant\n```\n# user\nb\n# assistant\nc\n"
    assert parse_chat_md_entries(repaired)[1:] == (len("# user\na\n"), 1)
    # a heading without a line break after it may still turn into text ("# user x", "====x")
    assert parse_chat_md_entries("# user\na\n# assistant")[1:] == (0, 0)
    assert parse_chat_md_entries(two + "\nuser\n" + "=" * 40)[1:] == (parsed.stable_chars, 1)
    assert parse_chat_md_entries("\ufeff# user\na\n").stable_chars == 0  # nothing final, not even the BOM


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_incremental_parsing_equals_whole_parsing(data):
    messages = data.draw(_MESSAGES)
    source = "".join(format_message(role, model, text) for role, model, text in messages)
    cut = data.draw(st.integers(0, len(source)))
    head = parse_chat_md_entries(source[:cut])
    tail = parse_chat_md_entries(source[head.stable_chars :])
    assert head.entries[: head.stable_entries] + tail.entries == parse_chat_md(source)


def test_system_role_round_trips():
    source = format_message("system", None, "You are helpful.") + format_message("user", "", "hi")
    assert parse_chat_md(source) == [("system", None, "You are helpful."), ("user", None, "hi")]


def test_appending_a_second_session(tmp_path):
    path = tmp_path / "CHAT.md"
    sessions = [
        [("user", None, "hi"), ("assistant", "m-1", "Hello!\n```py\n# user\n")],
        [("user", None, "# assistant\nagain"), ("assistant", "m-2", "ok\n\n")],
    ]
    for session in sessions:
        with path.open("a", encoding="utf-8", newline="") as file:
            for role, model, text in session:
                escaper = ContentEscaper()
                file.write(format_header(role, model))
                for char in text:
                    file.write(escaper.feed(char))
                file.write(escaper.finish())
    assert parse_chat_md(path.read_text(encoding="utf-8")) == sessions[0] + sessions[1]


def test_carriage_returns_survive_a_file(tmp_path):
    path = tmp_path / "CHAT.md"
    text = "a\r\nb\rc\r"
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write(format_message("user", None, text))
    with path.open(encoding="utf-8", newline="") as file:
        assert parse_chat_md(file.read()) == [("user", None, text)]


def test_a_last_line_like_a_header_after_an_empty_line_is_followed_by_an_empty_line():
    """So that a whole message never ends like a header cut before its "=" line (which a writer drops)."""
    for text in ["a\n\nuser", "a\n\nAssistant / gpt-4o", "a\r\n\r\nsystem", "a\r\rsystem / m", "a\n\nuse" + "r"]:
        escaper = ContentEscaper()
        written = "".join(map(escaper.feed, text)) + escaper.finish()  # as it streams
        assert written == text + "\n\n", repr(text)
        assert parse_chat_md(format_header("user", None) + written) == [("user", None, text)]
    for text in ["a\nuser", "\nuser", "user", "a\n\nuser x", "a\n\nthanks", "a\n \nuser", "a\n\nuser\n", "a\n\n#"]:
        assert not format_message("user", None, text).endswith("\n\n"), repr(text)


def test_header_lines_and_their_starts():
    for line in ["user", "System", "assistant / gpt-4o", "user / a/b"]:  # as `format_header` writes them
        assert is_header_line(line), line
        assert all(is_header_line_start(line[:end]) for end in range(1, len(line) + 1)), line
    assert is_header_line("ASSISTANT/m") and not is_header_line_start("ASSISTANT/")  # read, but never written
    for line in ["", " user", "tool", "user / a b", "users", "# user", "\\user", "user:"]:
        assert not is_header_line(line), line
    for start in ["", " u", "x", "users", "user /x", "user / a b", "=", "user  "]:
        assert not is_header_line_start(start), start


def test_writer_holds_back_only_the_undecided_line_start():
    escaper = ContentEscaper()
    assert escaper.feed("Hello") == "Hello"
    assert escaper.feed(" world\n  ") == " world\n"
    assert escaper.feed("  ") == ""
    assert escaper.feed("x") == "    x"
    assert escaper.feed("\n<") == "\n"
    assert escaper.feed("p") == ""
    assert escaper.feed("a") == "<pa"
    assert escaper.feed("\n#") == "\n"
    assert escaper.feed(" ") == "\\# "
    assert escaper.feed("\n") == "\n"
    assert escaper.finish() == "\\\n"


_FRAGMENTS = (  # biased alphabet so that special lines actually occur
    "\n|\n|\n|\r|\r\n| |  |   |    |\t|#|# |=|===|-|---|- |> |1. |*|`|```|~~~|<pre>|<!--|-->|<?|<div>|<script|\\|/"
    "|user|assistant|system|System| / |gpt-4|x|hello|\x00|\u00a0|\x0c"
    "|\nuser\n|\n# assistant\n|\nsystem / m\n|\n===\n|\n\nuser\n=\n|\n   # user\n|\n - ```\n"
).split("|")
_TEXT = st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=5), max_size=30).map("".join)
_MESSAGES = st.lists(
    st.tuples(st.sampled_from(ROLES), st.none() | st.sampled_from(["gpt-4", "a/b", "m#1", "x\\y"]), _TEXT),
    max_size=5,
)


def _cut(draw, text):
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    return [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(st.data(), _MESSAGES)
def test_any_text_round_trips(data, messages):
    source = "".join(_stream(role, model, _cut(data.draw, text)) for role, model, text in messages)
    assert parse_chat_md(source) == messages


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_char_by_char_equals_whole(text):
    whole = ContentEscaper()
    by_char = ContentEscaper()
    assert whole.feed(text) + whole.finish() == "".join(map(by_char.feed, text)) + by_char.finish()


def _is_plain(line):
    """A non-blank line that starts with a tab or with a character that cannot start an escaped construct."""
    return bool(line.strip(" \t")) and (line[0] == "\t" or line[0] not in " \\#=`~<")


_PLAIN_LINE = (
    st.lists(
        st.sampled_from([f for f in _FRAGMENTS if "\n" not in f and "\r" not in f])
        | st.text(st.characters(blacklist_characters="\r\n"), max_size=3),
        min_size=1,
        max_size=6,
    )
    .map("".join)
    .filter(_is_plain)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PLAIN_LINE | st.sampled_from(["", "  "]), min_size=1), st.sampled_from(["\n", "\r\n", "\r"]))
def test_plain_text_is_written_verbatim(lines, line_break):
    lines = ["a", *lines, "z"]  # blank first or last lines are escaped
    text = line_break.join(lines)
    assert format_message("user", None, text) == format_header("user", None) + text + "\n"


_MD_LINES = (  # lines that open, close or hide blocks, headings and containers (CommonMark), and plain ones
    "", "", "  ", "\t", "text", "more text", "user", "assistant / m", "System", "tool", "user / a b", " user",
    "user\x0b", "=", "===", "  ===", "    ===", "= =", "\t===", "# user", "#", "# assistant / m", "## user",
    "   # user", "\\# user", "```", "```python", "~~~", "````", "   ```", "    ```", "- ```", "> ```", "1. ```",
    "\\```", "` ``", "- a", "* b", "1. c", "10) d", "-", "> a", ">", "> # user", "- # user", ">>", "    code", "\tcode",
    "<!--", "-->", "<pre>", "</pre>", "<div>", "</div>", "<?", "?>", "<!X", "<![CDATA[", "]]>", "<a>", "<script>",
    "<\u017fcript>", "<Pre>", "<details>", "<!x", "a <b>", "# Notes", "Notes", "# tool", "Tool / m", "#  TOOL  #",
    "</script>", "***", "---", "___", "[a]: /u", "\\", "\\\\", "\\ ", "\ufeffuser", "\u212a", "\u212auser",
    "~~~~", "````", "```x`", "``` py", "```  ", "  ~~~~", "\t```", "[a]:", "- <div>", "> <div>", "<!-- c -->",
)  # fmt: skip
_BLOCK = st.one_of(
    st.lists(st.sampled_from(_MD_LINES) | st.text(max_size=4), min_size=1, max_size=6),  # raw lines
    st.tuples(st.sampled_from([*ROLES, "Tool"]), st.none() | st.just("m"), _TEXT).map(  # a written message
        lambda message: format_message(*message).split("\n")
    ),
    st.tuples(st.sampled_from(["user", "assistant / m", "tool", "user / a b", "# user"]), st.integers(0, 2)).map(
        lambda heading: ["", heading[0], "=" * 40][heading[1] :] if not heading[0].startswith("#") else [heading[0]]
    ),
)
_DOCUMENT = st.tuples(
    st.lists(_BLOCK, max_size=12).map(lambda blocks: [line for block in blocks for line in block]),
    st.sampled_from(["\n", "\n", "\r\n", "\r"]),
    st.booleans(),
).map(lambda doc: ("\ufeff" if doc[2] else "") + doc[1].join(doc[0]))


@settings(max_examples=1500, deadline=None)
@given(_DOCUMENT)
def test_the_line_scanner_reads_exactly_as_markdown_it(source):
    """The fast reader gives the same entries and the same stable part as markdown-it-py's, on random documents."""
    assert parse_chat_md_entries(source) == parse_chat_md_entries_markdown_it(source)


@settings(max_examples=1000, deadline=None)
@given(_DOCUMENT, st.data())
def test_the_stable_part_of_any_document_is_final(source, data):
    """Whatever is appended (a file grows by appends), the entries within the stable part stay as they are."""
    cut = data.draw(st.integers(0, len(source)))
    head = parse_chat_md_entries(source[:cut])
    tail = parse_chat_md_entries(source[head.stable_chars :])
    assert head.entries[: head.stable_entries] + tail.entries == parse_chat_md(source)


def test_the_line_scanner_decides_long_clean_stretches_and_hands_over_the_rest():
    messages = [
        ("user" if index % 2 else "assistant", None, f"#{index}\n```\ncode\n```\n- a\n\n<b>") for index in range(40)
    ]
    source = "".join(format_message(*message) for message in messages)
    assert parse_chat_md(source) == messages
    damaged = source.replace("\ncode\n", "\n```\ncode\n", 1)  # an unescaped fence that swallows headings …
    damaged = damaged.replace("#39", "```\n~~~")  # … and an unclosed one in the last message
    assert parse_chat_md_entries(damaged) == parse_chat_md_entries_markdown_it(damaged)


@settings(max_examples=300, deadline=None)
@given(_DOCUMENT, st.integers(1, 12))
def test_the_line_scanner_reads_in_chunks_like_at_once(source, chunk):
    """Split a few characters at a time (a megabyte in use): the same reading, "\\r\\n" and lone "\\r" included."""
    expected = parse_chat_md_entries_markdown_it(source)
    original = _chat_md._SCAN_CHUNK
    _chat_md._SCAN_CHUNK = chunk
    try:
        assert parse_chat_md_entries(source) == expected
        assert parse_chat_md_entries_markdown_it(source) == expected
    finally:
        _chat_md._SCAN_CHUNK = original
