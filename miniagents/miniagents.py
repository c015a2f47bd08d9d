"""Agents and the `MiniAgents` context.

An agent is an ``async def agent(ctx: InteractionContext, **kwargs)`` function under `@miniagent`. Inquiring it
returns a `MessageSequencePromise` at once; the function runs in its own task (soon, by default) and its replies
stream to whoever consumes them.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, overload

from miniagents.messages import (
    Message,
    MessagePromise,
    MessageSequence,
    MessageSequencePromise,
    _FlattenerFactory,
    _promise_of_leaf,
    freeze_message_type,
)
from miniagents.miniagent_typing import AgentFunction, MessageType, PersistMessageEventHandler
from miniagents.promising.ext.frozen import Frozen
from miniagents.promising.promising import (
    PromiseResolvedHandler,
    PromisingContext,
    StreamAppender,
    _as_handler_list,
    _current_task,
    _Failure,
    is_own_cancellation,
    log_error_once,
    require_coroutine_function,
)
from miniagents.promising.sentinels import DEFAULT, END_OF_QUEUE, Sentinel

__all__ = [
    "AgentCall",
    "AgentCallNode",
    "AgentInteractionNode",
    "AgentReplyNode",
    "InteractionContext",
    "Message",
    "MessagePromise",
    "MessageSequencePromise",
    "MiniAgent",
    "MiniAgents",
    "miniagent",
]

_current_interaction: contextvars.ContextVar[InteractionContext | None] = contextvars.ContextVar(
    "miniagents_current_interaction", default=None
)

_NODE_FIELDS = frozenset({"class_", "text", "text_template", "agent_alias", "messages", "replies", "agent_call"})


class AgentInteractionNode(Message):
    """A metadata message about one agent interaction (persisted through `MiniAgents.on_persist_message`)."""

    agent_alias: str


class AgentCallNode(AgentInteractionNode):
    """An agent was called: its input messages, the interaction metadata and the inquire kwargs.

    Inquire kwargs whose names clash with the node's own fields are stored as ``kwarg_<name>``.
    """

    messages: tuple[Message, ...]


class AgentReplyNode(AgentInteractionNode):
    """An agent replied (without error): its replies and the call they answer."""

    replies: tuple[Message, ...]
    agent_call: AgentCallNode


class MiniAgents(PromisingContext):
    """The context every agent runs in.

    Use it in one of three ways: ``MiniAgents().run(main())`` (blocking), ``async with MiniAgents(): …``, or
    ``ma = MiniAgents(); ma.activate()`` … ``await ma.afinalize()`` (for servers; it affects the current task and
    tasks created from it afterwards). Leaving the context finishes unfinished top-level `AgentCall`s and waits
    for every background task, agents included.

    Args:
        stream_llm_tokens_by_default: the default of the LLM agents' ``stream`` parameter.
        on_promise_resolved: see `PromisingContext.on_promise_resolved`.
        on_persist_message: one ``async def handler(promise, message)`` or an iterable of them, see
            `on_persist_message`.
        **promising_kwargs: the other `PromisingContext` arguments (``start_everything_asap_by_default`` …).

    Raises:
        TypeError: a handler is not an ``async def`` function.
    """

    def __init__(
        self,
        stream_llm_tokens_by_default: bool = True,
        on_promise_resolved: PromiseResolvedHandler | Iterable[PromiseResolvedHandler] = (),
        on_persist_message: PersistMessageEventHandler | Iterable[PersistMessageEventHandler] = (),
        **promising_kwargs: Any,
    ) -> None:
        super().__init__(on_promise_resolved=on_promise_resolved, **promising_kwargs)
        self.stream_llm_tokens_by_default = stream_llm_tokens_by_default
        self._on_persist_message_handlers: list[PersistMessageEventHandler] = _as_handler_list(
            on_persist_message, "an on_persist_message handler"
        )
        self._has_handlers = self._has_handlers or bool(self._on_persist_message_handlers)
        self._unfinished_agent_calls: dict[AgentCall, None] = {}

    def on_persist_message(self, handler: PersistMessageEventHandler) -> PersistMessageEventHandler:
        """Register ``async def handler(promise, message)``; usable as a decorator (returns the handler).

        Whenever any promise resolves to a `Message` (interaction nodes and prefilled messages included),
        the handler runs in the background for each not yet persisted sub-message (depth-first) and then for
        the message itself: at most once per message instance. Equal messages that are different instances
        are persisted once each, with the same `hash_key`. Handler errors are logged and swallowed.

        Raises:
            TypeError: ``handler`` is not an ``async def`` function.
        """
        require_coroutine_function(handler, "an on_persist_message handler")
        self._on_persist_message_handlers.append(handler)
        self._has_handlers = True
        return handler

    def _dispatch_promise_resolved(self, promise: Any, result: Any) -> None:
        super()._dispatch_promise_resolved(promise, result)
        if self._on_persist_message_handlers and isinstance(result, Message) and not result._persisted:
            for sub_message in result.sub_messages():
                if not sub_message._persisted:
                    sub_message._persisted = True  # before `as_promise`, whose own event must not persist it again
                    self._persist(sub_message.as_promise, sub_message)
            if not result._persisted:
                result._persisted = True
                self._persist(promise, result)

    def _persist(self, promise: MessagePromise, message: Message) -> None:
        for handler in self._on_persist_message_handlers:
            self.start_asap(
                handler(promise, message), suppress_errors=True, log_level_for_errors=self.log_level_for_errors
            )

    def _wants_interaction_nodes(self) -> bool:
        """Interaction nodes are only built when someone can observe their resolution."""
        context: PromisingContext | None = self
        while context is not None:
            if context._has_handlers:
                return True
            context = context.parent
        return False

    async def afinalize(self) -> None:
        """Finish unfinished top-level agent calls, wait for all background tasks, then deactivate."""
        try:
            while True:
                for agent_call in list(self._unfinished_agent_calls):
                    agent_call.finish()
                await self.aflush_tasks()
                if not self._unfinished_agent_calls:
                    break
        finally:
            self._deactivate()


class InteractionContext:
    """What an agent function receives as ``ctx``: its input, and the means to reply.

    Attributes:
        this_agent: the `MiniAgent` being run.
        message_promises: the input, a replayable `MessageSequencePromise` (alias `messages`).
    """

    def __init__(
        self,
        this_agent: MiniAgent,
        message_promises: MessageSequencePromise,
        reply_appender: StreamAppender[Any],
        mini_agents: MiniAgents,
    ) -> None:
        self.this_agent = this_agent
        self.message_promises = message_promises
        self._reply_appender = reply_appender
        self._mini_agents = mini_agents
        self._unfinished_agent_calls: dict[AgentCall, None] = {}
        self._awaited_tasks: list[asyncio.Task[Any]] = []
        self._done = False

    @property
    def messages(self) -> MessageSequencePromise:
        """Alias of `message_promises`."""
        return self.message_promises

    def reply(self, messages: MessageType) -> None:
        """Append to this agent's replies, without blocking; any number of times, from sync code too.

        ``messages`` may be any `MessageType` structure, other agents' reply sequences included. Sync iterables
        are read right away (a list changed later does not change the reply).

        Raises:
            TypeError: an unsupported type, ``None`` included.
            AppenderClosedError: the replies were finished already (`finish_early`).
        """
        self._reply_appender.append(freeze_message_type(messages))

    def finish_early(self) -> None:
        """Close the replies now; the function may keep running, but `reply` raises from now on."""
        self._reply_appender.close()

    def wait_for(self, awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
        """Schedule ``awaitable`` now and await it before the replies close; its errors are logged, not raised.

        Returns:
            The background `asyncio.Task`.
        """
        task = self._mini_agents.start_asap(
            awaitable, suppress_errors=True, log_level_for_errors=self._mini_agents.log_level_for_errors
        )
        self._awaited_tasks.append(task)
        return task

    async def afinish_early(self) -> None:
        """Await everything registered with `wait_for`, then close the replies."""
        await self._await_waited_for()
        self.finish_early()

    async def _await_waited_for(self) -> None:
        while self._awaited_tasks:
            tasks, self._awaited_tasks = self._awaited_tasks, []
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finish(self) -> None:
        self._done = True
        for agent_call in list(self._unfinished_agent_calls):
            agent_call.finish()


class AgentCall:
    """An inquiry in progress: send input messages, then get the reply sequence.

    Created by `MiniAgent.initiate_inquiry`. If it is never finished, it is finished automatically when the
    agent function that created it returns (or, at top level, when the `MiniAgents` context ends).
    """

    # State of the direct-reply path (start_asap only, see ``__init__``), shared through the class until it changes.
    _driver_started = False  # the driver task flattens the replies from now on
    _returning = False  # the agent function has returned (see `_arun_agent`)
    _resolve_replies_later = False  # the agent's task resolves the replies once the function returned

    def __init__(
        self,
        agent: MiniAgent,
        mini_agents: MiniAgents,
        function_kwargs: dict[str, Any],
        frozen_kwargs: Frozen | None,
        start_asap: bool | Sentinel,
    ) -> None:
        self._agent = agent
        self._mini_agents = mini_agents
        self._function_kwargs = function_kwargs
        self._frozen_kwargs = frozen_kwargs
        # What `MessageSequence(appender_capture_errors=True, start_asap=False)` (the input; its promise is made
        # when the agent starts, see `_arun_agent`) and `MessageSequence(start_asap=start_asap,
        # incoming_streamer=self._start_agent)` (the replies) would make, lighter: fewer objects per inquiry.
        self._request_appender: StreamAppender[Any] = StreamAppender(capture_errors=True).open()
        self._request_promise: MessageSequencePromise | None = None
        self._reply_appender: StreamAppender[Any] = StreamAppender(capture_errors=True).open()
        self._agent_started = False
        if mini_agents.start_everything_asap_by_default if start_asap is DEFAULT else start_asap:
            # The replies are driven in the background from now on. The agent is started right away (in the
            # reference design, the driver task starts it when it first runs). Replies that are single messages
            # go straight into the reply sequence, in order, from `reply()`; the driver task (`_adrain`) is only
            # started for the first reply that needs flattening over time (a collection, another agent's
            # replies, an async iterable, an exception) and takes over from there. An agent that only replies
            # messages needs no second task at all.
            self._reply_promise = MessageSequencePromise(start_asap=False)  # (its streamer comes with the driver)
            self._reply_promise._produce_elsewhere()
            self._reply_appender._direct = self  # (see `_take_directly`)
            self._start_agent(None)
        else:
            self._reply_promise = MessageSequence._light_sequence_promise(self._start_agent, start_asap=False)
        owner = _current_interaction.get()
        self._owner: MiniAgents | InteractionContext = mini_agents if owner is None or owner._done else owner
        self._owner._unfinished_agent_calls[self] = None

    def send_message(self, messages: MessageType) -> AgentCall:
        """Send input to the agent; returns ``self`` (chainable).

        Raises:
            TypeError: an unsupported message type, ``None`` included.
            AppenderClosedError: the call was finished already.
        """
        self._request_appender.append(freeze_message_type(messages))
        return self

    def finish(self) -> AgentCall:
        """Close the input (idempotent); returns ``self``."""
        self._request_appender.close()
        self._owner._unfinished_agent_calls.pop(self, None)
        return self

    def reply_sequence(self) -> MessageSequencePromise:
        """Finish the input and return the agent's replies."""
        self.finish()
        return self._reply_promise

    def _take_directly(self, item: Any) -> bool:
        """The reply appender's direct path until the driver task starts (see ``__init__``)."""
        if self._driver_started:
            return False
        promise = self._reply_promise
        pieces = promise._pieces
        if pieces and pieces[-1] is END_OF_QUEUE:
            return True  # ended already (an error was captured): nothing can follow
        if item is END_OF_QUEUE or type(item) is _Failure:
            self._reply_appender._direct = None
            if item is not END_OF_QUEUE:
                promise._append(item)
            promise._append(END_OF_QUEUE)
            # When the agent function has returned, its task resolves the replies (if they still need awaiting,
            # e.g. a message that is still streaming), instead of a new task.
            self._resolve_replies_later = promise._resolve_after_the_end(start_task=not self._returning)
            return True
        if isinstance(item, (str, Message, MessagePromise)):
            promise._append(_promise_of_leaf(item))
            return True
        self._driver_started = True  # this item needs flattening over time: the driver queues up from here
        promise._streamer_function = _FlattenerFactory(self._start_agent)
        self._mini_agents._start_soon(promise._adrain())
        return False

    def _start_agent(self, _: Any) -> StreamAppender[Any]:
        """Start the agent function in its own task (once); as the replies' incoming streamer, give their appender.

        Called when the reply sequence is first driven (lazy inquiries), or right away (see ``__init__``).
        """
        if not self._agent_started:
            self._agent_started = True
            # Like `MiniAgents._start_soon(self._arun_agent())`, without its wrapper coroutine (see the end there).
            task = asyncio.get_running_loop().create_task(self._arun_agent())
            self._mini_agents.child_tasks.add(task)
        return self._reply_appender

    async def _arun_agent(self) -> None:
        agent = self._agent
        mini_agents = self._mini_agents
        try:
            request_promise = self._request_promise = MessageSequence._light_sequence_promise(
                self._request_appender, start_asap=False
            )
            ctx = InteractionContext(agent, request_promise, self._reply_appender, mini_agents)
            _current_interaction.set(ctx)
            try:
                with self._reply_appender:
                    try:
                        await agent.func(ctx, **self._function_kwargs)
                    except BaseException as error:
                        if not is_own_cancellation(error):
                            log_error_once(error, mini_agents.log_level_for_errors, f"the agent {agent.alias} failed")
                        raise
                    finally:
                        if ctx._awaited_tasks:
                            await ctx._await_waited_for()
                        self._returning = True
            finally:
                ctx._finish()
                if mini_agents._wants_interaction_nodes():
                    mini_agents._start_soon(self._abuild_interaction_nodes())
            if self._resolve_replies_later:
                await self._aresolve_replies()
        except BaseException as error:  # what `PromisingContext._arun_own` does for background work
            if self._resolve_replies_later:  # (not awaited above: this came first)
                self._resolve_replies_later = False
                mini_agents._start_soon(self._reply_promise._aresolve_in_background())
            if is_own_cancellation(error):
                raise
            log_error_once(error, mini_agents.log_level_for_errors)
        finally:
            mini_agents.child_tasks.discard(_current_task())

    async def _aresolve_replies(self) -> None:
        """Resolve the replies in the background, in the agent's task (see `_take_directly`)."""
        self._resolve_replies_later = False
        try:
            await self._reply_promise._aresolve_in_background()
        except BaseException:  # our own cancellation: the replies must still be resolved, in a task of their own
            if not self._reply_promise.is_resolved:
                self._mini_agents._start_soon(self._reply_promise._aresolve_in_background())
            raise

    async def _abuild_interaction_nodes(self) -> None:
        messages = []
        assert self._request_promise is not None  # (made when the agent started)
        try:
            async for message_promise in self._request_promise:
                messages.append(await message_promise)
        except BaseException as error:  # the node records the input that could be read
            if is_own_cancellation(error):
                raise
        fields = self._agent.interaction_metadata.frozen_fields_and_values()
        if self._frozen_kwargs is not None:
            for name, value in self._frozen_kwargs.frozen_fields_and_values().items():
                fields[f"kwarg_{name}" if name in _NODE_FIELDS else name] = value
        call_node = AgentCallNode(messages=tuple(messages), agent_alias=self._agent.alias, **fields)
        call_node.as_promise  # noqa: B018 - resolving the node's promise is what persists it
        try:
            replies = await self._reply_promise
        except BaseException as error:  # no reply node for a failed reply sequence
            if is_own_cancellation(error):
                raise
            return
        AgentReplyNode(replies=replies, agent_call=call_node, agent_alias=self._agent.alias).as_promise  # noqa: B018


class MiniAgent:
    """An agent: an ``async def`` function you talk to through `inquire`, `initiate_inquiry` and `fork`.

    Create it with `miniagent`. It is not callable itself.

    Attributes:
        alias: the agent's name (the function name upper-cased by default), also its ``__name__``.
        description: the docstring with whitespace runs collapsed (by default), also its ``__doc__``.
        interaction_metadata: a `Frozen` merged into the interaction nodes.
    """

    def __init__(
        self,
        func: AgentFunction,
        alias: str | None = None,
        description: str | None = None,
        uppercase_func_name: bool = True,
        normalize_spaces_in_docstring: bool = True,
        interaction_metadata: dict[str, Any] | Frozen | None = None,
        **partial_kwargs: Any,
    ) -> None:
        if not asyncio.iscoroutinefunction(func):
            raise TypeError(
                f"an agent function must be an `async def` function taking `ctx` first, got {func!r}: "
                f"define it as `async def {getattr(func, '__name__', 'agent')}(ctx: InteractionContext, ...)`"
            )
        self.func = func
        if alias is None:
            alias = func.__name__.upper() if uppercase_func_name else func.__name__
        if description is None:
            description = func.__doc__
            if description is not None and normalize_spaces_in_docstring:
                description = re.sub(r"\s+", " ", description).strip()
        if description is not None:
            description = description.replace("{AGENT_ALIAS}", alias)
        self._set_names(alias, description)
        self.interaction_metadata = _as_frozen(interaction_metadata)
        self._partial_kwargs = partial_kwargs

    def _set_names(self, alias: str, description: str | None) -> None:
        self.alias: str = alias
        self.description: str | None = description
        self.__name__ = alias
        self.__doc__ = description

    def __repr__(self) -> str:
        return f"MiniAgent({self.alias})"

    def fork(
        self,
        alias: str | None = None,
        description: str | None = None,
        interaction_metadata: dict[str, Any] | Frozen | None = None,
        **partial_kwargs: Any,
    ) -> MiniAgent:
        """Make a new agent around the same function with more (or overriding) bound kwargs.

        The alias and description are inherited unless given (and are not re-normalized); interaction metadata
        is merged (new keys win); fork kwargs may be any objects and are not copied. Call-time `inquire`
        kwargs override them.
        """
        forked = object.__new__(MiniAgent)
        forked.func = self.func
        forked._set_names(
            self.alias if alias is None else alias, self.description if description is None else description
        )
        if interaction_metadata is None:
            forked.interaction_metadata = self.interaction_metadata
        else:
            merged = self.interaction_metadata.frozen_fields_and_values()
            merged.update(_as_frozen(interaction_metadata).frozen_fields_and_values())
            forked.interaction_metadata = Frozen(**merged)
        forked._partial_kwargs = {**self._partial_kwargs, **partial_kwargs}
        return forked

    def inquire(
        self, messages: MessageType | None = None, start_asap: bool | Sentinel = DEFAULT, **function_kwargs: Any
    ) -> MessageSequencePromise:
        """Send ``messages`` (if not None) to the agent and return its replies, immediately.

        Args:
            messages: any `MessageType` structure.
            start_asap: run the agent soon even if nobody consumes the replies (True), only once someone does
                (False), or as the context says (`DEFAULT`).
            **function_kwargs: keyword arguments for the agent function; they must be freezable (see `Frozen`)
                and the function gets a deep copy of them.

        Returns:
            The `MessageSequencePromise` of the replies: iterate it for message promises, await it for the
            tuple of messages.

        Raises:
            pydantic.ValidationError: a kwarg cannot be frozen.
            TypeError: an unsupported message type.
            NoActiveContextError: no `MiniAgents` context is active.
        """
        agent_call = self.initiate_inquiry(start_asap=start_asap, **function_kwargs)
        if messages is not None:
            agent_call.send_message(messages)
        return agent_call.reply_sequence()

    def initiate_inquiry(self, start_asap: bool | Sentinel = DEFAULT, **function_kwargs: Any) -> AgentCall:
        """Start an inquiry whose input you send piece by piece (alias `start_inquiry`).

        Returns:
            An `AgentCall`: ``send_message()`` as often as needed, then ``reply_sequence()``.

        Raises:
            pydantic.ValidationError: a kwarg cannot be frozen.
            NoActiveContextError: no `MiniAgents` context is active.
        """
        mini_agents = MiniAgents.get_current()
        if function_kwargs:
            frozen_kwargs: Frozen | None = Frozen(**function_kwargs)
            kwargs = {**self._partial_kwargs, **copy.deepcopy(function_kwargs)}
        else:
            frozen_kwargs = None
            kwargs = self._partial_kwargs
        return AgentCall(self, mini_agents, kwargs, frozen_kwargs, start_asap)

    start_inquiry = initiate_inquiry
    initiate_call = initiate_inquiry
    trigger = inquire


def _as_frozen(metadata: dict[str, Any] | Frozen | None) -> Frozen:
    if metadata is None:
        return Frozen()
    if isinstance(metadata, Frozen):
        return metadata
    return Frozen(**metadata)


@overload
def miniagent(func: AgentFunction, /) -> MiniAgent: ...


@overload
def miniagent(
    func: None = None,
    /,
    alias: str | None = None,
    description: str | None = None,
    uppercase_func_name: bool = True,
    normalize_spaces_in_docstring: bool = True,
    interaction_metadata: dict[str, Any] | None = None,
    **partial_kwargs: Any,
) -> Callable[[AgentFunction], MiniAgent]: ...


@overload
def miniagent(
    func: AgentFunction,
    /,
    alias: str | None = None,
    description: str | None = None,
    uppercase_func_name: bool = True,
    normalize_spaces_in_docstring: bool = True,
    interaction_metadata: dict[str, Any] | None = None,
    **partial_kwargs: Any,
) -> MiniAgent: ...


def miniagent(
    func: AgentFunction | None = None,
    /,
    alias: str | None = None,
    description: str | None = None,
    uppercase_func_name: bool = True,
    normalize_spaces_in_docstring: bool = True,
    interaction_metadata: dict[str, Any] | None = None,
    **partial_kwargs: Any,
) -> MiniAgent | Callable[[AgentFunction], MiniAgent]:
    """Turn ``async def f(ctx: InteractionContext, **kwargs)`` into a `MiniAgent`.

    Use it bare (``@miniagent``), with arguments (``@miniagent(alias="BOT")``) or as a call
    (``miniagent(f, alias="BOT")``).

    Args:
        func: the agent function.
        alias: the agent's name; the function name (upper-cased if ``uppercase_func_name``) by default.
        description: the docstring by default (whitespace collapsed if ``normalize_spaces_in_docstring``);
            the literal ``{AGENT_ALIAS}`` in it is replaced by the alias.
        uppercase_func_name: upper-case the default alias.
        normalize_spaces_in_docstring: collapse whitespace runs in the default description.
        interaction_metadata: a dict merged into the interaction nodes.
        **partial_kwargs: kwargs bound to the function (like `functools.partial`), neither frozen nor copied.

    Raises:
        TypeError: the function is not an ``async def`` function.

    Example:
        >>> @miniagent
        ... async def echo_agent(ctx: InteractionContext) -> None:
        ...     async for message_promise in ctx.message_promises:
        ...         ctx.reply(f"You said: {await message_promise}")
    """

    def decorate(function: AgentFunction) -> MiniAgent:
        return MiniAgent(
            function,
            alias=alias,
            description=description,
            uppercase_func_name=uppercase_func_name,
            normalize_spaces_in_docstring=normalize_spaces_in_docstring,
            interaction_metadata=interaction_metadata,
            **partial_kwargs,
        )

    return decorate if func is None else decorate(func)
