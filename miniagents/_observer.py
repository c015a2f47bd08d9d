"""`RunObserver`: what a store, a tracer or a live view sees of a run, call by call."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # (annotations only: this module imports nothing of the agent layer at run time)
    from miniagents._agent_call import AgentCall
    from miniagents.messages import MessagePromise

__all__ = ["RunObserver"]


class RunObserver:
    """Override what you need; register with ``MiniAgents(observers=[...])`` or `MiniAgents.add_observer`.

    Only the methods an observer overrides are called (an observer of starts and ends costs nothing per message).

    A context notifies its own observers and those of every enclosing context. The methods are called
    synchronously on the event loop, in the task that caused the event: keep them fast and do any I/O in a task
    of your own (`MiniAgents.start_asap` makes leaving the context wait for it). Such a task is not cancelled with
    the call it observes, and an error it gets from awaiting the run's promises does not count as retrieved (so
    an unhandled agent error is still reported). An exception from an observer is logged once per observer and
    method, and the observer keeps being called.
    """

    isolated: ClassVar[bool] = True
    """Whether the methods run outside the observed call's scope and as the framework's own work (the default).

    That is what makes a task started in a method outlive the call and its errors count as not retrieved; it
    costs two context-variable changes per event, about as much as a small method. An observer whose methods
    only record (they start no task in the current `contextvars.Context` and raise no promise's stored error)
    may set it to False.
    """

    def on_call_started(self, call: AgentCall) -> None:
        """A call was made (before its agent function runs); ``call.status`` is ``RUNNING``."""

    def on_call_entered(self, call: AgentCall) -> None:
        """The call's agent function is about to run, in the call's own task (after `on_call_started`).

        What this method sets in context variables (`contextvars`) the agent function sees, and so do the tasks
        it starts: e.g. the current OpenTelemetry span, for the spans made inside the agent. A call cancelled
        before its function ran is not entered.
        """

    def on_call_input(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Input message number ``index`` (from 0) of ``call``, in order, as the agent's input produces it.

        It is reported as it arrives once the agent function has started, whether or not the function reads it.

        The message may still be streaming: ``async for token in message_promise`` follows its tokens,
        ``await message_promise`` gives the `Message`. Every input is reported before `on_call_ended`.
        """

    def on_call_reply(self, call: AgentCall, index: int, message_promise: MessagePromise) -> None:
        """Reply number ``index`` (from 0) of ``call``, in order, as soon as it enters the reply sequence."""

    def on_call_ended(self, call: AgentCall) -> None:
        """The call ended: its agent function returned and its reply sequence ended.

        ``call.status`` is ``FINISHED``, ``FAILED`` (``call.error`` is set) or ``CANCELLED``.
        """

    async def aon_context_exit(self) -> None:
        """A `MiniAgents` context this observer was given to is being left, and its work is done.

        Leaving the context awaits it (for the context's own observers and store, in their order) before the store
        is closed, also when the context is left because of an error; what it raises is logged. When the context is
        interrupted (a cancellation, Ctrl+C), they get what is left of its `INTERRUPT_GRACE_SECONDS` (1 s) after the
        agents stopped, then they are left behind with a warning.
        Finish here what must be done before the program may end, e.g. write what was recorded. The default does
        nothing.
        """
