"""Development entry point that needs only Python 3.10+ and pip: ``python scripts/dev.py chat|test|check|bench``.

Every command first makes sure a virtual environment in ``.venv`` holds the project (editable) with every extra.
llama-cpp-python is compiled portably (``-DGGML_NATIVE=OFF``), so pip's cached wheel runs on any x86-64 CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
EXTRAS = {"chat": "all", "test": "all,dev,test-servers", "check": "all,dev", "bench": "dev"}


def ensure_environment(extras: str) -> None:
    """Create ``.venv`` if needed and install the project with ``extras`` into it."""
    if not PYTHON.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=OFF")}
    command = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f".[{extras}]"]
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def run(*command: str) -> int:
    """Run a command from the virtual environment and return its exit code."""
    return subprocess.run([str(PYTHON), *command], cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    """Dispatch ``chat``, ``test``, ``check`` or ``bench``; extra arguments go to the underlying tool."""
    if not argv or argv[0] not in EXTRAS:
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment(EXTRAS[command])
    if command == "chat":
        return run("-m", "miniagents", "chat", *rest)
    if command == "test":
        return run("-m", "pytest", *rest)
    if command == "bench":
        return run("-m", "benchmarks", *rest)
    checks = [
        ("-m", "ruff", "format", "--check", "miniagents", "tests", "examples", "benchmarks", "scripts"),
        ("-m", "ruff", "check", "miniagents", "tests", "examples", "benchmarks", "scripts"),
        ("-m", "mypy"),
    ]
    return max(run(*check) for check in checks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
