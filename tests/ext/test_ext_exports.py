"""The public surface of miniagents.ext, its modules and the cli: written out, sorted, importable (SPEC §0)."""

from __future__ import annotations

import importlib
import sys

import pytest

from miniagents import MiniAgent
from miniagents.promising.sentinels import AWAIT, CLEAR

SPEC_NAMES = {
    "miniagents.ext": {
        "AWAIT", "CLEAR", "agent_chain", "agent_loop", "console_echo_agent", "console_prompt_agent",
        "console_user_agent", "dialog_loop", "file_agent", "in_memory_history_agent", "markdown_history_agent",
        "prompt_agent", "user_agent",
    },
    "miniagents.ext.agent_aggregators": {
        "user_agent", "console_user_agent", "dialog_loop", "agent_loop", "agent_chain", "prompt_agent",
    },
    "miniagents.ext.aggregator_agents": {
        "user_agent", "console_user_agent", "dialog_loop", "agent_loop", "agent_chain", "prompt_agent",
    },
    "miniagents.ext.history_agents": {
        "in_memory_history_agent", "markdown_history_agent", "ChatHistory", "InMemoryChatHistory", "ChatHistoryMD",
    },
    "miniagents.ext.misc_agents": {"console_echo_agent", "console_prompt_agent", "file_agent", "console_user_agent"},
    "miniagents.ext.chat_history_md": {"ChatHistoryMD"},
    "miniagents.cli": {"main"},
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(SPEC_NAMES))
def test_all_is_explicit_sorted_and_importable(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert isinstance(exported, list)
    assert exported == sorted(exported)
    assert SPEC_NAMES[module_name] <= set(exported)
    for name in exported:
        attribute = getattr(module, name)
        assert not isinstance(attribute, type(sys)), f"{module_name}.{name} is a module"


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
