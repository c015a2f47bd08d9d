"""The tools of Model Context Protocol servers, for the LLM agents (extra ``miniagents[mcp]``).

`MCPToolSource` connects to one MCP server through the official ``mcp`` package (``mcp.Client``): a command run
as a subprocess that speaks over stdio (`MCPToolSource.stdio`), a streamable HTTP endpoint
(`MCPToolSource.streamable_http`), or, in tests, an ``mcp`` server object in the same process. Give the source
to an agent as one of its tools; every tool the server lists becomes a tool of the agent, run as an agent call
like any other.

One task owns the session. anyio's cancel scopes (which the ``mcp`` package uses) must be entered and left by
the same task, and agents run in tasks of their own that end at any time, so the session is opened, used and
closed by a task that `MCPToolSource` starts when it is entered; tool calls from any task are handed to it and
their results handed back. Cancelling a caller cancels its call in the session.

Example:
    ```python
    from miniagents import MiniAgents
    from miniagents.ext.llm.mcp import MCPToolSource
    from miniagents.ext.llm.openai import openai_agent


    async def main() -> None:
        async with MCPToolSource.stdio("python", ["my_mcp_server.py"]) as server:
            agent = openai_agent.fork(model="gpt-4o-mini", tools=[server])
            async for token in agent.inquire("What is 2 + 3? Use the tools.").as_single_promise():
                print(token, end="", flush=True)


    MiniAgents().run(main())
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic_core

from miniagents.errors import MiniAgentsError
from miniagents.ext.llm._support import import_sdk
from miniagents.ext.llm.tools import Tool
from miniagents.miniagents import InteractionContext, MiniAgent

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["MCPError", "MCPToolError", "MCPToolSource"]

_ResultT = TypeVar("_ResultT")


def _import_mcp() -> ModuleType:
    """The one place where the ``mcp`` package is imported."""
    return import_sdk("mcp", "mcp")


class MCPError(MiniAgentsError):
    """The MCP session could not be opened, or ended; the ``mcp`` package's exception is the ``__cause__``."""


class MCPToolError(MiniAgentsError):
    """An MCP tool answered with ``isError``; the message is the tool's text (sent back to the model)."""


class MCPToolSource:
    """The tools of one MCP server, as a tool source for the LLM agents (``tools=[source]``).

    Use it as ``async with MCPToolSource(...) as source:``; the session lives until the block ends.

    Args:
        server: what ``mcp.Client`` connects to: a URL (streamable HTTP), an ``mcp.StdioServerParameters``,
            an ``mcp`` transport, or an ``mcp`` server object (``mcp.server.mcpserver.MCPServer`` or a low-level
            ``Server``) to run in process.
        prefix: put before every tool name (``f"{prefix}_{name}"``) to keep the tools of several servers apart.
            Characters the providers do not allow in tool names (anything but ``[a-zA-Z0-9_-]``) become ``_``.
        read_timeout: seconds to wait for each answer of the server (None: no limit).
    """

    def __init__(self, server: Any, *, prefix: str | None = None, read_timeout: float | None = None) -> None:
        self._mcp = _import_mcp()
        self.server = server
        self.prefix = prefix
        self.read_timeout = read_timeout
        self._jobs: asyncio.Queue[tuple[Callable[[Any], Awaitable[Any]], asyncio.Future[Any]] | None] | None = None
        self._owner: asyncio.Task[None] | None = None
        self._tools: list[Tool] | None = None

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        prefix: str | None = None,
        read_timeout: float | None = None,
    ) -> MCPToolSource:
        """A server run as a subprocess, speaking MCP over its stdin and stdout.

        Args:
            command: the program, e.g. ``"python"`` or ``"npx"``.
            args: its arguments.
            env: its environment (the ``mcp`` package's safe default environment when None).
            cwd: its working directory.
            prefix: see `MCPToolSource`.
            read_timeout: see `MCPToolSource`.
        """
        parameters = _import_mcp().StdioServerParameters(
            command=command, args=list(args), env=dict(env) if env is not None else None, cwd=cwd
        )
        return cls(parameters, prefix=prefix, read_timeout=read_timeout)

    @classmethod
    def streamable_http(
        cls, url: str, *, prefix: str | None = None, read_timeout: float | None = None
    ) -> MCPToolSource:
        """A server at a streamable HTTP endpoint, e.g. ``"http://127.0.0.1:8000/mcp"``."""
        return cls(url, prefix=prefix, read_timeout=read_timeout)

    # --- the session's owner ---------------------------------------------------------------------------------

    async def __aenter__(self) -> MCPToolSource:
        """Start the task that opens and owns the session; return once the session is ready.

        Raises:
            MCPError: the session could not be opened (the server did not start, refused, …).
            RuntimeError: the source is entered a second time while open.
        """
        if self._owner is not None:
            raise RuntimeError("this MCPToolSource is open already")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._jobs = asyncio.Queue()
        self._owner = asyncio.create_task(self._aown_session(ready, self._jobs), name="miniagents-mcp-session")
        try:
            await ready
        except BaseException:
            await self._aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Close the session (after the calls in progress) and end its task."""
        await self._aclose()

    async def _aclose(self) -> None:
        owner, jobs = self._owner, self._jobs
        self._owner = self._jobs = None
        self._tools = None
        if owner is None or jobs is None:
            return
        jobs.put_nowait(None)
        with contextlib.suppress(Exception):
            await owner

    async def _aown_session(
        self,
        ready: asyncio.Future[None],
        jobs: asyncio.Queue[tuple[Callable[[Any], Awaitable[Any]], asyncio.Future[Any]] | None],
    ) -> None:
        anyio = import_sdk("anyio", "mcp")
        try:
            async with self._mcp.Client(self.server, read_timeout_seconds=self.read_timeout) as client:
                ready.set_result(None)
                async with anyio.create_task_group() as task_group:
                    while (job := await jobs.get()) is not None:
                        task_group.start_soon(_arun_job, anyio, client, *job)
        except Exception as error:
            failure = MCPError(f"the MCP session with {self._describe()} failed: {type(error).__name__}: {error}")
            failure.__cause__ = error
            if not ready.done():
                ready.set_exception(failure)
            _fail_pending(jobs, failure)
            raise failure from error
        finally:
            _fail_pending(jobs, MCPError(f"the MCP session with {self._describe()} is closed"))

    async def _acall(self, action: Callable[[Any], Awaitable[_ResultT]]) -> _ResultT:
        """Run ``action(client)`` in the owner task's task group; cancelling the caller cancels it there."""
        jobs, owner = self._jobs, self._owner
        if jobs is None or owner is None or owner.done():
            raise MCPError(f"the MCP session with {self._describe()} is not open: use `async with` on the source")
        future: asyncio.Future[_ResultT] = asyncio.get_running_loop().create_future()
        jobs.put_nowait((action, future))
        return await future

    def _describe(self) -> str:
        server = self.server
        command = getattr(server, "command", None)
        if command is not None:
            return " ".join([command, *getattr(server, "args", [])])
        return server if isinstance(server, str) else type(server).__name__

    # --- the tool source -------------------------------------------------------------------------------------

    async def alist_tools(self) -> Sequence[Tool]:
        """The server's tools (listed once per session), each run by an agent that calls it in the session.

        Raises:
            MCPError: the session is not open or failed.
        """
        if self._tools is None:
            listing = await self._acall(lambda client: client.list_tools())
            self._tools = [self._tool(mcp_tool) for mcp_tool in listing.tools]
        return list(self._tools)

    async def acall_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """Call a tool of the server by its MCP name and return its result as text.

        Text content is joined with newlines; other content (images, resources) is given as JSON, and so is the
        structured content of a result without text.

        Raises:
            MCPToolError: the tool answered with ``isError`` (the message is its text).
            MCPError: the session is not open or failed.
        """
        result = await self._acall(lambda client: client.call_tool(name, arguments))
        texts = []
        for block in result.content:
            text = getattr(block, "text", None)
            texts.append(text if isinstance(text, str) else block.model_dump_json(exclude_none=True))
        if not texts and result.structured_content is not None:
            texts.append(pydantic_core.to_json(result.structured_content).decode())
        text = "\n".join(texts)
        if result.is_error:
            raise MCPToolError(text or f"the MCP tool {name!r} failed")
        return text

    def _tool(self, mcp_tool: Any) -> Tool:
        mcp_name: str = mcp_tool.name
        name = f"{self.prefix}_{mcp_name}" if self.prefix else mcp_name
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]  # MCP allows dots and more; the providers do not
        source = self

        async def call_mcp_tool(ctx: InteractionContext, **arguments: Any) -> None:
            ctx.reply(await source.acall_tool(mcp_name, arguments))

        schema = dict(mcp_tool.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        description = mcp_tool.description or ""
        return Tool(
            name=name,
            description=description,
            parameters=schema,
            agent=MiniAgent(call_mcp_tool, alias=name, description=description or None),
        )


async def _arun_job(
    anyio: Any, client: Any, action: Callable[[Any], Awaitable[Any]], future: asyncio.Future[Any]
) -> None:
    """Run one call inside the owner's task group; a cancelled future cancels the call."""
    if future.done():
        return
    with anyio.CancelScope() as scope:
        future.add_done_callback(lambda done: scope.cancel() if done.cancelled() else None)
        try:
            result = await action(client)
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(result)


def _fail_pending(
    jobs: asyncio.Queue[tuple[Callable[[Any], Awaitable[Any]], asyncio.Future[Any]] | None], error: MCPError
) -> None:
    while not jobs.empty():
        job = jobs.get_nowait()
        if job is not None and not job[1].done():
            job[1].set_exception(error)
