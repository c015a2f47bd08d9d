from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from miniagents.promising.sentinels import DEFAULT
from tests.terminal import Terminal, start_terminals


@pytest.fixture(params=[True, False, DEFAULT], ids=["start_asap", "lazy", "default"])
def start_asap(request: pytest.FixtureRequest) -> object:
    """Run a test with start_asap True, False and DEFAULT (SPEC §10)."""
    return request.param


@pytest.fixture
def terminal_factory(tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    """Start programs in real terminals under tmux (skips when tmux is missing); closed afterwards."""
    yield from start_terminals(tmp_path)
