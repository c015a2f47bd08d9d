"""The exception tree of the promising layer.

```
PromisingError(Exception)
├── FunctionNotProvidedError        a streamer, resolver or flattener was neither passed nor overridden
├── AppenderNotOpenError            StreamAppender.append() before open()
├── AppenderClosedError             StreamAppender.append() or open() after close()
└── PromisingContextError
    ├── NoActiveContextError        (also RuntimeError) no context is active
    └── WrongActiveContextError     (also TypeError) the active context is of another class
```
"""

from __future__ import annotations

__all__ = [
    "AppenderClosedError",
    "AppenderNotOpenError",
    "FunctionNotProvidedError",
    "NoActiveContextError",
    "PromisingContextError",
    "PromisingError",
    "WrongActiveContextError",
]


class PromisingError(Exception):
    """Root of every error raised by the promising layer."""


class FunctionNotProvidedError(PromisingError):
    """A streamer, resolver or flattener was neither passed to the constructor nor overridden."""


class AppenderNotOpenError(PromisingError):
    """A piece was appended to a ``StreamAppender`` that was never opened."""


class AppenderClosedError(PromisingError):
    """A piece was appended to (or ``open()`` was called on) a ``StreamAppender`` that is already closed."""


class PromisingContextError(PromisingError):
    """Base of the errors about the active ``PromisingContext``."""


class NoActiveContextError(PromisingContextError, RuntimeError):
    """No ``PromisingContext`` is active in the current task."""


class WrongActiveContextError(PromisingContextError, TypeError):
    """The active context is not an instance of the class that asked for it."""
