"""Agents made of other agents: chains, loops, user agents and dialogs.

A *chain* is a list of steps applied to a current set of messages, starting from the chain's input:

- a `MiniAgent` is inquired with the current messages, and its replies become the current messages;
- `AWAIT` waits until the current messages are complete (everything scheduled so far has finished);
- `CLEAR` drops the current messages, so the next agent gets no input;
- ``None`` is skipped.

Anything else is a `ValueError`, raised before any agent of the chain is inquired. Pass the steps with `fork`
(``agent_chain.fork(agents=[...])``): agents are not freezable, so they cannot be `inquire` kwargs.

Example:
    ``await dialog_loop.fork(assistant_agent=my_llm_agent).inquire(SystemMessage("Be brief."))`` chats with
    ``my_llm_agent`` in the console until the user types ``exit`` (or presses Ctrl+C or Ctrl+D).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from miniagents.ext._user_agent import user_agent
from miniagents.ext.history_agents import in_memory_history_agent
from miniagents.ext.misc_agents import console_user_agent
from miniagents.miniagent_typing import MessageType
from miniagents.miniagents import InteractionContext, MiniAgent, miniagent
from miniagents.promising.sentinels import AWAIT
from miniagents.utils import achain_agents, check_chain_steps

__all__ = ["agent_chain", "agent_loop", "console_user_agent", "dialog_loop", "prompt_agent", "user_agent"]


@miniagent
async def agent_chain(ctx: InteractionContext, agents: Sequence[Any]) -> None:
    """Run the incoming messages through a chain of steps once and reply with the result.

    Args:
        ctx: the interaction context.
        agents: the steps (see the module docstring).

    Replies:
        The messages the last step produced; nothing if the chain ends with no messages (e.g. with `CLEAR`).

    Raises:
        ValueError: a step is not a `MiniAgent`, `AWAIT`, `CLEAR` or None.
    """
    steps = check_chain_steps(agents, "agent_chain")
    result = await achain_agents(steps, ctx.message_promises)
    if result is not None and not (isinstance(result, tuple) and not result):
        ctx.reply(result)


@miniagent
async def agent_loop(ctx: InteractionContext, agents: Sequence[Any], raise_keyboard_interrupt: bool = True) -> None:
    """Run a chain of steps over and over, each round's result being the next round's input; never reply.

    The first round gets the incoming messages. The loop ends only with an exception (e.g. the user quitting),
    so awaiting the loop blocks until then: ``await agent_loop.fork(agents=[user, AWAIT, assistant]).inquire()``.

    Args:
        ctx: the interaction context.
        agents: the steps (see the module docstring); at least one `AWAIT` (so the loop waits for each round
            instead of inquiring agents forever) and at least one `MiniAgent`.
        raise_keyboard_interrupt: when false, a `KeyboardInterrupt` ends the loop quietly.

    Raises:
        ValueError: no `AWAIT`, no `MiniAgent` or a bad step (before any agent is inquired).
        BaseException: whatever a step raises ends the loop.
    """
    steps = check_chain_steps(agents, "agent_loop")
    if not any(step is AWAIT for step in steps):
        raise ValueError("agent_loop needs at least one AWAIT among the agents, or it would never wait for a round")
    if not any(isinstance(step, MiniAgent) for step in steps):
        raise ValueError("agent_loop needs at least one MiniAgent among the agents")
    messages: Any = ctx.message_promises
    try:
        while True:
            messages = await achain_agents(steps, messages)
    except KeyboardInterrupt:
        if raise_keyboard_interrupt:
            raise


@miniagent
async def prompt_agent(
    ctx: InteractionContext,
    target_agent: MiniAgent,
    prompt_prefix: MessageType = (),
    prompt_suffix: MessageType = (),
    **target_kwargs: Any,
) -> None:
    """Inquire ``target_agent`` with the incoming messages between a prefix and a suffix; reply with its replies.

    Args:
        ctx: the interaction context.
        target_agent: the agent to wrap.
        prompt_prefix: messages put before the incoming ones (e.g. a system prompt).
        prompt_suffix: messages put after them.
        **target_kwargs: kwargs for ``target_agent.inquire()`` (they must be freezable).
    """
    ctx.reply(target_agent.inquire([prompt_prefix, ctx.message_promises, prompt_suffix], **target_kwargs))


@miniagent
async def dialog_loop(
    ctx: InteractionContext,
    assistant_agent: MiniAgent,
    user_agent: MiniAgent = console_user_agent,
    history_agent: MiniAgent | None = None,
    prompt_at_the_end: bool = False,
) -> None:
    """A dialog between the user and an assistant agent, until the user quits (a `KeyboardInterrupt`).

    The loop is ``[user_agent, AWAIT, assistant]``: the user agent shows the assistant's last reply, gets the
    user's message and replies with the history, which the assistant then answers. The dialog's own incoming
    messages (e.g. a `SystemMessage`) are read once and given to the assistant on every turn, before the history
    (after it with ``prompt_at_the_end``); they are neither shown to the user nor stored in the history.

    Args:
        ctx: the interaction context.
        assistant_agent: the agent that answers (e.g. an LLM agent).
        user_agent: the user's side (`console_user_agent` by default).
        history_agent: the history to use, replacing the user agent's (e.g. `markdown_history_agent`). When it
            is None and ``user_agent`` is the default, the dialog gets a fresh in-memory history of its own.
        prompt_at_the_end: put the incoming messages after the history instead of before it.

    Replies:
        Nothing. Awaiting the replies blocks until the dialog ends.

    Example:
        ``await dialog_loop.fork(assistant_agent=llm, history_agent=markdown_history_agent).inquire(system)``
    """
    for name, agent in (("assistant_agent", assistant_agent), ("user_agent", user_agent)):
        if not isinstance(agent, MiniAgent):
            raise ValueError(f"dialog_loop needs a MiniAgent as {name}, got {agent!r}")
    prompt_messages = await ctx.message_promises
    if history_agent is not None:
        user_agent = user_agent.fork(history_agent=history_agent)
    elif user_agent is console_user_agent:
        user_agent = user_agent.fork(history_agent=in_memory_history_agent.fork(message_list=[]))
    assistant = assistant_agent
    if prompt_messages:
        prompt: dict[str, Any] = {"prompt_suffix" if prompt_at_the_end else "prompt_prefix": prompt_messages}
        assistant = prompt_agent.fork(alias=assistant_agent.alias, target_agent=assistant_agent, **prompt)
    ctx.reply(agent_loop.fork(agents=[user_agent, AWAIT, assistant], raise_keyboard_interrupt=False).inquire())
