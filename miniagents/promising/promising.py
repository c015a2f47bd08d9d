"""Promises that resolve once, streamed promises that replay, push-style appenders, and the context that owns them.

This module is the public path of the promising layer (SPEC §0); each concept lives in a file of its own:
`PromisingContext` in ``_context.py``, `Promise` in ``_promise.py``, `StreamedPromise` in
``_streamed_promise.py``, `StreamAppender` in ``_appender.py``, how errors travel in ``_failures.py`` and task
scopes in ``_tasks.py``.

Every object here needs an active `PromisingContext` (or a subclass such as `MiniAgents`), because background work
is scheduled through it and leaving the context waits for all of that work.

The one rule this layer keeps everywhere: a producer that fails with any ``BaseException`` delivers the failure to
its consumers (as a result or as a piece) and always terminates its stream, so no consumer waits forever. The only
exception that is never stored is the *own* cancellation of the task doing the work (`asyncio.CancelledError` while
that task is being cancelled): a consumer's cancellation leaves the promise whole, and a producer's cancellation is
recorded as a `WorkCancelledError`, never as a ``CancelledError``.
"""

from __future__ import annotations

from miniagents.promising._appender import StreamAppender
from miniagents.promising._context import PromiseResolvedHandler, PromisingContext
from miniagents.promising._promise import Promise
from miniagents.promising._streamed_promise import StreamedPromise

__all__ = ["Promise", "PromiseResolvedHandler", "Promising", "PromisingContext", "StreamAppender", "StreamedPromise"]

Promising = PromisingContext
