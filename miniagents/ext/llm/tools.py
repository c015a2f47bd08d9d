"""Tools for the LLM agents: plain functions and agents a model may call.

Pass ``tools=[...]`` to `openai_agent`, `anthropic_agent`, `llama_cpp_agent` or the fakes of
`miniagents.ext.llm.testing`, through ``fork`` (tools are not freezable, so they cannot be ``inquire`` kwargs).
Each item may be:

- a plain function, ``def`` or ``async def``, with typed parameters: its JSON schema comes from the signature
  through pydantic, its description from the docstring (the summary, and the parameters' descriptions from a
  Google-style ``Args:`` section);
- a `MiniAgent` (``@miniagent async def search(ctx, query: str) -> None``): the same, from its function's
  signature after ``ctx``; the arguments become ``inquire`` kwargs and the text of its replies is the result.
  The arguments arrive in their JSON form (kwargs must be freezable): a pydantic model as a dict of its fields, a
  date as its ISO string; a plain function tool gets them as its annotations say;
- a `Tool` (made by `tool`, to set the name or description);
- a tool source such as `miniagents.ext.llm.mcp.MCPServer`: anything with ``async alist_tools() -> list[Tool]``.

Every tool runs as an agent call (plain functions are wrapped into a `MiniAgent`), so the calls of one turn run
concurrently, appear in persistence like any inquiry, and are cancelled with the LLM agent that made them.
A sync function runs in a worker thread (`asyncio.to_thread`), so it cannot block the event loop.

The result of a function becomes text for the model: a ``str`` as it is, None as ``""``, anything else as
JSON (through pydantic, so models, dataclasses and datetimes work).

A call the loop cannot run goes back to the model as an error result (``Error: ...``, ``is_error=True``), so it
can try again: a tool that raises, arguments that do not validate, or a name none of the tools has (with
``raise_tool_errors=True`` each raises `LLMToolError` instead). A model that calls a tool although its agent
was given none (tools passed in the provider's own parameters, say) gets no answer: no tool loop runs, and the
`ToolCallMessage` is replied as it is, for the caller to handle.

Example:
    >>> from miniagents.ext.llm.tools import tool
    >>> def add(a: int, b: int = 0) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: the first summand.
    ...         b: the second summand.
    ...     '''
    ...     return a + b
    >>> add_tool = tool(add)
    >>> add_tool.name, add_tool.description
    ('add', 'Add two integers.')
    >>> add_tool.parameters["properties"]["a"]
    {'description': 'the first summand.', 'type': 'integer'}
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload, runtime_checkable

import pydantic
import pydantic_core

from miniagents.errors import MiniAgentsError
from miniagents.miniagents import InteractionContext, MiniAgent

__all__ = ["Tool", "ToolSource", "ToolSourceError", "aresolve_tools", "tool", "tool_result_text"]

_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Yields|Raises|Example|Examples|Note|Notes):\s*$")


@dataclass(frozen=True)
class Tool:
    """A tool a model may call.

    Attributes:
        name: the name the model calls it by (``[a-zA-Z0-9_-]{1,64}``, unique among an agent's tools).
        description: what the tool does, for the model.
        parameters: the JSON schema of the arguments (an ``"object"`` schema).
        agent: the agent that runs a call; it is inquired with the (validated) arguments as kwargs and the text
            of its replies, joined with blank lines, is the result.
        arguments_model: the pydantic model that validates the arguments before the call, or None to pass them
            as the model sent them (MCP tools: the server validates).
        validated_by_agent: True when ``agent`` validates the arguments itself (a wrapped function), so the
            loop passes them on as they are and they are validated once.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    agent: MiniAgent
    arguments_model: type[pydantic.BaseModel] | None = field(default=None, compare=False)
    validated_by_agent: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME_PATTERN.match(self.name):
            raise ValueError(f"a tool name must match [a-zA-Z0-9_-]{{1,64}} (the providers' rule), got {self.name!r}")
        if self.parameters.get("type") != "object":
            raise ValueError(f"the parameters of the tool {self.name!r} must be an 'object' JSON schema")

    def validate_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check the arguments a model sent; return them as JSON-compatible kwargs for `agent`.

        Arguments the agent validates itself (``validated_by_agent``) and those of tools without a model are
        returned as they are.

        Raises:
            pydantic.ValidationError: the arguments do not fit the tool's parameters.
        """
        if self.arguments_model is None or self.validated_by_agent:
            return arguments
        validated = self.arguments_model.model_validate(arguments)
        return validated.model_dump(mode="json", exclude_unset=True)


@runtime_checkable
class ToolSource(Protocol):
    """Something that lists tools when an LLM agent starts, e.g. an MCP server (`miniagents.ext.llm.mcp`)."""

    async def alist_tools(self) -> Sequence[Tool]:
        """The tools, each with an agent that runs it."""
        ...


ToolLike = Callable[..., Any] | MiniAgent | Tool | ToolSource


@overload
def tool(function: Callable[..., Any] | MiniAgent, /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any] | MiniAgent], Tool]: ...


def tool(
    function: Callable[..., Any] | MiniAgent | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any] | MiniAgent], Tool]:
    """Make a `Tool` of a function or a `MiniAgent`; usable bare (``@tool``) or with arguments.

    Args:
        function: a ``def`` or ``async def`` function with annotated parameters, or a `MiniAgent`.
        name: the tool's name; the function's ``__name__`` (or the agent's alias, lower-cased) by default.
        description: for the model; the docstring's summary (or the agent's description) by default.

    Returns:
        The `Tool` (or, without ``function``, a decorator that makes one).

    Raises:
        TypeError: ``function`` is neither a callable nor a `MiniAgent`, or a parameter is positional-only.
        ValueError: the name does not match ``[a-zA-Z0-9_-]{1,64}``.
    """
    if function is None:
        return lambda f: _make_tool(f, name, description)
    return _make_tool(function, name, description)


def _make_tool(function: Callable[..., Any] | MiniAgent, name: str | None, description: str | None) -> Tool:
    if isinstance(function, MiniAgent):
        return _tool_of_agent(function, name, description)
    if not callable(function):
        raise TypeError(f"a tool must be a function, a MiniAgent, a Tool or a tool source, got {function!r}")
    tool_name = name or getattr(function, "__name__", None) or type(function).__name__
    summary, parameter_docs = _parse_docstring(inspect.getdoc(function))
    model = _arguments_model(function, tool_name, parameter_docs, skip_first=False)
    return Tool(
        name=tool_name,
        description=description if description is not None else summary,
        parameters=_schema_of(model),
        agent=_function_agent(function, tool_name, model),
        arguments_model=model,
        validated_by_agent=True,
    )


def _tool_of_agent(agent: MiniAgent, name: str | None, description: str | None) -> Tool:
    summary, parameter_docs = _parse_docstring(inspect.getdoc(agent.func))
    tool_name = name or agent.alias.lower()
    model = _arguments_model(agent.func, tool_name, parameter_docs, skip_first=True)
    return Tool(
        name=tool_name,
        description=description if description is not None else (summary or agent.description or ""),
        parameters=_schema_of(model),
        agent=agent,
        arguments_model=model,
    )


def _arguments_model(
    function: Callable[..., Any], tool_name: str, parameter_docs: dict[str, str], *, skip_first: bool
) -> type[pydantic.BaseModel]:
    """A pydantic model of the function's keyword-capable parameters (``ctx`` skipped for agents)."""
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to what the signature holds
        hints = {}
    fields: dict[str, Any] = {}
    parameters = list(signature.parameters.values())
    if skip_first and parameters:
        parameters = parameters[1:]
    for parameter in parameters:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"the tool {tool_name!r} has a positional-only parameter {parameter.name!r}: "
                "tools are called with keyword arguments"
            )
        annotation = hints.get(parameter.name, parameter.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (
            annotation,
            pydantic.Field(default, description=parameter_docs.get(parameter.name)),
        )
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{tool_name}_arguments", **fields)
    return model


def _schema_of(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for property_schema in schema.get("properties", {}).values():
        if isinstance(property_schema, dict):
            property_schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def _parse_docstring(docstring: str | None) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and the ``Args:`` descriptions of a Google-style docstring."""
    if not docstring:
        return "", {}
    lines = docstring.splitlines()
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in lines:
        match = _SECTION.match(line)
        if match and not line[:1].isspace():
            sections.append((match.group(1), []))
        else:
            sections[-1][1].append(line)
    summary = " ".join(" ".join(sections[0][1]).split())
    parameter_docs: dict[str, str] = {}
    for title, body in sections[1:]:
        if title not in ("Args", "Arguments", "Parameters"):
            continue
        indents = [len(line) - len(line.lstrip()) for line in body if line.strip()]
        entry_indent = min(indents, default=0)
        current: str | None = None
        for line in body:
            if not line.strip():
                continue
            match = re.match(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if match and len(line) - len(line.lstrip()) == entry_indent:
                current = match.group(1)
                parameter_docs[current] = match.group(2).strip()
            elif current is not None:
                parameter_docs[current] = f"{parameter_docs[current]} {line.strip()}".strip()
    return summary, parameter_docs


def _function_agent(function: Callable[..., Any], tool_name: str, model: type[pydantic.BaseModel]) -> MiniAgent:
    is_async = inspect.iscoroutinefunction(function)

    async def run_tool(ctx: InteractionContext, **arguments: Any) -> None:
        validated = model.model_validate(arguments)
        kwargs = {name: getattr(validated, name) for name in validated.model_fields_set}
        if is_async:
            result = await function(**kwargs)
        else:
            result = await asyncio.to_thread(function, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        ctx.reply(tool_result_text(result))

    return MiniAgent(run_tool, alias=tool_name, description=inspect.getdoc(function))


def tool_result_text(result: Any) -> str:
    """The text a tool result is sent to the model as: a ``str`` as it is, None as ``""``, else JSON.

    Example:
        >>> tool_result_text({"temperature": 21.5}), tool_result_text("sunny"), tool_result_text(None)
        ('{"temperature":21.5}', 'sunny', '')
    """
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    return pydantic_core.to_json(result).decode()


_tool_cache: weakref.WeakKeyDictionary[Any, Tool] = weakref.WeakKeyDictionary()


def _cached_tool(item: Callable[..., Any] | MiniAgent) -> Tool:
    """`tool(item)`, made once per function or agent (building the schema costs about a millisecond)."""
    try:
        cached = _tool_cache.get(item)
    except TypeError:  # not weak-referenceable (e.g. a builtin): build it every time
        return tool(item)
    if cached is None:
        cached = _tool_cache[item] = tool(item)
    return cached


class ToolSourceError(MiniAgentsError):
    """A tool source (e.g. an MCP server) could not list its tools; its own error is the ``__cause__``."""


async def aresolve_tools(items: Iterable[ToolLike] | None) -> dict[str, Tool]:
    """Turn the ``tools=[...]`` items of an LLM agent into tools by name (tool sources are asked now).

    Raises:
        ValueError: two tools share a name, or a function's name is not a valid tool name.
        TypeError: an item is not a function, a `MiniAgent`, a `Tool` or a tool source.
        ToolSourceError: a tool source failed to list its tools.
    """
    tools: dict[str, Tool] = {}
    for item in items or ():
        if isinstance(item, Tool):
            found: Sequence[Tool] = [item]
        elif isinstance(item, MiniAgent):
            found = [_cached_tool(item)]
        elif hasattr(item, "alist_tools"):  # a ToolSource (a Protocol isinstance check is slow)
            try:
                found = await item.alist_tools()
            except Exception as error:
                raise ToolSourceError(f"the tool source {item!r} could not list its tools: {error}") from error
        elif callable(item):
            found = [_cached_tool(item)]
        else:
            raise TypeError(f"a tool must be a function, a MiniAgent, a Tool or a tool source, got {item!r}")
        for one in found:
            if one.name in tools:
                raise ValueError(f"two tools are named {one.name!r}: give one of them another name with tool(name=)")
            tools[one.name] = one
    return tools
