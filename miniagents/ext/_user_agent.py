"""`user_agent`: the user's side of a dialog (echo, prompt, history), re-exported by `agent_aggregators`."""

from __future__ import annotations

from miniagents.ext.history_agents import ChatHistory, in_memory_history_agent
from miniagents.miniagents import InteractionContext, MiniAgent, miniagent
from miniagents.utils import achain_agents, check_chain_steps

__all__ = ["user_agent"]

_default_history_agent = in_memory_history_agent.fork(message_list=[])
"""The default history of `user_agent`: one in-memory list for the whole process."""


@miniagent
async def user_agent(
    ctx: InteractionContext,
    echo_agent: MiniAgent | None = None,
    prompt_agent: MiniAgent | None = None,
    history_agent: MiniAgent | None = _default_history_agent,
    chat_history: ChatHistory | None = None,
) -> None:
    """The user's side of a dialog: show the incoming messages, get the user's answer, record both.

    It is the chain ``[echo_agent, prompt_agent, history_agent]`` applied to the incoming messages; any of the
    three may be None. The default history is one in-memory list created at import and shared by every use of
    this agent in the process; `dialog_loop` with its default user agent gives each dialog a fresh one instead.

    Args:
        ctx: the interaction context.
        echo_agent: shows the incoming messages and passes them on (e.g. `console_echo_agent`).
        prompt_agent: passes its input on and adds the user's message (e.g. `console_prompt_agent`).
        history_agent: records its input and replies with the whole history.
        chat_history: a `ChatHistory` object whose history agent replaces ``history_agent``.

    Replies:
        What the chain produced: with a history agent, the whole history including the user's new message.
    """
    if chat_history is not None:
        history_agent = chat_history.history_agent
    steps = check_chain_steps([echo_agent, prompt_agent, history_agent], "user_agent")
    result = await achain_agents(steps, ctx.message_promises)
    ctx.reply(result)
