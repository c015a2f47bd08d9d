"""Ready-made agents: chains and loops, dialogs, chat histories, the console and files.

Importing this package has no side effects: prompt_toolkit and markdown-it-py are imported only when an agent
needs them, and nothing touches the terminal. LLM agents live in `miniagents.ext.llm`.

Example:
    >>> from miniagents import MiniAgents
    >>> from miniagents.ext import dialog_loop, markdown_history_agent
    >>> from miniagents.ext.llm import SystemMessage
    >>> async def main(assistant_agent) -> None:  # e.g. an LLM agent
    ...     await dialog_loop.fork(
    ...         assistant_agent=assistant_agent, history_agent=markdown_history_agent
    ...     ).inquire(SystemMessage("Be brief."))
"""

from miniagents.ext.agent_aggregators import (
    agent_chain,
    agent_loop,
    console_user_agent,
    dialog_loop,
    prompt_agent,
    user_agent,
)
from miniagents.ext.history_agents import in_memory_history_agent, markdown_history_agent
from miniagents.ext.misc_agents import console_echo_agent, console_prompt_agent, file_agent
from miniagents.promising.sentinels import AWAIT, CLEAR

__all__ = [
    "AWAIT",
    "CLEAR",
    "agent_chain",
    "agent_loop",
    "console_echo_agent",
    "console_prompt_agent",
    "console_user_agent",
    "dialog_loop",
    "file_agent",
    "in_memory_history_agent",
    "markdown_history_agent",
    "prompt_agent",
    "user_agent",
]
