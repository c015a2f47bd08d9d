"""`MiniAgent` and the `miniagent` decorator: an ``async def`` function you talk to through inquiries."""

from __future__ import annotations

import asyncio
import copy
import re
import sys
from collections.abc import Callable
from typing import Any, overload

from miniagents._agent_call import AgentCall
from miniagents._mini_agents import MiniAgents
from miniagents.messages import MessageSequencePromise, MessageType
from miniagents.miniagent_typing import AgentFunction
from miniagents.promising.ext.frozen import Frozen
from miniagents.promising.sentinels import DEFAULT, Sentinel

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Self

__all__ = ["MiniAgent", "miniagent"]

_IMMUTABLE_LEAVES = frozenset({str, int, float, bool, type(None)})


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
    ) -> Self:
        """Make a new agent around the same function with more (or overriding) bound kwargs.

        The fork is an instance of the same class as this agent, with a shallow copy of its state (a subclass
        such as the scripted fake LLM agent keeps its attributes). The alias and description are inherited
        unless given (and are not re-normalized); interaction metadata is merged (new keys win); fork kwargs may
        be any objects and are not copied. Call-time `inquire` kwargs override them.
        """
        forked = copy.copy(self)  # the same class and state (a subclass keeps its own attributes)
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
            tuple of messages, ``cancel()`` it to cancel the call, or ``async with`` it to cancel the call when
            the block is left while the call still runs (``async with asyncio.timeout(5), agent.inquire(m) as
            replies:`` is the timeout idiom).

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
            if all(type(value) in _IMMUTABLE_LEAVES for value in function_kwargs.values()):
                kwargs = {**self._partial_kwargs, **function_kwargs}  # (nothing to copy: deepcopy would return them)
            else:
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
