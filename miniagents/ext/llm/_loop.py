"""The one agent loop of every LLM agent, and the small seam a provider implements.

A provider is a `ProviderAdapter`: it turns a `TurnRequest` (the conversation so far as messages, the tools,
the tool choice, the output schema) into its own request and its stream into `TextDelta`, `ToolCallDelta` and
`MetadataDelta` events. Everything else lives here, once: reading the input, opening a streamed message for
each text and each tool call as it starts, running the tools of a turn concurrently as agent calls, sending
their results back, structured output, ``max_turns``, and turning every failure into an `LLMError` that names
the provider and the model and chains the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import pydantic
import pydantic_core

from miniagents._text_io import utf8_texts_in
from miniagents.ext.llm._support import merge_metadata, resolve_stream
from miniagents.ext.llm._tracing import trace_llm_events, trace_tool_call, tracing_is_on
from miniagents.ext.llm.errors import LLMError, LLMMaxTurnsError, LLMResponseError, LLMToolError
from miniagents.ext.llm.llm_common import (
    AssistantMessage,
    ToolCallMessage,
    ToolResultMessage,
    UserMessage,
    _field_of,
    _openai_tool_call_dict,
    message_to_llm_dict,
)
from miniagents.ext.llm.output import OutputSpec, _output_message_class
from miniagents.ext.llm.tools import Tool, ToolLike, ToolSourceError, aresolve_tools
from miniagents.messages import Message, MessagePromise
from miniagents.miniagents import InteractionContext
from miniagents.promising.promising import StreamAppender

__all__ = [
    "DEFAULT_MAX_TURNS",
    "OUTPUT_TOOL_NAME",
    "AgentLoop",
    "Event",
    "LoopOptions",
    "MetadataDelta",
    "ProviderAdapter",
    "TextDelta",
    "ToolCallDelta",
    "ResponseFormat",
    "ToolCalling",
    "ToolChoice",
    "ToolSpec",
    "TurnRequest",
    "chat_chunk_events",
    "chat_response_events",
    "openai_chat_messages",
]

OUTPUT_TOOL_NAME = "final_output"
"""The name of the tool through which providers without a JSON-schema response format give structured output."""

DEFAULT_MAX_TURNS = 10
"""The default limit of model requests per inquiry (each tool round trip is one more)."""

ToolChoice = Literal["auto", "required", "none"] | str | None
ToolCalling = Literal["native", "json"]

_JSON_TOOLS_NOTE = """You can call tools. To call tools, answer with JSON {{"tool_calls": [{{"name": <tool name>, \
"arguments": {{...}}}}]}}. {answer_rule} The tools:
{tools}"""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the model's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: the first one of an ``index`` carries ``call_id`` and ``name``."""

    index: int
    arguments: str = ""
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MetadataDelta:
    """Response metadata (id, usage, finish reason …), merged into the turn's first message."""

    metadata: dict[str, Any]


Event = TextDelta | ToolCallDelta | MetadataDelta


@dataclass(frozen=True)
class ToolSpec:
    """What a provider is told about a tool."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ResponseFormat:
    """A JSON schema the answer must follow (an ``"object"`` schema, or an ``anyOf`` of them).

    ``strict`` is True when the schema is in the form of OpenAI's strict structured outputs (see
    `OutputSpec.strict_schema`), so an OpenAI-compatible request asks for it with ``"strict": true``.
    """

    name: str
    schema: dict[str, Any]
    strict: bool = False


@dataclass(frozen=True)
class TurnRequest:
    """One request to the model.

    Attributes:
        system: the system prompt given to the agent (system messages stay in ``messages``).
        messages: the conversation: input messages (other agents' answers already turned into user turns),
            then earlier turns' `AssistantMessage` / `ToolCallMessage` / `ToolResultMessage`.
        tools: the tools to offer, the output tool included when there is one.
        tool_choice: None (the provider's default), ``"auto"``, ``"required"``, ``"none"`` or a tool name.
        parallel_tool_calls: None for the provider's default.
        output: the schema for a native JSON-schema response format (None when there is none or it goes through
            the output tool).
        stream: stream (True) or ask for the whole answer at once.
    """

    system: str | None
    messages: Sequence[Message]
    tools: Sequence[ToolSpec]
    tool_choice: ToolChoice
    parallel_tool_calls: bool | None
    output: ResponseFormat | None
    stream: bool


class ProviderAdapter(Protocol):
    """The per-provider part of an LLM agent (plain class attributes satisfy the properties)."""

    @property
    def provider(self) -> str:
        """``"openai"``, ``"anthropic"`` …: named in every `LLMError`."""
        ...

    @property
    def model(self) -> str | None:
        """The model as the agent was asked for it (the replies' ``model``)."""
        ...

    @property
    def message_class(self) -> type[AssistantMessage]:
        """The class of the text replies."""
        ...

    @property
    def native_output(self) -> bool:
        """True when the provider takes a JSON-schema response format; False to ask through a forced tool."""
        ...

    @property
    def wrap_errors(self) -> bool:
        """True to turn any exception of `astream` into an `LLMError`; False (the fakes) to pass it on as it is."""
        ...

    def astream(self, request: TurnRequest) -> AsyncGenerator[Event, None]:
        """Send the request and yield its events; raise `LLMError` for provider failures."""
        ...


@dataclass
class LoopOptions:
    """The parameters every LLM agent shares (see e.g. `openai_agent` for their documentation)."""

    system: str | None = None
    stream: bool = True
    tools: Iterable[ToolLike] | None = None
    tool_choice: ToolChoice = None
    parallel_tool_calls: bool | None = None
    max_turns: int = DEFAULT_MAX_TURNS
    output_type: Any = None
    raise_tool_errors: bool = False
    reply_metadata: dict[str, Any] | None = None
    other_agents_as_user: bool = True
    tool_calling: ToolCalling = "native"
    max_tool_rounds: int | None = None

    def __post_init__(self) -> None:
        if self.max_tool_rounds is not None and (not isinstance(self.max_tool_rounds, int) or self.max_tool_rounds < 0):
            raise ValueError(f"max_tool_rounds must be None or an int >= 0, got {self.max_tool_rounds!r}")
        if self.tool_calling not in ("native", "json"):
            raise ValueError(f"tool_calling must be 'native' or 'json', got {self.tool_calling!r}")
        if not isinstance(self.max_turns, int) or self.max_turns < 1:
            raise ValueError(f"max_turns must be an int >= 1, got {self.max_turns!r}")
        if self.tool_choice not in (None, "auto", "required", "none") and not isinstance(self.tool_choice, str):
            raise ValueError(f"tool_choice must be 'auto', 'required', 'none' or a tool name, got {self.tool_choice!r}")

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> LoopOptions:
        """The options among an LLM agent function's arguments (its ``locals()``), taken by name.

        Names that are not options are left out, options not given keep their defaults; ``stream=None`` becomes
        the active context's default (`resolve_stream`).

        Raises:
            ValueError: an invalid option (see the checks above).
        """
        options = {name: arguments[name] for name in _OPTION_NAMES if name in arguments}
        options["stream"] = resolve_stream(options.get("stream"))
        return cls(**options)


_OPTION_NAMES = tuple(option.name for option in fields(LoopOptions))


@dataclass
class _OpenMessage:
    """A reply message being streamed: its appender, its text so far and the metadata it gets at the end."""

    appender: StreamAppender[str]
    promise: MessagePromise
    kind: Literal["text", "call", "output"]
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    final_metadata: dict[str, Any] = field(default_factory=dict)
    metadata_so_far: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def append(self, token: str) -> None:
        if token:
            self.parts.append(token)
            self.appender.append(token)

    def finish(self, error: BaseException | None = None) -> None:
        if not self.appender.is_open:
            return
        if error is not None:
            self.appender.__exit__(type(error), error, error.__traceback__)
            return
        if self.metadata_so_far is not None:
            self.metadata_so_far.update(self.final_metadata)
        self.appender.close()


class AgentLoop:
    """One inquiry of an LLM agent: ``await AgentLoop(ctx, adapter, options).arun()`` from the agent function."""

    def __init__(self, ctx: InteractionContext, adapter: ProviderAdapter, options: LoopOptions) -> None:
        self.ctx = ctx
        self.adapter = adapter
        self.options = options
        self.alias = ctx.this_agent.alias
        self.output = OutputSpec.of(options.output_type) if options.output_type is not None else None
        self.output_via_tool = self.output is not None and not adapter.native_output
        self.preliminary = {
            "role": "assistant",
            "model": adapter.model,
            "agent_alias": self.alias,
            **(options.reply_metadata or {}),
        }
        self._open: list[_OpenMessage] = []

    # --- the loop --------------------------------------------------------------------------------------------

    async def arun(self) -> None:
        """Run turns until the model answers without tool calls; reply every message on the way."""
        try:  # (one coroutine, not two: every token of the model resumes this frame)
            options = self.options
            try:  # (a misused tools=[...] raises ValueError or TypeError from here: the agent function fails)
                tools = await aresolve_tools(options.tools)
            except ToolSourceError as error:  # a tool source's failure is reported like the model's
                self._reply_failure(self._wrap(error.__cause__ or error, "could not list the tools"))
                return
            if self.output_via_tool and OUTPUT_TOOL_NAME in tools:
                raise ValueError(f"the tool name {OUTPUT_TOOL_NAME!r} is reserved for structured output")
            choice = options.tool_choice
            if choice not in (None, "auto", "required", "none") and choice not in tools:
                raise ValueError(
                    f"tool_choice={choice!r} names no tool of this agent; its tools are: {', '.join(tools)}"
                )
            conversation: list[Message] = self._prompt(await self.ctx.message_promises)
            tool_specs = [ToolSpec(t.name, t.description, t.parameters) for t in tools.values()]
            if self.output_via_tool and self.output is not None:
                tool_specs.append(
                    ToolSpec(OUTPUT_TOOL_NAME, f"Give the final answer as {self.output.name}.", self.output.schema)
                )
            json_tools = options.tool_calling == "json" and bool(tools)
            if json_tools and not self.adapter.native_output:
                raise ValueError(
                    f"tool_calling='json' needs a JSON-schema response format, which {self.adapter.provider} lacks"
                )
            tool_choice = options.tool_choice
            output = self._response_format()
            for turn in range(1, options.max_turns + 1):
                if options.max_tool_rounds is not None and turn > options.max_tool_rounds and tools:
                    tool_choice = "none"  # the tool rounds are used up: the model must answer now
                if self.output_via_tool:
                    turn_choice: ToolChoice = OUTPUT_TOOL_NAME if not tools or tool_choice == "none" else "required"
                else:
                    turn_choice = tool_choice
                if json_tools:
                    request = TurnRequest(
                        system=self._json_tools_system(tool_specs, turn_choice),
                        messages=_json_tools_conversation(conversation),
                        tools=(),
                        tool_choice=None,
                        parallel_tool_calls=None,
                        output=_json_tools_format(tool_specs, turn_choice, options.parallel_tool_calls, output),
                        stream=options.stream,
                    )
                    events = self._decode_json_tools(self._astream(request), structured=output is not None)
                else:
                    request = TurnRequest(
                        system=options.system,
                        messages=conversation,
                        tools=tool_specs,
                        tool_choice=turn_choice,
                        parallel_tool_calls=options.parallel_tool_calls,
                        output=output if not self.output_via_tool else None,
                        stream=options.stream,
                    )
                    events = self._astream(request)
                turn_messages = await self._aturn(events)
                if turn_messages is None:
                    return  # failed: the error is in the open message
                calls = [m for m in turn_messages if m.kind == "call"]
                if not calls or not tools or any(m.kind == "output" for m in turn_messages):
                    self._finish_final(turn_messages)
                    return
                if turn == options.max_turns:
                    self._finish_all(None, turn_messages)
                    raise LLMMaxTurnsError(
                        f"{self.adapter.provider} model {self.adapter.model!r} still called tools after "
                        f"max_turns={options.max_turns} turns",
                        provider=self.adapter.provider,
                        model=self.adapter.model,
                        max_turns=options.max_turns,
                    )
                self._finish_all(None, turn_messages)
                conversation.extend(self._as_conversation(turn_messages))
                conversation.extend(await self._arun_tools(calls, tools))
                if tool_choice not in (None, "auto", "none"):
                    tool_choice = "auto"  # a forced call is forced once, or the model could never answer
        except BaseException as error:
            self._finish_all(error)
            raise

    def _response_format(self) -> ResponseFormat | None:
        """The output's schema for a JSON-schema response format: its strict form when it has one."""
        if self.output is None:
            return None
        if self.output.strict_schema is not None:
            return ResponseFormat(self.output.name, self.output.strict_schema, strict=True)
        return ResponseFormat(self.output.name, self.output.schema)

    def _astream(self, request: TurnRequest) -> AsyncGenerator[Event, None]:
        """One model request (a ``chat {model}`` span around it when tracing is on)."""
        if not tracing_is_on():
            return self.adapter.astream(request)
        return trace_llm_events(
            self.adapter.astream(request),
            provider=self.adapter.provider,
            model=self.adapter.model,
            stream=request.stream,
            request_parameters=getattr(self.adapter, "kwargs", None),  # (the provider's request keyword arguments)
            prompt=lambda: openai_chat_messages(request.system, request.messages),
        )

    def _json_tools_system(self, tool_specs: Sequence[ToolSpec], tool_choice: ToolChoice) -> str:
        if tool_choice == "required" or (tool_choice not in (None, "auto", "none")):
            answer_rule = "Call a tool now."
        elif self.output is not None:
            answer_rule = "To give the final answer, answer with its JSON instead."
        else:
            answer_rule = 'To answer, answer with JSON {"response": "<your answer>"}.'
        listing = "\n".join(
            f"- {spec.name}: {spec.description} Arguments (JSON schema): {json.dumps(spec.parameters)}"
            for spec in tool_specs
        )
        note = _JSON_TOOLS_NOTE.format(answer_rule=answer_rule, tools=listing)
        return f"{self.options.system}\n\n{note}" if self.options.system else note

    async def _decode_json_tools(
        self, events: AsyncGenerator[Event, None], structured: bool
    ) -> AsyncGenerator[Event, None]:
        """Turn the JSON answer of ``tool_calling="json"`` back into text (streamed) and tool-call events."""
        buffer = ""
        decided: str | None = None
        emitted = 0
        async with contextlib.aclosing(events):
            async for event in events:
                if type(event) is not TextDelta:
                    yield event
                    continue
                buffer += event.text
                if decided is None:
                    try:
                        partial = pydantic_core.from_json(buffer, allow_partial="trailing-strings")
                    except ValueError:
                        continue
                    if not isinstance(partial, dict) or not partial:
                        continue
                    decided = "calls" if next(iter(partial)) == "tool_calls" else "answer"
                if decided == "answer" and structured:
                    yield TextDelta(buffer[emitted:])
                    emitted = len(buffer)
                elif decided == "answer":
                    try:
                        partial = pydantic_core.from_json(buffer, allow_partial="trailing-strings")
                    except ValueError:
                        continue
                    text = partial.get("response") if isinstance(partial, dict) else None
                    if isinstance(text, str) and len(text) > emitted:
                        yield TextDelta(text[emitted:])
                        emitted = len(text)
        if decided == "answer":
            if structured or emitted:
                return
            try:  # (a complete answer without a "response": nothing was given out)
                text = json.loads(buffer).get("response")
            except (ValueError, AttributeError):
                text = None
            if not isinstance(text, str):
                raise self._no_json_answer(buffer, 'neither "tool_calls" nor a string "response"')
            return
        try:
            answer = json.loads(buffer)
            calls = answer["tool_calls"]
        except (ValueError, KeyError, TypeError) as error:
            raise self._no_json_answer(buffer) from error
        if not (isinstance(calls, list) and all(isinstance(call, dict) for call in calls)):
            raise self._no_json_answer(buffer, '"tool_calls" is not a list of objects')
        for index, call in enumerate(calls):
            yield ToolCallDelta(
                index=index,
                arguments=json.dumps(call.get("arguments") or {}),
                call_id=f"call_{uuid.uuid4().hex[:16]}",
                name=str(call.get("name")),
            )

    def _no_json_answer(self, buffer: str, why: str = "") -> LLMResponseError:
        """The error of an answer that the JSON tool-calling mode cannot use (``why``: what is wrong with it)."""
        because = f" ({why})" if why else ""
        return LLMResponseError(
            f"{self.adapter.provider} model {self.adapter.model!r} gave no valid JSON answer{because}: "
            f"{buffer[:200]!r}",
            provider=self.adapter.provider,
            model=self.adapter.model,
        )

    def _prompt(self, messages: Sequence[Message]) -> list[Message]:
        """The input as the model sees it: another agent's answer is a user turn (unless disabled)."""
        if not self.options.other_agents_as_user:
            return list(messages)
        prompt: list[Message] = []
        for message in messages:
            alias = _field_of(message, "agent_alias")
            foreign = alias is not None and alias != self.alias
            if foreign and isinstance(message, (ToolCallMessage, ToolResultMessage)):
                continue  # another agent's tool traffic: only its answers matter here
            if foreign and _field_of(message, "role") == "assistant":
                prompt.append(UserMessage(text=str(message)))
            else:
                prompt.append(message)
        return prompt

    # --- one turn --------------------------------------------------------------------------------------------

    async def _aturn(self, events: AsyncGenerator[Event, None]) -> list[_OpenMessage] | None:
        """Stream one model answer into reply messages; return them still open (None when the turn failed)."""
        by_index: dict[int, _OpenMessage] = {}
        text_message: _OpenMessage | None = None
        turn_metadata: dict[str, Any] = {}
        start = len(self._open)
        try:
            try:
                async for event in events:
                    if type(event) is TextDelta:
                        if text_message is None:
                            text_message = self._open_text()
                        text_message.append(event.text)
                    elif type(event) is ToolCallDelta:
                        message = by_index.get(event.index)
                        if message is None:
                            message = by_index[event.index] = self._open_call(event.call_id or "", event.name or "")
                            text_message = None  # text after a tool call is a message of its own
                        message.append(event.arguments)
                    elif type(event) is MetadataDelta:
                        merge_metadata(turn_metadata, event.metadata)
            except BaseException:  # a failed or cancelled turn closes the provider's stream at once (`aclosing`
                await events.aclose()  # without its context manager: an exhausted stream needs no closing)
                raise
        except Exception as error:
            wrap = self.adapter.wrap_errors and not isinstance(error, LLMError)
            failure = self._wrap(error, "failed while streaming") if wrap else error
            turn_messages = self._open[start:]
            target = turn_messages[-1] if turn_messages else self._open_text()
            target.final_metadata.update(turn_metadata)
            for message in self._open[start:]:
                message.finish(failure if message is target else None)
            self._open = self._open[:start]
            return None
        turn_messages = self._open[start:]
        if not turn_messages:
            turn_messages = [self._open_text()]
        turn_metadata.pop("role", None)
        turn_messages[0].final_metadata.update(turn_metadata)
        return turn_messages

    def _open_text(self) -> _OpenMessage:
        message_class: type[Message] = self.adapter.message_class
        kind: Literal["text", "output"] = "text"
        if self.output is not None and not self.output_via_tool:
            message_class = _output_message_class(message_class, self.output)
            kind = "output"
        return self._open_message(message_class, kind, self.preliminary)

    def _open_call(self, call_id: str, name: str) -> _OpenMessage:
        if self.output_via_tool and name == OUTPUT_TOOL_NAME and self.output is not None:
            message_class = _output_message_class(self.adapter.message_class, self.output)
            return self._open_message(message_class, "output", self.preliminary)
        metadata = {**self.preliminary, "tool_call_id": call_id, "tool_name": name}
        message = self._open_message(ToolCallMessage, "call", metadata)
        message.call_id, message.name = call_id, name
        return message

    def _open_message(
        self, message_class: type[Message], kind: Literal["text", "call", "output"], metadata: dict[str, Any]
    ) -> _OpenMessage:
        appender = StreamAppender[str](capture_errors=True).open()
        holder: _OpenMessage

        def streamer(metadata_so_far: dict[str, Any]) -> StreamAppender[str]:
            holder.metadata_so_far = metadata_so_far
            if not holder.appender.is_open:  # finished before the promise started streaming
                metadata_so_far.update(holder.final_metadata)
            return appender

        promise = message_class.promise(start_asap=False, message_token_streamer=streamer, **metadata)
        holder = _OpenMessage(appender=appender, promise=promise, kind=kind)
        self._open.append(holder)
        self.ctx.reply(promise)
        return holder

    def _reply_failure(self, error: BaseException) -> None:
        self._open_text().finish(error)
        self._open.clear()

    # --- finishing -------------------------------------------------------------------------------------------

    def _finish_final(self, turn_messages: list[_OpenMessage]) -> None:
        """Close the messages of the last turn; the structured answer is validated first."""
        error: LLMError | None = None
        output_message = next((m for m in reversed(turn_messages) if m.kind == "output"), None)
        if self.output is not None:
            if output_message is None:  # the model answered in prose instead of calling the output tool
                output_message = next((m for m in reversed(turn_messages) if m.kind == "text"), turn_messages[-1])
            try:
                self.output.checked(output_message.text, self.adapter.provider, self.adapter.model)
            except LLMError as validation_error:
                error = validation_error
        for message in turn_messages:
            message.finish(error if message is output_message else None)
        self._open.clear()

    def _finish_all(self, error: BaseException | None, messages: Iterable[_OpenMessage] | None = None) -> None:
        for message in list(messages if messages is not None else self._open):
            message.finish(error)
        self._open.clear()

    def _as_conversation(self, turn_messages: list[_OpenMessage]) -> list[Message]:
        """Plain messages of a turn for the next request (without waiting for the reply promises)."""
        conversation: list[Message] = []
        for message in turn_messages:
            if message.kind == "call":
                conversation.append(
                    ToolCallMessage(
                        text=message.text,
                        tool_call_id=message.call_id,
                        tool_name=message.name,
                        agent_alias=self.alias,
                    )
                )
            elif message.text:
                conversation.append(AssistantMessage(text=message.text, agent_alias=self.alias))
        return conversation

    # --- tools -----------------------------------------------------------------------------------------------

    async def _arun_tools(self, calls: list[_OpenMessage], tools: dict[str, Tool]) -> list[Message]:
        """Run the calls of one turn concurrently (each an agent call); reply and return their results."""
        if len(calls) == 1:  # no task of its own for a single call: one event-loop hop less
            texts = [await self._arun_tool(calls[0], tools)]
        else:
            texts = await asyncio.gather(*(self._arun_tool(call, tools) for call in calls))
        results: list[Message] = []
        for call, (text, is_error) in zip(calls, texts, strict=True):
            result = ToolResultMessage(
                text=text,
                tool_call_id=call.call_id,
                tool_name=call.name,
                is_error=is_error,
                agent_alias=self.alias,
            )
            self.ctx.reply(result)
            results.append(result)
        return results

    async def _arun_tool(self, call: _OpenMessage, tools: dict[str, Tool]) -> tuple[str, bool]:
        try:
            if not tracing_is_on():
                return await self._acall_tool(call, tools), False
            tool = tools.get(call.name)
            with trace_tool_call(
                call.name,
                call_id=call.call_id,
                description=None if tool is None else tool.description,
                arguments=call.text,
            ) as span:  # (around the checks too: a call refused before it runs has its span, marked failed)
                result = await self._acall_tool(call, tools)
                span.set_result(result)
            return result, False
        except Exception as error:
            if self.options.raise_tool_errors:
                raise LLMToolError(
                    f"the tool {call.name!r} called by {self.adapter.provider} model {self.adapter.model!r} "
                    f"failed: {type(error).__name__}: {error}",
                    provider=self.adapter.provider,
                    model=self.adapter.model,
                    tool_name=call.name,
                ) from error
            return _error_result(error), True

    @staticmethod
    async def _acall_tool(call: _OpenMessage, tools: dict[str, Tool]) -> str:
        """Check the call's arguments and run its tool; the text of the tool's replies."""
        tool = tools.get(call.name)
        if tool is None:
            raise LookupError(f"there is no tool named {call.name!r}; the tools are: {', '.join(tools)}")
        text = call.text
        try:
            arguments = json.loads(text) if text and not text.isspace() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"the arguments are not valid JSON: {error}") from error
        if type(arguments) is not dict:
            raise ValueError(f"the arguments must be a JSON object, got {text!r}")
        kwargs = tool.validate_arguments(arguments)
        return _result_text(await tool.agent.inquire(**kwargs))

    def _wrap(self, error: BaseException, what: str) -> LLMError:
        provider, model = self.adapter.provider, self.adapter.model
        return _chained(
            LLMError(
                f"{provider} model {model!r} {what}: {type(error).__name__}: {error}", provider=provider, model=model
            ),
            error,
        )


def _chained(error: LLMError, cause: BaseException) -> LLMError:
    error.__cause__ = cause
    return error


def _result_text(replies: Sequence[Message]) -> str:
    """The text of a tool's replies, joined with blank lines."""
    if len(replies) == 1:
        return str(replies[0])
    return "\n\n".join([str(reply) for reply in replies])


def _error_result(error: Exception) -> str:
    if isinstance(error, pydantic.ValidationError):
        return f"Error: invalid arguments: {error}"
    return f"Error: {type(error).__name__}: {error}"


# --- the OpenAI chat format, shared by the OpenAI-compatible adapters (OpenAI, llama.cpp, the fakes) -----------


def openai_chat_messages(system: str | None, messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The ``messages`` of a chat completions request: the system prompt, then one dict per message.

    A `ToolCallMessage` joins the assistant dict before it (``tool_calls``), as the API wants a turn's text and
    calls in one assistant message; a `ToolResultMessage` is a ``"tool"`` dict. A lone surrogate in a text (which
    UTF-8, and so the API, cannot take) becomes U+FFFD, and a surrogate pair its character.
    """
    dicts: list[dict[str, Any]] = [{"role": "system", "content": system}] if system is not None else []
    for message in messages:
        if isinstance(message, ToolCallMessage):
            call = _openai_tool_call_dict(message)
            last = dicts[-1] if dicts else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last.get("content"):
                    last["content"] = None
            else:
                dicts.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            dicts.append(message_to_llm_dict(message))
    return utf8_texts_in(dicts)


def openai_request_params(request: TurnRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` in the OpenAI format."""
    params: dict[str, Any] = {}
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters},
            }
            for spec in request.tools
        ]
        if request.tool_choice is not None:
            params["tool_choice"] = (
                request.tool_choice
                if request.tool_choice in ("auto", "required", "none")
                else {"type": "function", "function": {"name": request.tool_choice}}
            )
        if request.parallel_tool_calls is not None:
            params["parallel_tool_calls"] = request.parallel_tool_calls
    if request.output is not None:
        json_schema: dict[str, Any] = {"name": request.output.name, "schema": request.output.schema}
        if request.output.strict:
            json_schema["strict"] = True
        params["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    return params


def chat_chunk_events(chunk: dict[str, Any]) -> Iterator[Event]:
    """The events of one chat completion chunk (as a dict): content, tool-call pieces, then its metadata."""
    choices = chunk.get("choices") or ()
    choice_metadata = []
    for choice in choices:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            yield TextDelta(content)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            yield ToolCallDelta(
                index=call.get("index") or 0,
                arguments=function.get("arguments") or "",
                call_id=call.get("id"),
                name=function.get("name"),
            )
        choice_metadata.append({key: value for key, value in choice.items() if key != "delta"})
    metadata = {key: value for key, value in chunk.items() if key != "choices"}
    if choice_metadata:
        metadata["choices"] = choice_metadata
    yield MetadataDelta(metadata)


def chat_response_events(response: dict[str, Any], provider: str, model: str | None) -> Iterator[Event]:
    """The events of a whole chat completion (as a dict).

    Raises:
        LLMResponseError: the response does not hold exactly one choice.
    """
    choices = response.get("choices") or []
    if len(choices) != 1:
        raise LLMResponseError(
            f"{provider} returned {len(choices)} choices for model {model!r}, expected exactly 1",
            provider=provider,
            model=model,
        )
    message = choices[0].get("message") or {}
    content = message.get("content")
    if content:
        yield TextDelta(content)
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        yield ToolCallDelta(
            index=index, arguments=function.get("arguments") or "", call_id=call.get("id"), name=function.get("name")
        )
    metadata = {key: value for key, value in response.items() if key != "choices"}
    metadata["choices"] = [{key: value for key, value in choices[0].items() if key != "message"}]
    yield MetadataDelta(metadata)


# --- tool_calling="json": tools through a JSON-schema answer, for models without native tool calling ------------


def _json_tools_format(
    tool_specs: Sequence[ToolSpec],
    tool_choice: ToolChoice,
    parallel_tool_calls: bool | None,
    output: ResponseFormat | None,
) -> ResponseFormat:
    """The schema of an answer that is either ``{"tool_calls": [...]}`` or the answer itself."""
    definitions: dict[str, Any] = {}

    def hoisted(schema: dict[str, Any]) -> dict[str, Any]:
        schema = dict(schema)
        definitions.update(schema.pop("$defs", {}))
        return schema

    forced = tool_choice not in (None, "auto", "none", "required")
    items = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "const": spec.name}, "arguments": hoisted(spec.parameters)},
            "required": ["name", "arguments"],
        }
        for spec in tool_specs
        if not forced or spec.name == tool_choice
    ]
    calls: dict[str, Any] = {"type": "array", "items": {"anyOf": items} if len(items) > 1 else items[0], "minItems": 1}
    if parallel_tool_calls is False:
        calls["maxItems"] = 1
    calls_schema = {"type": "object", "properties": {"tool_calls": calls}, "required": ["tool_calls"]}
    answer_schema = (
        hoisted(output.schema)
        if output is not None
        else {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}
    )
    if tool_choice == "none":
        schema = answer_schema
    elif tool_choice == "required" or forced:
        schema = calls_schema
    else:
        schema = {"anyOf": [calls_schema, answer_schema]}
    if definitions:
        schema = {**schema, "$defs": definitions}
    return ResponseFormat("tool_calls_or_answer", schema)


def _json_tools_conversation(conversation: Sequence[Message]) -> list[Message]:
    """Tool calls and results as plain turns, for models whose chat template knows no tools."""
    plain: list[Message] = []
    for message in conversation:
        if isinstance(message, ToolCallMessage):
            try:
                arguments: Any = message.arguments
            except ValueError:
                arguments = {}
            call = {"name": message.tool_name, "arguments": arguments}
            last = plain[-1] if plain else None
            if isinstance(last, AssistantMessage) and str(last).startswith('{"tool_calls"'):
                previous = json.loads(str(last))
                plain[-1] = AssistantMessage(text=json.dumps({"tool_calls": [*previous["tool_calls"], call]}))
            else:
                plain.append(AssistantMessage(text=json.dumps({"tool_calls": [call]})))
        elif isinstance(message, ToolResultMessage):
            status = "failed" if message.is_error else "returned"
            plain.append(
                UserMessage(
                    text=f"The tool {message.tool_name} {status}: {message}\nUse this to answer, or call a tool."
                )
            )
        else:
            plain.append(message)
    return plain
