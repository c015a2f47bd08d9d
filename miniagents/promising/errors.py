"""The exception tree of miniagents, drawn once (every name is importable from the package root ``miniagents``).

```
MiniAgentsError(Exception)                  the root: catch this to catch every error the library raises
├── PromisingError                          the promising layer (promises, streams, appenders, contexts)
│   ├── FunctionNotProvidedError            a streamer, resolver or flattener was neither passed nor overridden
│   ├── AppenderNotOpenError                StreamAppender.append() before open()
│   ├── AppenderClosedError                 StreamAppender.append() or open() after close()
│   ├── WorkCancelledError                  the work producing a promise or a stream was cancelled
│   │   └── AgentCallCancelledError         (miniagents.errors) an agent call was cancelled
│   └── PromisingContextError
│       ├── NoActiveContextError            (also RuntimeError) no context is active
│       └── WrongActiveContextError         (also TypeError) the active context is of another class
├── LLMError                                (miniagents.ext.llm.errors) a provider request or stream failed
└── CliError                                (miniagents.cli) the ``miniagents`` command cannot go on
```

`WorkCancelledError` is an ``Exception``, not `asyncio.CancelledError`: a consumer that receives it from a stream
or a promise knows that the *producer* was stopped (by ``cancel()``, a scoped inquiry, an interrupt), and never
mistakes it for the cancellation of its own task.
"""

from __future__ import annotations

__all__ = [
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


class MiniAgentsError(Exception):
    """Root of every error raised by miniagents (the promising layer, agents, LLM agents and the CLI)."""


class PromisingError(MiniAgentsError):
    """Root of every error raised by the promising layer."""


class FunctionNotProvidedError(PromisingError):
    """A streamer, resolver or flattener was neither passed to the constructor nor overridden."""


class AppenderNotOpenError(PromisingError):
    """A piece was appended to a ``StreamAppender`` that was never opened."""


class AppenderClosedError(PromisingError):
    """A piece was appended to (or ``open()`` was called on) a ``StreamAppender`` that is already closed."""


class WorkCancelledError(PromisingError):
    """The work that produces a promise or a stream was cancelled before it finished.

    Raised to consumers at the position where the stream was cut (pieces produced before stay available) and by
    awaiting a promise whose work was cancelled.
    """


class PromisingContextError(PromisingError):
    """Base of the errors about the active ``PromisingContext``."""


class NoActiveContextError(PromisingContextError, RuntimeError):
    """No ``PromisingContext`` is active in the current task."""


class WrongActiveContextError(PromisingContextError, TypeError):
    """The active context is not an instance of the class that asked for it."""
