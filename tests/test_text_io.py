"""Text that its encoding cannot hold: `REPLACE_UNENCODABLE` and `write_to_console`."""

from __future__ import annotations

import io

import pytest

from miniagents._text_io import REPLACE_UNENCODABLE, utf8_text, utf8_texts_in, write_to_console


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "caf\u00e9 \ufffd \u2713".encode()),  # a lone surrogate: U+FFFD
        ("cp1252", b"caf\xe9 ? ?"),  # no U+FFFD in cp1252: "?"; what it has stays
        ("ascii", b"caf? ? ?"),
    ],
)
def test_what_the_encoding_cannot_hold_is_replaced(encoding: str, expected: bytes) -> None:
    assert "caf\u00e9 \ud83d \u2713".encode(encoding, REPLACE_UNENCODABLE) == expected


def test_a_run_of_unencodable_characters_gets_one_replacement_each() -> None:
    assert "a\udc80\udcffb".encode("utf-8", REPLACE_UNENCODABLE) == "a\ufffd\ufffdb".encode()


def test_decoding_errors_are_not_handled() -> None:
    with pytest.raises(UnicodeDecodeError):
        b"\xff".decode("utf-8", REPLACE_UNENCODABLE)


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "tok \ufffd en \u2713\n".encode()), ("cp1252", b"tok ? en ?\n"), ("ascii", b"tok ? en ?\n")],
)
def test_write_to_console_writes_all_of_a_text_its_stdout_cannot_encode(
    encoding: str, expected: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding=encoding, newline="")  # errors="strict", as a console's stdout
    monkeypatch.setattr("sys.stdout", stdout)
    write_to_console("tok ")
    write_to_console("\ud83d en \u2713\n")  # (before: UnicodeEncodeError, and nothing of it written)
    assert buffer.getvalue() == expected


def test_a_surrogate_pair_in_one_write_is_written_as_its_character() -> None:
    assert "\ud83d\ude00 \ude00\ud83d".encode("utf-8", REPLACE_UNENCODABLE) == "\U0001f600 \ufffd\ufffd".encode()
    assert "\ud83d\ude00".encode("cp1252", REPLACE_UNENCODABLE) == b"?"  # (one character, which cp1252 lacks)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("half \ud83d", "half \ufffd"),
        ("\ude00 low first", "\ufffd low first"),
        ("a pair \ud83d\ude00 joined", "a pair \U0001f600 joined"),
        ("escaped file name report-\udcff.txt", "escaped file name report-\ufffd.txt"),
    ],
)
def test_utf8_text_joins_surrogate_pairs_and_replaces_lone_surrogates(text: str, expected: str) -> None:
    assert utf8_text(text) == expected
    assert utf8_text(text).encode("utf-8")  # (strict: no surrogate left)


@pytest.mark.parametrize("text", ["ascii", "caf\u00e9 \U0001f600 \u2713", ""])
def test_utf8_text_returns_a_text_without_surrogates_itself(text: str) -> None:
    assert utf8_text(text) is text


def test_utf8_texts_in_changes_every_string_of_a_request_in_place() -> None:
    tool_call = {"id": "c", "function": {"name": "f", "arguments": '{"q": "\ud83d"}'}}
    request = {"messages": [{"role": "user", "content": "a \ud83d"}, {"tool_calls": [tool_call], "n": 1}]}
    assert utf8_texts_in(request) is request
    assert request == {
        "messages": [
            {"role": "user", "content": "a \ufffd"},
            {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"q": "\ufffd"}'}}], "n": 1},
        ]
    }
    assert utf8_texts_in("\ud83d\ude00") == "\U0001f600"
