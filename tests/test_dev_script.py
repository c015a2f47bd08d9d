"""scripts/dev.py: usage without a valid command, and pip only when pyproject.toml or the extras changed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/dev.py as a module, working on a copy of pyproject.toml and a fake .venv in tmp_path."""
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "scripts" / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    venv = tmp_path / ".venv"
    python = venv / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("", encoding="utf-8")  # an existing interpreter: no venv is created
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "VENV", venv)
    monkeypatch.setattr(module, "PYTHON", python)
    monkeypatch.setattr(module, "STAMP", venv / ".miniagents-installed")
    return module


def record_runs(dev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    runs: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append([str(part) for part in command])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(dev.subprocess, "run", fake_run)
    return runs


@pytest.mark.parametrize("argv", [[], ["tset"]], ids=["no command", "a typo"])
def test_without_a_valid_command_it_prints_its_usage_and_exits_2(
    argv: list[str], dev: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = record_runs(dev, monkeypatch)
    assert dev.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("dev.py: no command given\n" if not argv else "dev.py: unknown command 'tset'\n")
    assert "usage: python scripts/dev.py COMMAND [ARGS...]" in err
    for command in ("chat", "test", "check", "bench", "fetch-model"):
        assert f"\n    {command} " in err
    assert runs == []


def test_pip_runs_only_when_pyproject_or_the_extras_change(
    dev: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs = record_runs(dev, monkeypatch)
    pip_runs = lambda: [run for run in runs if run[1:4] == ["-m", "pip", "install"]]  # noqa: E731
    dev.ensure_environment("all")
    assert [run[-1] for run in pip_runs()] == [".[all]"]
    dev.ensure_environment("all")  # a second start: no pip
    assert len(pip_runs()) == 1
    dev.ensure_environment("all,dev,test-servers")  # other extras: pip once more, and both are remembered
    dev.ensure_environment("all")
    dev.ensure_environment("all,dev,test-servers")
    assert len(pip_runs()) == 2
    with (tmp_path / "pyproject.toml").open("a", encoding="utf-8") as file:
        file.write("\n# changed\n")
    dev.ensure_environment("all")
    assert len(pip_runs()) == 3


def test_a_failed_install_is_not_remembered(dev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(dev.subprocess, "run", failing_run)
    assert dev.main(["chat"]) == 1
    assert not dev.STAMP.exists()


def test_the_script_runs_with_a_bare_python() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev.py")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "usage: python scripts/dev.py" in result.stderr
