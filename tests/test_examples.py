"""Seed 000's key-free examples run as documented: stdout compared byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "usage.py": "You said: Hello\nYou said: World\n",
    "agent_parallelism.py": (
        "PREPARING TO DELIVER MESSAGES FROM AGGREGATOR\n"
        "Aggregator started\n"
        "Aggregator still working\n"
        "Aggregator finished\n"
        "Agent 1 started\n"
        "Agent 1 finished\n"
        "Agent 2 started\n"
        "Agent 2 finished\n"
        "*** MESSAGE from Agent 1 ***\n"
        "*** MESSAGE from Agent 2 ***\n"
        "*** MESSAGE #1 from Aggregator ***\n"
        "*** MESSAGE #2 from Aggregator ***\n"
        "TOTAL NUMBER OF MESSAGES FROM AGGREGATOR: 4\n"
    ),
    "initiate_inquiry.py": "You said: Hello\nYou said: World\n",
    "custom_message_models.py": "Hello\nCustom Value\n",
    "existing_message_models.py": "user\nsystem\nassistant\n",
    "context_usage_forms.py": "run(): You said: one\nasync with: You said: two\nactivate/afinalize: You said: three\n",
}


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_prints_exactly_what_the_seed_documents(name: str) -> None:
    result = run_example(name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED[name]
    assert result.stderr == ""
