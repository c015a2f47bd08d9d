"""MCP tool sources: an in-process MCP server and a stdio MCP server in a subprocess, driven by a fake LLM."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from miniagents import MiniAgents
from miniagents.ext.llm import ToolCallMessage, ToolResultMessage
from miniagents.ext.llm.testing import FakeLLMMessage, ScriptedToolCall, scripted_llm_agent

pytest.importorskip("mcp", reason='the mcp extra is not installed: pip install "miniagents[mcp]"')

from mcp.server.mcpserver import MCPServer

from miniagents.ext.llm.mcp import MCPError, MCPToolSource

ROOT = Path(__file__).resolve().parents[3]
NO_HANG = 30


def in_process_server() -> MCPServer:
    server = MCPServer("notes")
    notes: dict[str, str] = {}

    @server.tool()
    def save_note(title: str, body: str) -> str:
        """Save a note under a title."""
        notes[title] = body
        return f"saved {title!r}"

    @server.tool(name="read.note")
    async def read_note(title: str) -> str:
        """Read the note saved under a title."""
        return notes[title]

    return server


async def test_in_process_server_tools_run_through_the_agent_loop() -> None:
    llm = scripted_llm_agent(
        [
            ScriptedToolCall("notes_save_note", {"title": "todo", "body": "buy milk"}),
            ScriptedToolCall("notes_read_note", {"title": "todo"}),
            ScriptedToolCall("notes_read_note", {"title": "missing"}),
            "Your todo note says: buy milk.",
        ]
    )
    async with MiniAgents(), MCPToolSource(in_process_server(), prefix="notes") as source:
        tools = await source.alist_tools()
        assert [tool.name for tool in tools] == ["notes_save_note", "notes_read_note"]
        assert tools[0].description == "Save a note under a title."
        assert tools[0].parameters["required"] == ["title", "body"]
        messages = await asyncio.wait_for(llm.fork(tools=[source]).inquire("What is my todo?"), NO_HANG)

    results = [m for m in messages if isinstance(m, ToolResultMessage)]
    assert [(r.tool_name, r.text, r.is_error) for r in results[:2]] == [
        ("notes_save_note", "saved 'todo'", False),
        ("notes_read_note", "buy milk", False),
    ]
    assert results[2].is_error and results[2].text.startswith("Error: MCPToolError:")
    assert isinstance(messages[-1], FakeLLMMessage)
    assert messages[-1].text == "Your todo note says: buy milk."
    # the model saw the tools, with the server's schemas, and every result
    assert [t["function"]["name"] for t in llm.requests[0]["tools"]] == ["notes_save_note", "notes_read_note"]
    assert llm.prompts[2][-1] == {"role": "tool", "tool_call_id": "call_2", "content": "buy milk"}


async def test_stdio_server_in_a_subprocess() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    source = MCPToolSource.stdio(sys.executable, [str(Path(__file__).with_name("mcp_stdio_server.py"))], env=env)
    llm = scripted_llm_agent(
        [[ScriptedToolCall("multiply", {"a": 6, "b": 7}), ScriptedToolCall("fail", {"reason": "no"})], "42"]
    )
    async with MiniAgents(), source:
        messages = await asyncio.wait_for(llm.fork(tools=[source]).inquire("6 * 7?"), NO_HANG)

    calls = [m for m in messages if isinstance(m, ToolCallMessage)]
    results = [m for m in messages if isinstance(m, ToolResultMessage)]
    assert [c.tool_name for c in calls] == ["multiply", "fail"]
    assert (results[0].text, results[0].is_error) == ("42", False)
    assert results[1].is_error
    assert str(messages[-1]) == "42"


async def test_source_must_be_entered_and_a_dead_server_is_an_mcp_error() -> None:
    source = MCPToolSource(in_process_server())
    with pytest.raises(MCPError, match="not open"):
        await source.alist_tools()
    broken = MCPToolSource.stdio(sys.executable, ["-c", "import sys; sys.exit(3)"], read_timeout=5)
    with pytest.raises(MCPError):
        await asyncio.wait_for(broken.__aenter__(), NO_HANG)


async def test_a_cancelled_caller_cancels_its_call_and_the_session_goes_on() -> None:
    server = MCPServer("slow")
    started = asyncio.Event()

    @server.tool()
    async def wait_forever() -> str:
        """Never returns."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    @server.tool()
    def ping() -> str:
        """Answers pong."""
        return "pong"

    async with MCPToolSource(server) as source:
        call: Any = asyncio.ensure_future(source.acall_tool("wait_forever", {}))
        await asyncio.wait_for(started.wait(), NO_HANG)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await asyncio.wait_for(source.acall_tool("ping", {}), NO_HANG) == "pong"


async def test_streamable_http_server_on_loopback() -> None:
    from tests.servers import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("mcp_stdio_server.py")),
        "http",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # wait until it listens (up to 30 s)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            break
        llm = scripted_llm_agent([ScriptedToolCall("multiply", {"a": 3, "b": 5}), "15"])
        async with MiniAgents(), MCPToolSource.streamable_http(f"http://127.0.0.1:{port}/mcp") as source:
            messages = await asyncio.wait_for(llm.fork(tools=[source]).inquire("3 * 5?"), NO_HANG)
        (result,) = [m for m in messages if isinstance(m, ToolResultMessage)]
        assert (result.text, result.is_error) == ("15", False)
    finally:
        process.terminate()
        await process.wait()
