"""Seed 000's dialog examples (SPEC §7): E4 with piped stdin, E3 on the local model in a real terminal (tmux)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from miniagents.ext._chat_md import parse_chat_md

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


class Terminal:
    """A program running in a real terminal: a private tmux server, driven with send-keys and capture-pane."""

    def __init__(self, socket: Path, command: str, cwd: Path, width: int = 100, height: int = 50) -> None:
        self._tmux = ["tmux", "-S", str(socket), "-f", os.devnull]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        # The shell ignores Ctrl+C for itself (a trap, so the program still gets it) and reports the exit status.
        wrapped = f'trap : INT; {command}; echo "EXIT STATUS: $?"'
        subprocess.run(
            [
                *self._tmux,
                *("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "-c", str(cwd)),
                *("bash", "--norc", "--noprofile", "-c", wrapped),
                *(";", "set-option", "-t", "t", "remain-on-exit", "on"),
            ],
            check=True,
            env=env,
            timeout=30,
        )
        self.snapshots: list[str] = []

    def screen(self) -> str:
        """The whole pane (with its scrollback), wrapped lines joined."""
        result = subprocess.run(
            [*self._tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "t"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = 90) -> str:
        """Poll the screen until ``condition(screen)`` holds; every screen seen is kept in `snapshots`."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            self.snapshots.append(screen)
            if condition(screen):
                return screen
            if "Traceback" in screen or ("EXIT STATUS" in screen and "EXIT STATUS" not in what):
                pytest.fail(f"the program ended while waiting for {what}:\n{screen}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{screen}")
            time.sleep(0.02)  # polling the screen: there is no event to wait on across the terminal

    def type(self, text: str, *keys: str) -> None:
        subprocess.run([*self._tmux, "send-keys", "-t", "t", "-l", text], check=True, timeout=30)
        if keys:
            subprocess.run([*self._tmux, "send-keys", "-t", "t", *keys], check=True, timeout=30)

    def close(self) -> None:
        subprocess.run([*self._tmux, "kill-server"], check=False, capture_output=True, timeout=30)


@pytest.fixture
def terminal_factory(tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    terminals: list[Terminal] = []

    def start(command: str) -> Terminal:
        terminal = Terminal(tmp_path / "tmux.sock", command, cwd=tmp_path)
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def user_prompts(screen: str) -> int:
    return len(re.findall(r"^USER:", screen, flags=re.MULTILINE))


def squash(text: str) -> str:
    return " ".join(text.split())


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
    assert "improve the styling" not in (tmp_path / "CHAT.md").read_text(encoding="utf-8")  # the system prompt
