"""miniagents.ext re-exports the agents and sentinels; seed 001 import paths work (`__all__`: test_exported_members)."""

from __future__ import annotations

import importlib

import pytest

from miniagents import MiniAgent
from miniagents.promising.sentinels import AWAIT, CLEAR


def test_ext_reexports_the_agents_and_the_sentinels() -> None:
    ext = importlib.import_module("miniagents.ext")
    assert ext.AWAIT is AWAIT
    assert ext.CLEAR is CLEAR
    for name in ext.__all__:
        if name not in {"AWAIT", "CLEAR"}:
            assert isinstance(getattr(ext, name), MiniAgent), name


def test_seed_001_import_paths() -> None:
    from miniagents.ext.agent_aggregators import console_user_agent
    from miniagents.ext.history_agents import ChatHistoryMD
    from miniagents.ext.misc_agents import console_user_agent as reexported

    assert reexported is console_user_agent
    assert ChatHistoryMD.__name__ == "ChatHistoryMD"
    with pytest.raises(AttributeError):
        importlib.import_module("miniagents.ext.misc_agents").no_such_name  # noqa: B018
