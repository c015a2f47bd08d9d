"""A real terminal for tests: a private tmux server driven with send-keys and capture-pane."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
        if text:
            subprocess.run([*self._tmux, "send-keys", "-t", "t", "-l", text], check=True, timeout=30)
        if keys:
            subprocess.run([*self._tmux, "send-keys", "-t", "t", *keys], check=True, timeout=30)

    def close(self) -> None:
        subprocess.run([*self._tmux, "kill-server"], check=False, capture_output=True, timeout=30)


def start_terminals(tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    """Start programs in terminals (``start(command)``); every terminal is closed afterwards."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    terminals: list[Terminal] = []

    def start(command: str) -> Terminal:
        terminal = Terminal(tmp_path / f"tmux{len(terminals)}.sock", command, cwd=tmp_path)
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def user_prompts(screen: str) -> int:
    """How many ``USER:`` prompts the screen shows."""
    return len(re.findall(r"^USER:", screen, flags=re.MULTILINE))


def squash(text: str) -> str:
    """The words of ``text`` joined by single spaces (terminal wrapping and padding removed)."""
    return " ".join(text.split())
