"""Every error of miniagents, under one root: `MiniAgentsError` (the tree is drawn in `miniagents.promising.errors`).

This module adds the agent layer's errors to the promising layer's; the LLM agents' `LLMError` lives in
`miniagents.ext.llm.errors` and the command line's `CliError` in `miniagents.cli`, both under the same root.
"""

from __future__ import annotations

from miniagents.promising.errors import (
    AppenderClosedError,
    AppenderNotOpenError,
    FunctionNotProvidedError,
    MiniAgentsError,
    NoActiveContextError,
    PromisingContextError,
    PromisingError,
    WorkCancelledError,
    WrongActiveContextError,
)

__all__ = [
    "AgentCallCancelledError",
    "AppenderClosedError",
    "AppenderNotOpenError",
    "FunctionNotProvidedError",
    "MiniAgentsError",
    "NoActiveContextError",
    "PromisingContextError",
    "PromisingError",
    "WorkCancelledError",
    "WrongActiveContextError",
]


class AgentCallCancelledError(WorkCancelledError):
    """An agent call was cancelled (``cancel()``, a scoped inquiry that was left, an interrupt).

    Its reply sequence ends with this error after the replies completed before; a reply message that was cut
    mid-stream raises it from its token stream and from ``await``. It is an ``Exception``, not
    `asyncio.CancelledError`: it never looks like the cancellation of the consumer's own task.

    Attributes:
        agent_alias: the alias of the cancelled agent (None when the whole context was interrupted).
    """

    def __init__(self, message: str, agent_alias: str | None = None) -> None:
        super().__init__(message)
        self.agent_alias = agent_alias
