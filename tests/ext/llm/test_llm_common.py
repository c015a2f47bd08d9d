"""Message classes, public surfaces, lazy SDK imports and the ImportError hints."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import miniagents.ext.llm
import miniagents.ext.llm.anthropic
import miniagents.ext.llm.llm_common
from miniagents import Message, MiniAgents
from miniagents.ext.llm import AssistantMessage, SystemMessage, UserMessage, message_to_llm_dict

PUBLIC_MODULES = [
    "miniagents.ext.llm",
    "miniagents.ext.llm.llm_common",
    "miniagents.ext.llm.errors",
    "miniagents.ext.llm.openai",
    "miniagents.ext.llm.anthropic",
    "miniagents.ext.llm.llama_cpp",
    "miniagents.ext.llm.testing",
    "miniagents.ext.llm.tools",
    "miniagents.ext.llm.output",
    "miniagents.ext.llm.mcp",
]


def test_message_classes_differ_in_role_defaults() -> None:
    assert UserMessage(text="Hello!").role == "user"
    assert SystemMessage(text="Be brief.").role == "system"
    assistant = AssistantMessage(text="Hi", model="m", agent_alias="BOT")
    assert (assistant.role, assistant.model, assistant.agent_alias) == ("assistant", "m", "BOT")
    assert AssistantMessage("x").agent_alias is None
    assert UserMessage("positional").text == "positional"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (UserMessage("u"), {"role": "user", "content": "u"}),
        (SystemMessage("s"), {"role": "system", "content": "s"}),
        (AssistantMessage("a"), {"role": "assistant", "content": "a"}),
        (Message("no role"), {"role": "user", "content": "no role"}),
        (Message("custom", role="tool"), {"role": "tool", "content": "custom"}),
        (Message("none role", role=None), {"role": "user", "content": "none role"}),
        (Message(text_template="Hi {name}", name="Bob"), {"role": "user", "content": "Hi Bob"}),
    ],
)
def test_message_to_llm_dict(message: Message, expected: dict[str, str]) -> None:
    assert message_to_llm_dict(message) == expected


def test_llm_common_is_the_same_surface() -> None:
    for name in miniagents.ext.llm.llm_common.__all__:
        assert getattr(miniagents.ext.llm, name) is getattr(miniagents.ext.llm.llm_common, name)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_explicit_and_importable(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert isinstance(exported, list)
    assert exported == sorted(exported)
    for name in exported:
        assert hasattr(module, name), name
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module_name
        and not isinstance(value, type(sys))
    }
    assert public <= set(exported), public - set(exported)


@pytest.mark.parametrize(
    "module_name", ["miniagents.ext.llm", "miniagents.ext.llm.llm_common", "miniagents.ext.llm.output"]
)
def test_docstring_examples(module_name: str) -> None:
    results = doctest.testmod(importlib.import_module(module_name))
    assert results.failed == 0


def test_anthropic_docstring_examples() -> None:
    results = doctest.testmod(miniagents.ext.llm.anthropic)
    assert results.attempted > 0
    assert results.failed == 0


def test_importing_the_agent_modules_imports_no_sdk() -> None:
    code = (
        "import sys\n"
        "import miniagents.ext.llm, miniagents.ext.llm.openai, miniagents.ext.llm.anthropic\n"
        "import miniagents.ext.llm.llama_cpp, miniagents.ext.llm.testing, miniagents.ext.llm.mcp\n"
        "import miniagents.ext.llm.tools, miniagents.ext.llm.output\n"
        "loaded = [m for m in ('openai', 'anthropic', 'xllamacpp', 'httpx', 'httpx2', 'mcp') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("module_name", "agent_name", "sdk", "extra", "kwargs"),
    [
        ("miniagents.ext.llm.openai", "openai_agent", "openai", "openai", {"model": "m"}),
        ("miniagents.ext.llm.anthropic", "anthropic_agent", "anthropic", "anthropic", {"model": "m"}),
        ("miniagents.ext.llm.llama_cpp", "llama_cpp_agent", "xllamacpp", "local", {}),
    ],
)
async def test_missing_sdk_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, module_name: str, agent_name: str, sdk: str, extra: str, kwargs: dict[str, str]
) -> None:
    agent = getattr(importlib.import_module(module_name), agent_name)
    monkeypatch.setitem(sys.modules, sdk, None)  # makes `import <sdk>` raise ImportError
    async with MiniAgents():
        with pytest.raises(ImportError, match=rf'pip install "miniagents\[{extra}\]"'):
            await agent.inquire("hi", **kwargs)


async def test_openai_agent_rejects_n_other_than_one() -> None:
    pytest.importorskip("openai")
    from miniagents.ext.llm.openai import openai_agent

    async with MiniAgents():
        with pytest.raises(ValueError, match="n=2"):
            await openai_agent.inquire("hi", model="m", n=2)


def test_missing_mcp_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from miniagents.ext.llm.mcp import MCPToolSource

    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ImportError, match=r'pip install "miniagents\[mcp\]"'):
        MCPToolSource("http://127.0.0.1:1/mcp")
