"""`MiniAgents`: the context every agent runs in."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any

from miniagents._agent_call import AgentCall, ObserverMethods, PendingNodes
from miniagents._observer import RunObserver
from miniagents.errors import AgentCallCancelledError
from miniagents.messages import (
    Message,
    holds_only_persisted,
    nested_messages,
    nested_messages_in,
    values_hold_only_persisted,
)
from miniagents.miniagent_typing import PersistMessageEventHandler
from miniagents.promising._context import (
    INTERRUPT_GRACE_SECONDS,
    PromiseResolvedHandler,
    PromisingContext,
    active_context,
    as_handler_list,
)
from miniagents.promising._failures import log_error_once, logger
from miniagents.promising._promise import Promise
from miniagents.promising._tasks import require_coroutine_function

__all__ = ["MiniAgents"]

PERSIST_HANDLER_GRACE_SECONDS = 10.0
"""How long leaving the context waits for `on_persist_message` handlers once everything else is done (seconds)."""


class MiniAgents(PromisingContext):
    """The context every agent runs in.

    Use it in one of three ways: ``MiniAgents().run(main())`` (blocking), ``async with MiniAgents(): …``, or
    ``ma = MiniAgents(); ma.activate()`` … ``await ma.afinalize()`` (for servers; it affects the current task and
    tasks created from it afterwards). Leaving the context finishes unfinished top-level `AgentCall`s and waits
    for every background task, agents included; leaving it because of a cancellation or ``KeyboardInterrupt``
    cancels every running agent call instead (see `PromisingContext`).

    Args:
        stream_llm_tokens_by_default: the default of the LLM agents' ``stream`` parameter.
        on_promise_resolved: see `PromisingContext.on_promise_resolved`.
        on_persist_message: one ``async def handler(promise, message)`` or an iterable of them, see
            `on_persist_message`.
        observers: `RunObserver`s that see every agent call of this context (and of contexts nested in it).
        store: a message store that persists every message and agent call: a `RunObserver` such as
            ``miniagents.store.open_store("runs.db")`` (a `miniagents.store.RecordingStore`), or a
            `miniagents.store.StoreRecorder` of any `miniagents.store.MessageStore`. If it has
            ``async def aopen()`` / ``async def aclose()``, they are awaited when the context is entered / left
            (``aclose`` after `RunObserver.aon_context_exit`, which a store uses to write what it recorded).
        **promising_kwargs: the other `PromisingContext` arguments (``start_everything_asap_by_default`` …).

    Raises:
        TypeError: a handler is not an ``async def`` function, or ``store`` is not a `RunObserver` (for a path
            or a bare `MessageStore`, the message says what to pass).
    """

    def __init__(
        self,
        stream_llm_tokens_by_default: bool = True,
        on_promise_resolved: PromiseResolvedHandler | Iterable[PromiseResolvedHandler] = (),
        on_persist_message: PersistMessageEventHandler | Iterable[PersistMessageEventHandler] = (),
        observers: Iterable[RunObserver] = (),
        store: RunObserver | None = None,
        **promising_kwargs: Any,
    ) -> None:
        super().__init__(on_promise_resolved=on_promise_resolved, **promising_kwargs)
        self.stream_llm_tokens_by_default = stream_llm_tokens_by_default
        self._on_persist_message_handlers: list[PersistMessageEventHandler] = as_handler_list(
            on_persist_message, "an on_persist_message handler"
        )
        self.has_handlers = self.has_handlers or bool(self._on_persist_message_handlers)
        self.unfinished_agent_calls: dict[AgentCall, None] = {}
        """Top-level calls whose input is not finished yet (finished when the context is left)."""
        self._root_calls: dict[AgentCall, None] = {}
        self._agent_tasks: set[asyncio.Task[Any]] = set()
        self._observers: list[RunObserver] = list(observers)
        self.store: RunObserver | None = _as_store_observer(store)
        """The store given, which records the run."""
        if self.store is not None:
            self._observers.append(self.store)
        self._failed_observers: set[tuple[int, str]] = set()
        self._exit_observers: list[RunObserver] = []  # (see `await_at_exit`)
        self._observer_methods: ObserverMethods | object | None = _NOT_COLLECTED  # (see `call_started`)
        self.interrupted = False
        """Whether the context is being interrupted: agent calls made from now on are cancelled at once."""
        self._persist_queue: deque[Any] = deque()  # promise, message, promise, message … (no tuple per message)
        self._persist_task: asyncio.Task[None] | None = None
        self._persist_wakeup: asyncio.Future[None] | None = None
        self._persist_drained: asyncio.Future[None] | None = None

    # --- observers ----------------------------------------------------------------------------------------------

    def add_observer(self, observer: RunObserver) -> RunObserver:
        """Let ``observer`` see every agent call made in this context from now on; returns it."""
        self._observers.append(observer)
        self._observer_methods = _NOT_COLLECTED
        return observer

    def await_at_exit(self, observer: RunObserver) -> None:
        """Have leaving this context await ``observer.aon_context_exit()`` too, though it observes no call here.

        For work done on the context's behalf in the background: a store's recorder calls it for each context
        something is recorded in (as an observer, or directly, as a chat history does), so that leaving the context
        waits for those rows.
        """
        if observer not in self._observers and observer not in self._exit_observers:
            self._exit_observers.append(observer)

    def activate(self) -> MiniAgents:
        """See `PromisingContext.activate`; the observers of enclosing contexts are looked up again too."""
        self._observer_methods = _NOT_COLLECTED
        return super().activate()

    def call_started(self, call: AgentCall) -> ObserverMethods | None:
        """Register a new agent call; return the observer methods that watch it (this context's and its parents').

        Only the methods an observer overrides are called: an observer of starts and ends alone costs nothing
        per message.
        """
        if call.parent_call is None:
            self._root_calls[call] = None
        methods = self._observer_methods
        if methods is _NOT_COLLECTED:
            observers: list[Any] = list(self._observers)
            context = self.parent
            while context is not None:
                if isinstance(context, MiniAgents):
                    observers += context._observers
                context = context.parent
            methods = self._observer_methods = _observer_methods(observers)
        return methods  # type: ignore[return-value]

    def call_ended(self, call: AgentCall) -> None:
        """Unregister an agent call that ended."""
        if call.parent_call is None:
            self._root_calls.pop(call, None)

    def observer_failed(self, observer: Any, method: str, error: BaseException, call: AgentCall | None = None) -> None:
        """Log an observer's exception (naming the ``call`` it observed), once per observer and method."""
        key = (id(observer), method)
        if key not in self._failed_observers:
            self._failed_observers.add(key)
            logger.log(
                self.log_level_for_errors,
                "the observer %r failed in %s%s (reported once; it keeps being called)",
                observer,
                method,
                "" if call is None else f" for {call.describe_location()}",
                exc_info=(type(error), error, error.__traceback__),
            )

    def track_agent_task(self, task: asyncio.Task[Any]) -> None:
        """Let leaving the context wait for an agent's task (it removes itself, see `forget_agent_task`)."""
        self.child_tasks.add(task)

    def forget_agent_task(self, task: asyncio.Task[Any]) -> None:
        """An agent's task ended."""
        self.child_tasks.discard(task)

    # --- persistence --------------------------------------------------------------------------------------------

    def on_persist_message(self, handler: PersistMessageEventHandler) -> PersistMessageEventHandler:
        """Register ``async def handler(promise, message)``; usable as a decorator (returns the handler).

        Whenever any promise resolves to a `Message` while this context (or one nested in it) is active
        (interaction nodes and prefilled messages included), the handler runs for each sub-message this context
        has not persisted yet (depth-first) and then for the message itself: at most once per message instance
        and context. Equal messages that are different instances are persisted once each, with the same
        `hash_key`. The handlers run in one background task of this context, in the order the messages
        resolved. A handler's error is logged and does not stop the others; handlers still running
        `PERSIST_HANDLER_GRACE_SECONDS` after everything else is done when the context is left are cancelled
        (with a warning).

        Raises:
            TypeError: ``handler`` is not an ``async def`` function.
        """
        require_coroutine_function(handler, "an on_persist_message handler")
        self._on_persist_message_handlers.append(handler)
        self.has_handlers = True
        return handler

    def dispatch_promise_resolved(self, promise: Any, result: Any) -> None:
        """Schedule the handlers of this context for a resolved promise (and persist a resolved message)."""
        if self._on_promise_resolved_handlers:
            super().dispatch_promise_resolved(promise, result)
        if self._on_persist_message_handlers and isinstance(result, Message) and not result.persisted_by(self):
            self._queue_for_persisting(promise, result)

    def resolve_interaction_node(self, node: Message) -> None:
        """Resolve a node the framework built: what ``Promise(prefill_result=node)`` made in this context does, cheaper.

        Unless a context of the chain has ``on_promise_resolved`` handlers (which are given the promise), the node
        goes to the persist queues of the contexts with ``on_persist_message`` handlers at once, and the promise
        that their handlers get is made only when they run (a node in the queue is one object, not two).
        """
        if self._promise_events_wanted():
            self._resolve_by_promises((node,))
            return
        context: Any = self
        while context is not None:  # (each context with handlers is a `MiniAgents` with persist handlers only)
            if context.has_handlers and context._on_persist_message_handlers and not node.persisted_by(context):
                context._queue_for_persisting(None, node)
            context = context.parent

    def resolve_interaction_nodes(self, nodes: PendingNodes) -> None:
        """Resolve the nodes of a call that ended: each as `resolve_interaction_node` does.

        Unless a context of the chain has ``on_promise_resolved`` handlers, the nodes are built only by the persist
        worker, right before its handlers run (see `PendingNodes`).
        """
        if self._promise_events_wanted():
            self._resolve_by_promises(nodes.nodes())
            return
        values = nodes.nested_values()
        context: Any = self
        while context is not None:  # (each context with handlers is a `MiniAgents` with persist handlers only)
            if context.has_handlers and context._on_persist_message_handlers:
                if not values_hold_only_persisted(values, context):  # (what `_queue_for_persisting` does)
                    context._queue_unpersisted(nested_messages_in(values, prune=context._persisted_here))
                queue = context._persist_queue
                queue.append(None)
                queue.append(nodes)
                context._wake_persist_worker()
            context = context.parent

    def _promise_events_wanted(self) -> bool:
        """Whether a context of this chain has ``on_promise_resolved`` handlers (or is not a `MiniAgents`)."""
        context: Any = self  # (a `PromisingContext`)
        while context is not None:
            if context.has_handlers and (not isinstance(context, MiniAgents) or context._on_promise_resolved_handlers):
                return True
            context = context.parent
        return False

    def _resolve_by_promises(self, nodes: Iterable[Message]) -> None:
        token = None if active_context.get() is self else active_context.set(self)
        try:
            for node in nodes:
                Promise(prefill_result=node)  # (its event goes to this context and its ancestors)
        finally:
            if token is not None:
                active_context.reset(token)

    def _queue_for_persisting(self, promise: Promise[Any] | None, message: Message) -> None:
        """Queue ``message`` for the persist handlers, after the messages nested in it that are not persisted yet.

        ``promise`` None: the handlers get a promise resolved to ``message`` (see `resolve_interaction_node`).
        """
        if not holds_only_persisted(message, self):
            # A message this context persisted had its own nested messages persisted first: not visited again.
            self._queue_unpersisted(nested_messages(message, prune=self._persisted_here))
        message.mark_persisted_by(self)  # (not in `_queue_unpersisted`: a message does not hold itself)
        queue = self._persist_queue
        queue.append(promise)
        queue.append(message)
        self._wake_persist_worker()

    def _queue_unpersisted(self, messages: list[Message]) -> None:
        queue = self._persist_queue
        for message in messages:
            if not message.persisted_by(self):  # (it may occur twice in ``messages``)
                message.mark_persisted_by(self)  # before `as_promise`: its own event must not persist it
                queue.append(message.as_promise)
                queue.append(message)

    def _persisted_here(self, message: Message) -> bool:
        return message.persisted_by(self)

    def _wake_persist_worker(self) -> None:
        if self._persist_task is None:
            self._persist_task = asyncio.get_running_loop().create_task(self._apersist())
            self.child_tasks.add(self._persist_task)
            return
        wakeup = self._persist_wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _apersist(self) -> None:
        """The one task that runs the persist handlers, message after message."""
        queue = self._persist_queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    promise, message = queue.popleft(), queue.popleft()
                    if promise is not None:
                        await self._arun_persist_handlers(promise, message)
                    elif type(message) is PendingNodes:
                        for node in message.nodes():
                            await self._apersist_node(node)
                    else:  # an interaction node (see `resolve_interaction_node`)
                        await self._arun_persist_handlers(Promise.resolved_without_event(message, self), message)
                drained = self._persist_drained
                if drained is not None and not drained.done():
                    drained.set_result(None)
                wakeup = self._persist_wakeup = loop.create_future()
                await wakeup
                self._persist_wakeup = None
        finally:
            if self._persist_task is not None:
                self.child_tasks.discard(self._persist_task)
            self._persist_task = None

    async def _arun_persist_handlers(self, promise: Promise[Any], message: Message) -> None:
        for handler in self._on_persist_message_handlers:
            try:
                await handler(promise, message)
            except Exception as error:
                log_error_once(
                    error,
                    self.log_level_for_errors,
                    f"the on_persist_message handler {getattr(handler, '__qualname__', handler)!r} failed for "
                    f"{_describe_persisted(message)}",
                )

    async def _apersist_node(self, node: Message) -> None:
        """Persist a node that `PendingNodes` built.

        The messages in it were queued before it (see `resolve_interaction_nodes`); a reply node's call node is
        persisted just before it.
        """
        if node.persisted_by(self):  # (another context's handler may have made its promise: then it is queued)
            return
        node.mark_persisted_by(self)
        await self._arun_persist_handlers(Promise.resolved_without_event(node, self), node)

    async def _await_persisted(self) -> None:
        """Wait until the persist worker has run the handlers for everything queued; cancel it if it hangs."""
        task = self._persist_task
        if task is None:
            return
        drained = self._persist_drained = asyncio.get_running_loop().create_future()
        self._wake_persist_worker()
        done, _ = await asyncio.wait(
            [drained, task], timeout=PERSIST_HANDLER_GRACE_SECONDS, return_when="FIRST_COMPLETED"
        )
        self._persist_drained = None
        if not done:
            logger.warning(
                "an on_persist_message handler has not returned for %s s while the context is left: cancelled, "
                "%d message(s) not persisted",
                PERSIST_HANDLER_GRACE_SECONDS,
                sum(len(item.nodes()) if type(item) is PendingNodes else 1 for item in list(self._persist_queue)[1::2]),
            )
            self._persist_queue.clear()
            await self._acancel_persist_worker(task)

    async def _astop_persisting(self) -> None:
        task = self._persist_task
        if task is not None:
            await self._acancel_persist_worker(task)

    async def _acancel_persist_worker(self, task: asyncio.Task[None]) -> None:
        """Cancel the task that runs the persist handlers; a handler that ignores the cancellation is left behind.

        It gets `INTERRUPT_GRACE_SECONDS` to end. Then an error is logged, and the task is no longer this context's
        (leaving it does not wait for it; the event loop reports it if it is still pending when the loop closes).
        """
        task.cancel()
        await asyncio.wait([task], timeout=INTERRUPT_GRACE_SECONDS)
        if not task.done():
            logger.error(
                "an on_persist_message handler ignored its cancellation for %s s; left running, the context is left",
                INTERRUPT_GRACE_SECONDS,
            )
            self.child_tasks.discard(task)
            if self._persist_task is task:
                self._persist_task = None

    def wants_interaction_nodes(self) -> bool:
        """Interaction nodes are only built when someone can observe their resolution."""
        context: PromisingContext | None = self
        while context is not None:
            if context.has_handlers:
                return True
            context = context.parent
        return False

    # --- leaving ------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> MiniAgents:
        self.activate()
        aopen = getattr(self.store, "aopen", None)
        if aopen is not None:
            try:
                await aopen()
            except BaseException:
                self._deactivate()
                raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # Interrupted (a cancellation, Ctrl+C): the context is left within the grace, the observers' and the store's
        # work left behind if need be; what stopping the agents took of it is not given again.
        error = exc_info[1]
        interrupted = error is not None and not isinstance(error, Exception)
        deadline = asyncio.get_running_loop().time() + INTERRUPT_GRACE_SECONDS if interrupted else None
        try:
            await super().__aexit__(*exc_info)
        finally:
            try:
                await self._aon_context_exit(deadline)
            finally:
                aclose = getattr(self.store, "aclose", None)
                if aclose is not None:
                    try:
                        await _await_until(aclose(), deadline)
                    except asyncio.TimeoutError:
                        logger.warning(
                            "%r did not close within the interrupted context's grace; left behind", self.store
                        )

    async def _aon_context_exit(self, deadline: float | None) -> None:
        """Await `RunObserver.aon_context_exit` of this context's own observers that have one (until ``deadline``)."""
        for observer in [*self._observers, *self._exit_observers]:
            method = getattr(type(observer), "aon_context_exit", None)
            if method is None or method is RunObserver.aon_context_exit:
                continue
            try:
                await _await_until(observer.aon_context_exit(), deadline)
            except asyncio.TimeoutError:
                logger.warning(
                    "%r did not finish leaving the interrupted context in its grace (aon_context_exit); left behind",
                    observer,
                )
            except Exception as error:  # an observer's bug must not keep the context from being left
                self.observer_failed(observer, "aon_context_exit", error)

    async def _await_everything(self) -> None:
        """Finish unfinished top-level agent calls and wait for all background tasks, persistence included."""
        while True:
            for agent_call in list(self.unfinished_agent_calls):
                agent_call.finish()
            await self._aflush_but_persistence()
            if self._persist_queue:
                await self._await_persisted()  # (running handlers may start new work: look again)
                continue
            if not self.unfinished_agent_calls:
                break
        await self._astop_persisting()

    async def _aflush_but_persistence(self) -> None:
        while True:
            tasks = [task for task in self.child_tasks if task is not self._persist_task]
            if not tasks:
                return
            await asyncio.wait(tasks)  # (not `gather`, see `PromisingContext.aflush_tasks`)
            self.child_tasks.difference_update([task for task in tasks if task.done()])

    def cancel_everything(self, error: BaseException) -> None:
        """Cancel every running agent call (calls made from now on too), then every other background task."""
        self.interrupted = True
        for call in list(self._root_calls):
            call.cancel()
        super().cancel_everything(error)

    def _interrupt_error(self, reason: str) -> BaseException:
        return AgentCallCancelledError(reason)

    async def afinalize(self) -> None:
        """Finish unfinished top-level agent calls, wait for all background tasks, then deactivate.

        If the task is cancelled while it waits, every running agent call is cancelled (see `ainterrupt`).
        """
        await super().afinalize()

    def _deactivate(self) -> None:
        super()._deactivate()
        self.interrupted = False


_NOT_COLLECTED = object()
_EVENTS = ("on_call_started", "on_call_input", "on_call_reply", "on_call_ended", "on_call_entered")


def _observer_methods(observers: list[Any]) -> ObserverMethods | None:
    """The bound methods of ``observers`` for each event, leaving out `RunObserver`'s own (no-op) methods."""
    if not observers:
        return None
    lists: list[tuple[Any, ...]] = []
    isolated: list[bool] = []
    for event in _EVENTS:
        no_op = getattr(RunObserver, event)
        watching = [o for o in observers if getattr(type(o), event, no_op) is not no_op]
        lists.append(tuple(getattr(o, event) for o in watching))
        isolated.append(any(getattr(o, "isolated", True) for o in watching))
    started, inputs, replies, ended, entered = lists
    return ObserverMethods(started, inputs, replies, ended, entered, *isolated)


def _describe_persisted(message: Message) -> str:
    """Name a message for a persist handler's error: its class, the agent it came from when known, its key."""
    alias = getattr(message, "agent_alias", None)
    of_agent = f" of the agent {alias}" if isinstance(alias, str) else ""
    try:
        key = f" (hash key {message.hash_key})"
    except Exception:  # (a message that cannot be serialized may be what the handler failed on)
        key = ""
    return f"{type(message).__name__}{of_agent}{key}"


async def _await_until(awaitable: Awaitable[Any], deadline: float | None) -> None:
    """Await ``awaitable``, cancelled at ``deadline`` (event loop time; None: no limit).

    Raises:
        asyncio.TimeoutError: the deadline came first (`asyncio.timeout_at` is Python 3.11+).
    """
    if deadline is None:
        await awaitable
    else:
        await asyncio.wait_for(awaitable, max(0.0, deadline - asyncio.get_running_loop().time()))


def _as_store_observer(store: Any) -> RunObserver | None:
    """``store`` as given to `MiniAgents`, checked: an observer that records what it sees.

    Raises:
        TypeError: ``store`` is not a `RunObserver` (for a path, a URL or a bare `miniagents.store.MessageStore`
            the message says how to make one: the core does not import the store package, which is built on it).
    """
    if store is None or isinstance(store, RunObserver):
        return store
    if isinstance(store, (str, os.PathLike)):
        hint = f"open_store({os.fspath(store)!r}) (from miniagents.store import open_store)"
    elif callable(getattr(store, "awrite", None)):
        hint = "StoreRecorder(your_store) (from miniagents.store import StoreRecorder)"
    else:
        hint = "a RunObserver, e.g. miniagents.store.open_store('runs.db')"
    raise TypeError(f"store must be a RunObserver that records the run, got {type(store).__name__}: pass {hint}")
