"""The promising layer: promises, replayable streamed promises, appenders, flat sequences and `Frozen`."""

from miniagents.promising.errors import (
    AppenderClosedError,
    AppenderNotOpenError,
    FunctionNotProvidedError,
    NoActiveContextError,
    PromisingContextError,
    PromisingError,
    WrongActiveContextError,
)
from miniagents.promising.promising import Promise, Promising, PromisingContext, StreamAppender, StreamedPromise
from miniagents.promising.sentinels import AWAIT, CLEAR, DEFAULT, END_OF_QUEUE, FAILED, NO_VALUE, Sentinel
from miniagents.promising.sequence import FlatSequence

__all__ = [
    "AWAIT",
    "CLEAR",
    "DEFAULT",
    "END_OF_QUEUE",
    "FAILED",
    "NO_VALUE",
    "AppenderClosedError",
    "AppenderNotOpenError",
    "FlatSequence",
    "FunctionNotProvidedError",
    "NoActiveContextError",
    "Promise",
    "Promising",
    "PromisingContext",
    "PromisingContextError",
    "PromisingError",
    "Sentinel",
    "StreamAppender",
    "StreamedPromise",
    "WrongActiveContextError",
]
