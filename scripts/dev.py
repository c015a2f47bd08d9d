"""Development entry point that needs only Python 3.10+ and pip: ``python scripts/dev.py COMMAND [ARGS...]``.

Commands:

    chat         chat with the embedded local model (``miniagents chat``; ARGS go to it)
    test         run the test suite (pytest; ARGS go to it); fetches the local model file first
    check        ruff format --check, ruff check and mypy --strict
    bench        the benchmarks (``python -m benchmarks``; ARGS go to it)
    fetch-model  fetch the local model file into the cache (see the README, "The local model file")

Every command first makes sure a virtual environment in ``.venv`` holds the project (editable) with the extras
the command needs. Nothing is compiled: every dependency comes as a wheel. pip runs only when ``pyproject.toml``,
the extras or the Python version changed since the last install (a stamp file in ``.venv`` remembers them), so a
second start does not touch the network.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".miniagents-installed"
EXTRAS = {
    "chat": "local,openai,anthropic,sqlite,postgres",
    "test": "all,dev,test-servers",
    "check": "all,dev",
    "bench": "dev",
    "fetch-model": "local",
}
USAGE = """usage: python scripts/dev.py COMMAND [ARGS...]

commands:
    chat         chat with the embedded local model (ARGS go to `miniagents chat`, e.g. --model openai:gpt-4o-mini)
    test         run the test suite (ARGS go to pytest); fetches the local model file first
    check        ruff format --check, ruff check and mypy --strict
    bench        the benchmarks (ARGS go to `python -m benchmarks`)
    fetch-model  fetch the local model file into the user's cache"""
CHECKED_PATHS = ("miniagents", "tests", "examples", "benchmarks", "scripts")
FETCH_MODEL = """
import sys
from miniagents.ext.llm._local_models import LocalModelError
from miniagents.ext.llm.llama_cpp import default_model_path
try:
    default_model_path()
except LocalModelError as error:
    sys.exit(f"miniagents: {error}")
"""


def install_key(extras: str) -> str:
    """What an install depends on: ``pyproject.toml``, the extras and the Python version (a SHA-256, hex)."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"\0{extras}\0{sys.version_info[:2]}".encode())
    return digest.hexdigest()


def ensure_environment(extras: str) -> None:
    """Create ``.venv`` if needed and install the project with ``extras`` into it, unless already done.

    Raises:
        subprocess.CalledProcessError: pip failed.
    """
    key = install_key(extras)
    done = STAMP.read_text(encoding="utf-8").split() if STAMP.exists() and PYTHON.exists() else []
    if key in done:
        return
    print(f"dev.py: installing the project with [{extras}] into {VENV} (only when pyproject.toml changes)", flush=True)
    if not PYTHON.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
        done = []
    command = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f".[{extras}]"]
    subprocess.run(command, cwd=ROOT, check=True)
    STAMP.write_text("\n".join([*done, key]) + "\n", encoding="utf-8")


def run(*command: str) -> int:
    """Run a command with the virtual environment's Python and return its exit code."""
    return subprocess.run([str(PYTHON), *command], cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    """Dispatch a command (see the module's docstring); prints the usage and returns 2 without a valid one."""
    if not argv or argv[0] not in EXTRAS:
        problem = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"dev.py: {problem}\n\n{USAGE}", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    try:
        ensure_environment(EXTRAS[command])
    except subprocess.CalledProcessError as error:
        print(f"dev.py: installing into {VENV} failed (pip's exit code {error.returncode}, see above)", file=sys.stderr)
        return 1
    if command == "chat":
        return run("-m", "miniagents", "chat", *rest)
    if command == "fetch-model":
        return run("-c", FETCH_MODEL)
    if command == "test":
        return run("-c", FETCH_MODEL) or run("-m", "pytest", *rest)
    if command == "bench":
        return run("-m", "benchmarks", *rest)
    checks = [
        ("-m", "ruff", "format", "--check", *CHECKED_PATHS),
        ("-m", "ruff", "check", *CHECKED_PATHS),
        ("-m", "mypy"),
    ]
    return max(run(*check) for check in checks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
