"""How errors travel through promises and streams: recorded once, raised to every consumer, reported once.

An error that ends a producer is recorded (`Failure`) with the traceback it had at that moment, and raised from
there to each consumer with that same traceback, so re-raising a stored error never lengthens it. Raising it to
code that is not the framework's own background work marks it *retrieved*; a context logs, when it finishes, only
the errors that nobody retrieved (like asyncio's "exception was never retrieved").
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from types import TracebackType
from typing import NoReturn

from miniagents.promising.errors import WorkCancelledError

__all__ = [
    "Failure",
    "stored_traceback",
    "cancelled_work_error",
    "in_framework_work",
    "is_retrieved",
    "log_error_once",
    "logger",
    "mark_unretrieved",
    "raise_stored",
    "where",
]

logger = logging.getLogger("miniagents")

BACKGROUND_ERROR_MESSAGE = "an error occurred in an async background task"

_LOGGED_MARK = "__miniagents_logged__"
_RETRIEVED_MARK = "__miniagents_retrieved__"

in_framework_work: contextvars.ContextVar[bool] = contextvars.ContextVar("miniagents_framework_work", default=False)
"""True inside the framework's own background work (draining, resolving), whose consumption of an error only
passes it on to another promise: that does not count as retrieving it."""


def _set_mark(error: BaseException, mark: str, value: bool) -> None:
    try:
        setattr(error, mark, value)
    except AttributeError:  # pragma: no cover - exceptions with __slots__ and no __dict__
        pass


def is_retrieved(error: BaseException) -> bool:
    """Whether ``error`` was raised to code outside the framework's background work since it was last reported."""
    return bool(getattr(error, _RETRIEVED_MARK, False))


def mark_unretrieved(error: BaseException) -> None:
    """Forget that ``error`` was retrieved (it failed something new, e.g. the agent that received it)."""
    if getattr(error, _RETRIEVED_MARK, False):
        _set_mark(error, _RETRIEVED_MARK, False)


def raise_stored(error: BaseException, traceback: TracebackType | None) -> NoReturn:
    """Raise a stored error to a consumer, with the traceback it was stored with (so it never grows)."""
    if not in_framework_work.get():
        _set_mark(error, _RETRIEVED_MARK, True)
    raise error.with_traceback(traceback)


class Failure:
    """A recorded error inside a stream or a promise: raised when a consumer reaches it."""

    __slots__ = ("error", "traceback")

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.traceback = stored_traceback(error)

    def raise_error(self) -> NoReturn:
        """Raise the error to a consumer (see `raise_stored`)."""
        raise_stored(self.error, self.traceback)


def stored_traceback(error: BaseException) -> TracebackType | None:
    """The traceback to store with ``error``: its own, except for a cancellation marker, which keeps none.

    A `WorkCancelledError` says where work was stopped, not where something went wrong; its traceback (and the
    `asyncio.CancelledError` it was raised in) would only keep the frames of every cancelled task alive.
    """
    if isinstance(error, WorkCancelledError):
        error.__traceback__ = None
        error.__context__ = None
        return None
    return error.__traceback__


def cancelled_work_error(cancellation: BaseException) -> BaseException:
    """What to record for a producer that was cancelled: never the `asyncio.CancelledError` itself.

    Whoever cancels the framework's work passes a `WorkCancelledError` (e.g. an ``AgentCallCancelledError``) as
    the cancellation message; that instance is recorded. Any other cancellation records a new
    `WorkCancelledError`, chained to it.
    """
    if not isinstance(cancellation, asyncio.CancelledError):
        return cancellation
    if cancellation.args and isinstance(cancellation.args[0], WorkCancelledError):
        return cancellation.args[0]
    return WorkCancelledError("the work producing this stream was cancelled before it finished")


def where(scope: object | None, what: str = BACKGROUND_ERROR_MESSAGE, started_in: object = None) -> str:
    """``what``, naming the agent call (and its callers) that ``scope`` is, if it is one.

    An agent call describes itself (``describe_location()``: ``the agent B (called by A)``). Without one, the agent
    call that ``started_in`` is (where a detached task was started) is named instead: ``… started in the agent B``.
    """
    describe = getattr(scope, "describe_location", None)
    if describe is not None:
        return f"{what} of {describe()}"
    describe = getattr(started_in, "describe_location", None)
    return what if describe is None else f"{what} started in {describe()}"


def log_error_once(error: BaseException, level: int, message: str = BACKGROUND_ERROR_MESSAGE) -> None:
    """Log an ``Exception`` at ``level`` unless this very instance was logged before.

    ``BaseException``s that are not ``Exception``s (``KeyboardInterrupt``, cancellation …) are never logged.
    """
    if not isinstance(error, Exception) or getattr(error, _LOGGED_MARK, False):
        return
    _set_mark(error, _LOGGED_MARK, True)
    logger.log(level, message, exc_info=(type(error), error, error.__traceback__))
