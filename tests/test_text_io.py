"""Text that its encoding cannot hold: `REPLACE_UNENCODABLE` and `write_to_console`."""

from __future__ import annotations

import io

import pytest

from miniagents._text_io import REPLACE_UNENCODABLE, write_to_console


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
