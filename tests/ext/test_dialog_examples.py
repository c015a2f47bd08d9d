"""Seed 000's dialog examples (SPEC §7): E4 with piped stdin, E3 on the local model in a real terminal (tmux)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from miniagents.ext._chat_md import parse_chat_md
from tests.terminal import Terminal, squash, user_prompts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BANNER = [
    "YOU ARE NOW IN A CHAT WITH AN AI ASSISTANT",
    "Press Enter to send your message.",
    "Press Ctrl+Space to insert a newline.",
    'Press Ctrl+C (or type "exit") to quit the conversation.',
]


def test_e4_custom_dialog_loop_with_piped_stdin() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_dialog_loop.py")],
        input="hi\nnice!\nbye\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    # With a pipe the typed text is not echoed, so each answer follows its "USER: " prompt on the same line.
    assert result.stdout == (
        'USER: ASSISTANT: You said "hi"\nUSER: ASSISTANT: You said "nice!"\nUSER: ASSISTANT: You said "bye"\nUSER: '
    )
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("EOFError: EOF when reading a line")


@pytest.mark.parametrize("how", ["exit", "ctrl-c"])
def test_e4_custom_dialog_loop_quits_on_exit_and_on_ctrl_c_without_a_traceback(
    how: str, terminal_factory: Callable[[str], Terminal]
) -> None:
    terminal = terminal_factory(shlex.join([sys.executable, str(EXAMPLES / "custom_dialog_loop.py")]))
    terminal.wait_for(lambda s: user_prompts(s) == 1, "the first prompt")
    terminal.type("hi", "Enter")
    terminal.wait_for(lambda s: user_prompts(s) == 2, "the second prompt")
    if how == "exit":
        terminal.type("exit", "Enter")
    else:
        terminal.type("", "C-c")  # the first Ctrl+C quits
    screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
    assert 'USER: hi\nASSISTANT: You said "hi"\nUSER: ' in screen
    assert "EXIT STATUS: 0" in screen
    assert "Traceback" not in screen
    assert 'You said "exit"' not in screen


@pytest.mark.timeout(300)
def test_e3_dialog_with_markdown_history_on_the_local_model(
    terminal_factory: Callable[[str], Terminal], tmp_path: Path
) -> None:
    terminal = terminal_factory(shlex.join([sys.executable, str(EXAMPLES / "dialog_with_markdown_history.py")]))
    screen = terminal.wait_for(lambda s: user_prompts(s) == 1, "the first prompt")
    for line in BANNER:
        assert line in screen
    assert screen.index(BANNER[-1]) < screen.index("USER:")

    for turn, text in enumerate(["hi", "got it, thanks!"], start=2):
        terminal.type(text, "Enter")
        screen = terminal.wait_for(lambda s, n=turn: user_prompts(s) == n, f"prompt number {turn}")
        assert f"USER: {text}\n\nLLAMA_CPP_AGENT: " in screen

    terminal.type("exit", "Enter")
    screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the program to end")
    assert "EXIT STATUS: 0" in screen
    assert "Traceback" not in screen

    messages = parse_chat_md((tmp_path / "CHAT.md").read_text(encoding="utf-8"))
    assert [(role, model) for role, model, _ in messages] == [
        ("user", None),
        ("assistant", "SmolLM2-135M-Instruct.Q4_1"),
        ("user", None),
        ("assistant", "SmolLM2-135M-Instruct.Q4_1"),
    ]
    assert [text for role, _, text in messages if role == "user"] == ["hi", "got it, thanks!"]
    for role, _, text in messages:
        if role == "assistant":  # what was streamed to the terminal is what the history recorded
            assert text.strip()
            assert f"LLAMA_CPP_AGENT: {squash(text)}" in squash(screen)
    # The system prompt is not recorded; the small model sometimes quotes it in an answer, so answers are left out.
    recorded = (tmp_path / "CHAT.md").read_text(encoding="utf-8")
    answers = [text.strip() for role, _, text in messages if role == "assistant"]
    assert all(answer in recorded for answer in answers)
    for answer in answers:  # (two answers may be the same: each is looked for before any is removed)
        recorded = recorded.replace(answer, "")
    assert "improve the styling" not in recorded


@pytest.mark.timeout(300)
def test_e3_ctrl_c_while_an_answer_streams_quits_quietly(
    terminal_factory: Callable[[str], Terminal], local_model_path: Path
) -> None:
    for _ in range(3):  # the model samples (temperature 0.8): an answer may end before Ctrl+C arrives; try again
        terminal = terminal_factory(shlex.join([sys.executable, str(EXAMPLES / "dialog_with_markdown_history.py")]))
        terminal.wait_for(lambda s: user_prompts(s) == 1, "the first prompt")
        terminal.type("Write a long story about dragons and their many adventures in the mountains.", "Enter")
        terminal.wait_for(
            lambda s: "LLAMA_CPP_AGENT: " in s and len(s.split("LLAMA_CPP_AGENT: ")[-1].split()) >= 3,
            "the answer to stream",
        )
        terminal.type("", "C-c")  # one Ctrl+C is enough
        screen = terminal.wait_for(lambda s: "EXIT STATUS" in s, "EXIT STATUS: the end of the program")
        assert "EXIT STATUS: 0" in screen
        assert "Traceback" not in screen
        if user_prompts(screen) == 1:
            return
    pytest.fail("every answer ended before Ctrl+C arrived")
