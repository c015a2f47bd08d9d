"""Every public module's `__all__` is written out, sorted, and importable; the SPEC §0 names are there."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

SPEC_NAMES = {
    "miniagents": {
        "MiniAgents", "miniagent", "MiniAgent", "InteractionContext", "AgentCall", "Message", "MessagePromise",
        "MessageSequencePromise", "MessageSequence", "MessageType", "Frozen", "AgentInteractionNode",
        "AgentCallNode", "AgentReplyNode", "PromisingContext", "Promising", "Promise", "StreamedPromise",
        "StreamAppender", "run",
    },
    "miniagents.miniagents": {
        "MiniAgents", "miniagent", "MiniAgent", "InteractionContext", "AgentCall", "Message", "MessagePromise",
        "MessageSequencePromise", "AgentInteractionNode", "AgentCallNode", "AgentReplyNode",
    },
    "miniagents.messages": {"Message", "MessagePromise", "MessageSequencePromise", "MessageSequence"},
    "miniagents.miniagent_typing": {
        "MessageType", "SingleMessageType", "AgentFunction", "MessageTokenStreamer", "PersistMessageEventHandler",
    },
    "miniagents.utils": {"join_messages", "split_messages", "achain_loop", "adialog_loop"},
    "miniagents.promising.promising": {"PromisingContext", "Promising", "Promise", "StreamedPromise", "StreamAppender"},
    "miniagents.promising.sequence": {"FlatSequence"},
    "miniagents.promising.sentinels": {"Sentinel", "NO_VALUE", "DEFAULT", "FAILED", "END_OF_QUEUE", "AWAIT", "CLEAR"},
    "miniagents.promising.errors": {
        "PromisingError", "FunctionNotProvidedError", "AppenderNotOpenError", "AppenderClosedError",
        "PromisingContextError", "NoActiveContextError", "WrongActiveContextError",
    },
    "miniagents.promising.ext.frozen": {"Frozen", "FrozenType"},
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
    "miniagents.ext.llm": {"UserMessage", "SystemMessage", "AssistantMessage", "message_to_llm_dict"},
    "miniagents.ext.llm.llm_common": {"UserMessage", "SystemMessage", "AssistantMessage", "message_to_llm_dict"},
    "miniagents.ext.llm.openai": {"openai_agent", "OpenAIMessage"},
    "miniagents.ext.llm.anthropic": {"anthropic_agent", "AnthropicMessage"},
    "miniagents.ext.llm.llama_cpp": {"llama_cpp_agent"},
    "miniagents.ext.llm.testing": {"scripted_llm_agent", "function_llm_agent", "ScriptedToolCall"},
    "miniagents.ext.llm.tools": {"Tool", "tool"},
    "miniagents.ext.llm.output": {"apartial_outputs", "StructuredOutputMessage"},
    "miniagents.ext.llm.mcp": {"MCPToolSource"},
    "miniagents.ext.llm.errors": {"LLMError", "LLMMaxTurnsError", "LLMOutputError", "LLMToolError"},
    "miniagents.store": {
        "MessageStore", "SQLiteMessageStore", "PostgresMessageStore", "open_store", "StoreRecorder", "StoredCall",
        "MessageRegistry", "aload_message", "aload_call_tree", "store_history_agent",
    },
    "miniagents.ext.tracing": {"OpenTelemetryObserver", "CAPTURE_CONTENT_ENV_VAR"},
    "miniagents.ext.view": {"ViewPublisher", "LiveRuns", "RunSource", "create_app", "serve"},
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


def test_importing_the_package_needs_only_pydantic_and_has_no_side_effects() -> None:
    code = (
        "import sys\n"
        "import miniagents, miniagents.utils, miniagents.promising\n"
        "heavy = {'prompt_toolkit', 'markdown_it', 'openai', 'anthropic', 'xllamacpp', 'httpx', 'opentelemetry',\n"
        "         'starlette', 'uvicorn', 'aiosqlite', 'asyncpg', 'mcp'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    )
    assert result.stdout == "[]\n"
    assert result.stderr == ""
