"""Compatibility alias of `miniagents.ext.agent_aggregators` (the module's later name)."""

from miniagents.ext.agent_aggregators import (
    agent_chain,
    agent_loop,
    console_user_agent,
    dialog_loop,
    prompt_agent,
    user_agent,
)

__all__ = ["agent_chain", "agent_loop", "console_user_agent", "dialog_loop", "prompt_agent", "user_agent"]
