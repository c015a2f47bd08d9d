"""An agent call from both sides: `AgentCall` (the caller's handle) and `InteractionContext` (the agent's ``ctx``).

A call runs its agent function in a task of its own and is a `WorkScope`: every background task started while the
function runs (the streaming of its reply messages, lazy fetches, ``ctx.wait_for``) belongs to it, and every agent
call made inside it is its child. `AgentCall.cancel` stops all of that, depth-first.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol, cast

from miniagents._nodes import NODE_FIELDS, AgentCallNode, AgentReplyNode, build_node
from miniagents.errors import AgentCallCancelledError
from miniagents.messages import (
    Message,
    MessagePromise,
    MessageSequence,
    MessageSequencePromise,
    MessageType,
    flattener_factory,
    freeze_message_type,
    promise_of_leaf,
)
from miniagents.promising._context import PromisingContext, active_context
from miniagents.promising._failures import Failure, in_framework_work, log_error_once
from miniagents.promising._tasks import WorkScope, current_scope, current_task, is_own_cancellation
from miniagents.promising.ext.frozen import Frozen
from miniagents.promising.promising import StreamAppender
from miniagents.promising.sentinels import DEFAULT, END_OF_QUEUE, Sentinel

__all__ = [
    "AgentCall",
    "AgentCallStatus",
    "InteractionContext",
    "ObserverMethods",
    "PendingNodes",
    "current_agent_call",
]

_current_interaction: contextvars.ContextVar[InteractionContext | None] = contextvars.ContextVar(
    "miniagents_current_interaction", default=None
)


def current_agent_call() -> AgentCall | None:
    """The agent call whose agent function runs in the current task (or started it), None outside agents."""
    ctx = _current_interaction.get()
    return None if ctx is None else ctx.agent_call


class AgentCallStatus(str, enum.Enum):
    """Where an agent call stands: ``RUNNING``, then one of ``FINISHED``, ``FAILED`` or ``CANCELLED``."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Agent(Protocol):
    """What an agent call needs of its agent (`MiniAgent` is one)."""

    alias: str
    interaction_metadata: Frozen

    @property
    def func(self) -> Callable[..., Awaitable[None]]:
        """The agent function."""
        ...


class ObserverMethods(NamedTuple):
    """The observer methods that want each event of a call (only those an observer overrides).

    ``*_isolated``: whether one of them is of an observer that runs isolated (`RunObserver.isolated`).
    """

    started: tuple[Callable[..., Any], ...]
    input: tuple[Callable[..., Any], ...]
    reply: tuple[Callable[..., Any], ...]
    ended: tuple[Callable[..., Any], ...]
    entered: tuple[Callable[..., Any], ...] = ()
    started_isolated: bool = True
    input_isolated: bool = True
    reply_isolated: bool = True
    ended_isolated: bool = True
    entered_isolated: bool = True


class CallHost(Protocol):
    """What an agent call needs of its context (`MiniAgents` is one)."""

    start_everything_asap_by_default: bool
    log_level_for_errors: int
    interrupted: bool

    def start_soon(self, coroutine: Any, scope: Any = DEFAULT, fallback: Any = None) -> asyncio.Task[None]:
        """Start the framework's own background work."""
        ...

    def start_asap(
        self, awaitable: Awaitable[Any], suppress_errors: bool = False, log_level_for_errors: int = 0
    ) -> Any:
        """Start background work that leaving the context waits for."""
        ...

    def report_unretrieved(self, error: BaseException, origin: Any = None, fresh: bool = False) -> None:
        """Remember an error that nobody may retrieve."""
        ...

    def resolve_interaction_node(self, node: Message) -> None:
        """Resolve a node the framework built, as ``Promise(prefill_result=node)`` made in this context would."""
        ...

    def resolve_interaction_nodes(self, nodes: PendingNodes) -> None:
        """Resolve the nodes of a call that ended (built here, or later by whoever persists them)."""
        ...

    def track_agent_task(self, task: asyncio.Task[Any]) -> None:
        """Let leaving the context wait for an agent's task."""
        ...

    def forget_agent_task(self, task: asyncio.Task[Any]) -> None:
        """The agent's task ended."""
        ...

    def call_started(self, call: AgentCall) -> ObserverMethods | None:
        """Register a new call; return the observer methods that watch it (None when nobody observes)."""
        ...

    def call_ended(self, call: AgentCall) -> None:
        """Unregister a call that ended."""
        ...

    def wants_interaction_nodes(self) -> bool:
        """Whether interaction nodes are observed."""
        ...

    def observer_failed(self, observer: Any, method: str, error: BaseException, call: Any = None) -> None:
        """Report an observer's exception."""
        ...


class InteractionContext:
    """What an agent function receives as ``ctx``: its input, and the means to reply.

    Attributes:
        this_agent: the `MiniAgent` being run.
        message_promises: the input, a replayable `MessageSequencePromise` (alias `messages`).
        agent_call: the `AgentCall` being run (its id, parent, status …).
    """

    def __init__(
        self,
        this_agent: Any,
        message_promises: MessageSequencePromise,
        reply_appender: StreamAppender[Any],
        mini_agents: CallHost,
        agent_call: AgentCall | None = None,
    ) -> None:
        self.this_agent = this_agent
        self.message_promises = message_promises
        self.agent_call = agent_call
        self._reply_appender = reply_appender
        self._mini_agents = mini_agents
        self.unfinished_agent_calls: dict[AgentCall, None] = {}
        """Calls made by this agent whose input is not finished yet (finished when the function returns)."""
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

        The task belongs to this agent call: cancelling the call cancels it.

        Returns:
            The background `asyncio.Task`.
        """
        task = self._mini_agents.start_asap(
            awaitable, suppress_errors=True, log_level_for_errors=self._mini_agents.log_level_for_errors
        )
        self._awaited_tasks.append(task)
        return task  # type: ignore[no-any-return]

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
        for agent_call in list(self.unfinished_agent_calls):
            agent_call.finish()


_UUID_FIELDS_MASK = ~((0xF << 76) | (0x3 << 62))  # the version and variant bits of a UUID (RFC 9562, section 4)
_UUID7_BITS = (0x7 << 76) | (0x2 << 62)  # version 7, variant 0b10


def new_uuid7_hex() -> str:
    """A new version 7 UUID (RFC 9562, section 5.7) as 32 lowercase hex digits.

    Its first 48 bits are the Unix time in milliseconds, the other 74 (after version and variant) random (from
    `random.getrandbits`: unique ids, not secrets; reseeded in forked children). Ids made later sort later
    (within one millisecond, at random), which keeps the indexes of databases that store them compact.
    """
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    return (value & _UUID_FIELDS_MASK | _UUID7_BITS).to_bytes(16).hex()  # (a quarter of f"{...:032x}"'s time)


class AgentCall(WorkScope):
    """An inquiry in progress: send input messages, then get the reply sequence; or cancel it.

    Created by `MiniAgent.initiate_inquiry` (and by `MiniAgent.inquire`, whose reply sequence leads back here). If
    it is never finished, it is finished automatically when the agent function that created it returns (or, at
    top level, when the `MiniAgents` context ends).

    Attributes:
        agent: the `MiniAgent` called.
        parent_call: the call whose agent function made this call; None at top level.
        kwargs: the frozen inquire kwargs; None when there were none.
        started_at: when the call was made, in seconds since the epoch (`time.time`).
        ended_at: when it ended (see `status`), or None.
        error: what it failed with (``FAILED``) or the `AgentCallCancelledError` (``CANCELLED``), else None.
    """

    # Defaults shared through the class until they change (fewer stores per call).
    _driver_started = False  # the driver task flattens the replies from now on
    _reply_hooked = False  # the reply sequence reports its pieces to `_on_reply_piece` (`set_on_piece`)
    _returning = False  # the agent function has returned (see `_arun_agent`)
    _resolve_replies_later = False  # the agent's task resolves the replies once the function returned
    _function_done = False
    _function_error: BaseException | None = None
    _replies_ended = False
    _input_read = True  # only observed calls wait for their input to be read to the end
    _nodes_at_end = False  # the interaction nodes are built when the call ends (see `_build_interaction_nodes`)
    _children: dict[AgentCall, None] | None = None
    _call_id: str | None = None
    _agent_task: asyncio.Task[Any] | None = None
    _observers: ObserverMethods | None = None
    _reply_count = 0
    _input_count = 0
    status = AgentCallStatus.RUNNING
    ended_at: float | None = None
    error: BaseException | None = None

    def __init__(
        self,
        agent: Agent,
        mini_agents: CallHost,
        function_kwargs: dict[str, Any],
        frozen_kwargs: Frozen | None,
        start_asap: bool | Sentinel,
    ) -> None:
        self.agent = agent
        self._mini_agents = mini_agents
        self._function_kwargs = function_kwargs
        self.kwargs = frozen_kwargs
        self.started_at = time.time()
        owner = _current_interaction.get()
        self.parent_call = None if owner is None else owner.agent_call
        # What `MessageSequence(appender_capture_errors=True, start_asap=False)` (the input; its promise is made
        # when the agent starts, see `_arun_agent`) and `MessageSequence(start_asap=start_asap,
        # incoming_streamer=self._start_agent)` (the replies) would make, lighter: fewer objects per inquiry.
        self._request_appender: StreamAppender[Any] = StreamAppender(capture_errors=True).open()
        self._request_promise: MessageSequencePromise | None = None
        self._reply_appender: StreamAppender[Any] = StreamAppender(capture_errors=True).open()
        self._agent_started = False
        parent = self.parent_call
        if parent is not None:
            children = parent._children
            if children is None:
                children = parent._children = {}
            children[self] = None
        observers = mini_agents.call_started(self)
        if mini_agents.start_everything_asap_by_default if start_asap is DEFAULT else start_asap:
            # The replies are driven in the background from now on. The agent is started right away (in the
            # reference design, the driver task starts it when it first runs). Replies that are single messages
            # go straight into the reply sequence, in order, from `reply()`; the driver task is only started for
            # the first reply that needs flattening over time (a collection, another agent's replies, an async
            # iterable, an exception) and takes over from there. An agent that only replies messages needs no
            # second task at all.
            reply_promise = self._reply_promise = MessageSequencePromise(start_asap=False)
            reply_promise.produce_for(self, self._on_replies_ended, self._on_replies_resolved, elsewhere=True)
            self._reply_appender.set_direct_taker(self)
        else:
            reply_promise = self._reply_promise = MessageSequence.light_sequence_promise(
                self._start_agent, start_asap=False
            )
            reply_promise.produce_for(self, self._on_replies_ended, self._on_replies_resolved, elsewhere=False)
        owner_of_input: Any = mini_agents if owner is None or owner._done else owner  # (`MiniAgents` or a ctx)
        owner_of_input.unfinished_agent_calls[self] = None
        self._owner = owner_of_input
        if observers is not None:
            self._observers = observers
            if observers.input:
                self._input_read = False
            if observers.reply and not reply_promise.is_drained_in_background:  # (else see `take_directly`)
                self._hook_replies()
            if observers.started:
                self._notify(observers.started, observers.started_isolated, self)
        if mini_agents.interrupted:  # the context is being interrupted: nothing new may run
            self.cancel()
        elif reply_promise.is_drained_in_background:
            self._start_agent(None)

    # --- public surface ---------------------------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        """A unique id of this call: a version 7 UUID (RFC 9562; time-ordered) in 32 hex digits, made on first use."""
        call_id = self._call_id
        if call_id is None:
            call_id = self._call_id = new_uuid7_hex()
        return call_id

    @property
    def agent_alias(self) -> str:
        """The alias of the agent called."""
        return self.agent.alias

    @property
    def is_running(self) -> bool:
        """Whether the call has not ended yet (``status`` is ``RUNNING``)."""
        return self.status is AgentCallStatus.RUNNING

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
        self._owner.unfinished_agent_calls.pop(self, None)
        return self

    def reply_sequence(self) -> MessageSequencePromise:
        """Finish the input and return the agent's replies.

        The sequence is replayable; ``async with`` it to cancel the call when the block is left while the call
        still runs, and ``cancel()`` it to cancel the call (see `cancel`).
        """
        self.finish()
        return self._reply_promise

    def cancel(self) -> None:
        """Cancel this call and every call made inside it that still runs, and the work they drive.

        The agent function gets `asyncio.CancelledError` at its next ``await``; the streaming of its reply
        messages stops (an LLM agent closes its HTTP stream). Replies completed before stay available; the reply
        sequence then ends with `AgentCallCancelledError`, and a message cut mid-stream raises it from its token
        stream and from ``await``. The call's ``status`` becomes ``CANCELLED`` once its work has stopped.
        Calling it again, or on a call that has ended, does nothing.
        """
        if self.status is not AgentCallStatus.RUNNING or self._cancel_error is not None:
            return
        error = AgentCallCancelledError(f"the agent call {self.agent.alias} was cancelled", self.agent.alias)
        self.cancel_tasks(error)
        agent_task = self._agent_task
        if agent_task is not None and agent_task is not current_task():  # (from its own task: it is handling it)
            self.cancel_one(agent_task, self._on_cancelled_before_start, error)
        for child in list(self._children or ()):
            child.cancel()
        if not self._agent_started:
            self._start_cancelled()

    def describe_location(self) -> str:
        """Name this call and its callers, for error reports: ``the agent C (called by B <- A)``."""
        chain = []
        parent = self.parent_call
        while parent is not None:
            chain.append(parent.agent.alias)
            parent = parent.parent_call
        called_by = f" (called by {' <- '.join(chain)})" if chain else ""
        return f"the agent {self.agent.alias}{called_by}"

    def describe_failure(self) -> str:
        """`describe_location` followed by ``failed``, for the report of the agent's own error."""
        return f"{self.describe_location()} failed"

    def __repr__(self) -> str:
        return f"AgentCall({self.agent.alias}, {self.status.value})"

    # --- the direct-reply path ----------------------------------------------------------------------------------

    def take_directly(self, item: Any) -> bool:
        """The reply appender's direct path until the driver task starts (see ``__init__``)."""
        if self._driver_started:
            return False
        promise = self._reply_promise
        if promise.is_ended:
            return True  # ended already (an error was captured): nothing can follow
        if item is END_OF_QUEUE or type(item) is Failure:
            self._reply_appender.set_direct_taker(None)
            if item is not END_OF_QUEUE:
                promise.append_piece(item)
            promise.append_piece(END_OF_QUEUE)
            # When the agent function has returned, its task resolves the replies (if they still need awaiting,
            # e.g. a message that is still streaming), instead of a new task.
            self._resolve_replies_later = promise.resolve_after_the_end(start_task=not self._returning)
            return True
        if isinstance(item, (str, Message, MessagePromise)):
            piece = promise_of_leaf(item)
            promise.append_piece(piece)
            if self._observers is not None and self._observers.reply:  # (reported here: no hook on the promise)
                self._on_reply_piece(piece)
            return True
        self._driver_started = True  # this item needs flattening over time: the driver queues up from here
        if self._observers is not None and self._observers.reply:
            self._hook_replies()
        promise.drain_in_background(flattener_factory(self._start_agent))
        return False

    # --- running the agent function -----------------------------------------------------------------------------

    def _start_agent(self, _: Any) -> StreamAppender[Any]:
        """Start the agent function in its own task (once); as the replies' incoming streamer, give their appender.

        Called when the reply sequence is first driven (lazy inquiries), or right away (see ``__init__``).
        """
        if not self._agent_started:
            self._agent_started = True
            # Like `MiniAgents.start_soon(self._arun_agent())`, without its wrapper coroutine (see the end there).
            task = asyncio.get_running_loop().create_task(self._arun_agent(), name=self.agent.alias)
            self._mini_agents.track_agent_task(task)
            self._agent_task = task  # (cancelled by `cancel`, apart from the scope's other tasks: no dict per call)
        return self._reply_appender

    def _start_cancelled(self) -> None:
        """End a call whose function never ran (cancelled before it started)."""
        self._agent_started = True
        self._on_cancelled_before_start(self._cancel_error)

    def _on_cancelled_before_start(self, error: BaseException | None) -> None:
        if self._function_done:
            return
        self._function_done = True
        self._input_read = True  # (nothing reads it now: the observers of inputs see none)
        error = error or AgentCallCancelledError(f"the agent call {self.agent.alias} was cancelled", self.agent.alias)
        self._request_appender.close()
        self._reply_appender.fail(error)  # (the direct path ends the replies with it)
        if not self._reply_promise.is_drained_in_background:
            self._reply_promise.end_stream(error)  # lazy, never pulled (that would have started the agent)
        self._maybe_end()

    async def _arun_agent(self) -> None:
        agent = self.agent
        mini_agents = self._mini_agents
        if in_framework_work.get():
            in_framework_work.set(False)  # the agent's own code retrieves what it awaits
        current_scope.set(self)
        try:
            request_promise = self._request_promise = MessageSequence.light_sequence_promise(
                self._request_appender, start_asap=False
            )
            observers = self._observers
            if observers is not None and observers.input:
                request_promise.set_on_piece(self._on_input_piece)
                # The observers see the input as it arrives, not as the agent reads it: a crash while the agent
                # runs must not cost the input it has not read (a store writes it now).
                if request_promise.pull_present():
                    self._input_read = True
                else:  # (it sets `_input_read` when the input has ended)
                    mini_agents.start_soon(self._aread_input(), scope=None)
            ctx = InteractionContext(agent, request_promise, self._reply_appender, mini_agents, self)
            _current_interaction.set(ctx)
            try:
                with self._reply_appender:  # records what the function raised into the replies, then closes them
                    cancel_error: BaseException | None = None
                    try:
                        if self._cancel_error is not None:  # cancelled before it ran: the function does not run
                            await asyncio.sleep(0)  # (the cancellation, put off until this task started, lands here)
                        if observers is not None and observers.entered:  # (in this task: the function sees what
                            self._notify(observers.entered, observers.entered_isolated, self)  # they set)
                        await agent.func(ctx, **self._function_kwargs)
                    except BaseException as error:
                        if not is_own_cancellation(error):
                            self._function_error = error
                            mini_agents.report_unretrieved(error, self, fresh=True)
                            raise
                        cancel_error = self._cancelled_from_outside()
                    finally:
                        if ctx._awaited_tasks:
                            await ctx._await_waited_for()
                        self._returning = True
                    if cancel_error is not None:  # recorded as the end of the replies; raised outside the
                        raise cancel_error  # `except`, so it is not chained to the cancellation
            finally:
                ctx._finish()
                self._function_done = True
                if self._cancel_error is not None and not self._reply_promise.is_drained_in_background:
                    self._reply_promise.start_draining()  # a cancelled lazy call ends without waiting for pulls
                if mini_agents.wants_interaction_nodes():
                    if self._reply_promise.is_drained_in_background and self._cancel_error is None:
                        self._nodes_at_end = True  # built when the call ends, mostly with everything at hand
                    else:
                        mini_agents.start_soon(self._abuild_interaction_nodes(), scope=None)
                if self._replies_ended:
                    self._maybe_end()
            if self._resolve_replies_later:
                await self._aresolve_replies()
        except BaseException as error:  # what `PromisingContext._arun_own` does for background work
            if self._resolve_replies_later:  # (not awaited above: this came first)
                self._resolve_replies_later = False
                mini_agents.start_soon(self._reply_promise.aresolve_in_background(), scope=None)
            if is_own_cancellation(error):
                self._cancelled_from_outside()
            else:
                log_error_once(error, mini_agents.log_level_for_errors, self.describe_failure())
        finally:
            task = current_task()
            mini_agents.forget_agent_task(task)
            self._agent_task = None

    def _cancelled_from_outside(self) -> BaseException:
        """Our task was cancelled: by `cancel`, or directly (then it is a cancel too). Handle it and say with what.

        The task's cancellation is handled here (``uncancel``): the call is cancelled and its replies end with
        the returned `AgentCallCancelledError`.
        """
        if self._cancel_error is None:
            self.cancel()
        task = current_task()
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()
        assert self._cancel_error is not None  # (set by `cancel`)
        return self._cancel_error

    async def _aresolve_replies(self) -> None:
        """Resolve the replies in the background, in the agent's task (see `take_directly`)."""
        self._resolve_replies_later = False
        try:
            await self._reply_promise.aresolve_in_background()
        except BaseException:  # our own cancellation: the replies must still be resolved, in a task of their own
            if not self._reply_promise.is_resolved:
                self._mini_agents.start_soon(self._reply_promise.aresolve_in_background(), scope=None)
            raise

    async def _aread_input(self) -> None:
        """Read the input to its end as it arrives, so that observers see all of it, and before the call ends."""
        assert self._request_promise is not None  # (made when the agent started)
        try:
            async for _ in self._request_promise:
                pass
        except BaseException as error:  # an error in the input ends it
            if is_own_cancellation(error):
                raise
        finally:
            self._input_read = True
            self._maybe_end()

    # --- the end ------------------------------------------------------------------------------------------------

    def _on_replies_ended(self) -> None:
        if not self._reply_promise.is_drained_in_background:  # lazy: nobody resolves it unless it is awaited
            self._replies_ended = True
            self._maybe_end()

    def _on_replies_resolved(self) -> None:
        self._replies_ended = True  # (and every reply message is complete: no work of ours streams any more)
        self._maybe_end()

    def _maybe_end(self) -> None:
        if not (self._function_done and self._replies_ended and self._input_read):
            return
        if self.status is not AgentCallStatus.RUNNING:
            return
        replies = self._reply_promise
        last_error: BaseException | None = None
        if replies.is_resolved:
            last_error = replies.stored_error
        else:
            pieces = replies.produced_pieces()
            if len(pieces) > 1 and type(pieces[-2]) is Failure:
                last_error = pieces[-2].error
        if self._cancel_error is not None:
            self.status = AgentCallStatus.CANCELLED
            self.error = self._cancel_error
        elif self._function_error is not None or last_error is not None:
            self.status = AgentCallStatus.FAILED
            self.error = self._function_error or last_error
        else:
            self.status = AgentCallStatus.FINISHED
        self.ended_at = time.time()
        self._reply_promise.belong_to(None, None)  # (no cycle once ended: cancelling it does nothing now)
        request_promise = self._request_promise
        if request_promise is not None and not request_promise.is_ended:  # (the end lets go of the scope itself)
            request_promise.belong_to(None, None)
        observers = self._observers
        if observers is not None:  # the pieces are all there: the piece hooks would keep this call alive
            if self._reply_hooked:
                self._reply_promise.clear_on_piece()
            if observers.input and request_promise is not None and request_promise.is_ended:
                request_promise.clear_on_piece()
        parent = self.parent_call
        if parent is not None and parent._children:
            parent._children.pop(self, None)
        self._mini_agents.call_ended(self)
        if observers is not None and observers.ended:
            self._notify(observers.ended, observers.ended_isolated, self)
        if self._nodes_at_end:
            self._build_interaction_nodes()

    # --- observation --------------------------------------------------------------------------------------------

    def _hook_replies(self) -> None:
        """Report the reply pieces that the reply sequence records from now on (the direct path reports its own)."""
        self._reply_hooked = True
        self._reply_promise.set_on_piece(self._on_reply_piece)

    def _on_reply_piece(self, piece: Any) -> None:
        if isinstance(piece, MessagePromise):
            index = self._reply_count
            self._reply_count = index + 1
            observers = self._observers
            assert observers is not None  # (set with the hook)
            self._notify(observers.reply, observers.reply_isolated, self, index, piece)

    def _on_input_piece(self, piece: Any) -> None:
        if isinstance(piece, MessagePromise):
            index = self._input_count
            self._input_count = index + 1
            observers = self._observers
            assert observers is not None  # (set with the hook)
            self._notify(observers.input, observers.input_isolated, self, index, piece)

    def _notify(self, methods: tuple[Callable[..., Any], ...], isolated: bool, *args: Any) -> None:
        # Observers run outside this call's scope (what they start is not cancelled with the call) and as the
        # framework's own work (what they await does not count as retrieved by the agents' code), unless none of
        # them needs it (`RunObserver.isolated`).
        if isolated:
            scope_token = current_scope.set(None)
            work_token = in_framework_work.set(True)
        try:
            for method in methods:
                try:
                    method(*args)
                except Exception as error:  # an observer's bug must not break the run
                    self._mini_agents.observer_failed(method.__self__, method.__name__, error, self)  # type: ignore[attr-defined]
        finally:
            if isolated:
                in_framework_work.reset(work_token)
                current_scope.reset(scope_token)

    # --- interaction nodes --------------------------------------------------------------------------------------

    def _build_interaction_nodes(self) -> None:
        """Build the nodes of a call that ended, without a task when its input and replies are all resolved.

        That is the usual case (the input was read, the replies were resolved in the background); otherwise, and
        for a cancelled call, `_abuild_interaction_nodes` waits for what is missing. Either way the nodes are
        resolved in the call's own context (this may run in a task of another one: a caller's that resolved the
        replies).
        """
        messages = _resolved_messages(self._request_promise)
        status = self.status
        replies = _resolved_messages(self._reply_promise) if status is AgentCallStatus.FINISHED else ()
        if messages is None or replies is None or status is AgentCallStatus.CANCELLED:
            context = cast(PromisingContext, self._mini_agents)  # (a `MiniAgents`)
            token = None if active_context.get() is context else active_context.set(context)
            try:
                self._mini_agents.start_soon(self._abuild_interaction_nodes(), scope=None)
            finally:
                if token is not None:
                    active_context.reset(token)
            return
        finished = status is AgentCallStatus.FINISHED
        self._mini_agents.resolve_interaction_nodes(
            PendingNodes(self.agent.alias, messages, self._call_node_fields(), replies if finished else None)
        )

    async def _abuild_interaction_nodes(self) -> None:
        messages = []
        assert self._request_promise is not None  # (made when the agent started)
        try:
            async for message_promise in self._request_promise:
                messages.append(await message_promise)
        except BaseException as error:  # the node records the input that could be read
            if is_own_cancellation(error):
                raise
        call_node = self._call_node(tuple(messages))
        self._mini_agents.resolve_interaction_node(call_node)
        try:
            replies = await self._reply_promise
        except BaseException as error:
            if is_own_cancellation(error):
                raise
            if self._cancel_error is None:
                return  # no reply node for a failed call
            replies = await _completed_replies(self._reply_promise)
            cancelled = {"cancelled": True}  # (an extra field: finished calls' nodes keep their keys)
        else:
            cancelled = {}
        nested = {"replies": replies, "agent_call": call_node}
        self._mini_agents.resolve_interaction_node(build_node(AgentReplyNode, self.agent.alias, nested, cancelled))

    def _call_node(self, messages: tuple[Message, ...]) -> AgentCallNode:
        return build_node(AgentCallNode, self.agent.alias, {"messages": messages}, self._call_node_fields())

    def _call_node_fields(self) -> dict[str, Any]:
        """The call node's extra fields: the interaction metadata and the inquire kwargs (a new dict)."""
        metadata = self.agent.interaction_metadata
        fields = (
            metadata.frozen_fields_and_values() if len(metadata.__dict__) > 1 or metadata.__pydantic_extra__ else {}
        )
        if self.kwargs is not None:
            for name, value in self.kwargs.frozen_fields_and_values().items():
                fields[f"kwarg_{name}" if name in NODE_FIELDS else name] = value
        return fields


class PendingNodes:
    """The interaction nodes of a call that ended with its input and replies resolved, built on first use.

    The persist worker builds them right before its handlers run, so that a burst of calls that end at once
    leaves one small object per call in the persist queue instead of two nodes that live through several garbage
    collections. Every context that persists them gets the same instances.
    """

    __slots__ = ("_agent_alias", "_fields", "_messages", "_nodes", "_replies")

    def __init__(
        self,
        agent_alias: str,
        messages: tuple[Message, ...],
        fields: dict[str, Any],
        replies: tuple[Message, ...] | None,
    ) -> None:
        self._agent_alias = agent_alias
        self._messages = messages
        self._fields = fields
        self._replies = replies  # None: the call did not finish (then there is no reply node)
        self._nodes: tuple[AgentCallNode] | tuple[AgentCallNode, AgentReplyNode] | None = None

    def nested_values(self) -> tuple[Any, ...]:
        """The values of the nodes' fields that may hold messages (the reply node's ``agent_call`` aside)."""
        return (self._messages, self._replies or (), *self._fields.values())

    def nodes(self) -> tuple[AgentCallNode] | tuple[AgentCallNode, AgentReplyNode]:
        """The call node and, for a finished call, the reply node (the same objects on every call)."""
        if self._nodes is None:
            call_node = build_node(AgentCallNode, self._agent_alias, {"messages": self._messages}, self._fields)
            if self._replies is None:
                self._nodes = (call_node,)
            else:
                nested = {"replies": self._replies, "agent_call": call_node}
                self._nodes = (call_node, build_node(AgentReplyNode, self._agent_alias, nested, {}))
        return self._nodes


def _resolved_messages(sequence: MessageSequencePromise | None) -> tuple[Message, ...] | None:
    """The messages of a sequence that ended without error and whose messages are all resolved, else None."""
    if sequence is None:
        return None
    if sequence.is_resolved:
        return None if sequence.has_failed else sequence.result_nowait()  # type: ignore[return-value]
    pieces = sequence.produced_pieces()
    if not pieces or pieces[-1] is not END_OF_QUEUE:
        return None
    messages = []
    for piece in pieces[:-1]:
        if not isinstance(piece, MessagePromise) or not piece.is_resolved or piece.has_failed:
            return None
        messages.append(piece.result_nowait())
    return tuple(messages)  # type: ignore[arg-type]


async def _completed_replies(replies: MessageSequencePromise) -> tuple[Message, ...]:
    """The replies of a cancelled call that were complete (a message cut mid-stream is not)."""
    completed = []
    for piece in replies.produced_pieces():
        if not isinstance(piece, MessagePromise):
            break
        try:
            completed.append(await piece)
        except Exception:
            break
    return tuple(completed)
