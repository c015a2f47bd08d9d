"""`FlatSequence`: turn a stream of inputs into a flat, replayable stream of outputs, in input order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from miniagents.promising._streamed_promise import StreamedPromise
from miniagents.promising.errors import FunctionNotProvidedError
from miniagents.promising.sentinels import DEFAULT, Sentinel

__all__ = ["FlatSequence"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")


async def _collect_pieces(promise: StreamedPromise[Any, Any]) -> tuple[Any, ...]:
    return tuple(await promise.acollect_pieces())  # `[piece async for piece in promise]`, woken once


class FlatSequence(Generic[InT, OutT]):
    """Flatten each incoming item into zero or more outputs, depth-first, in input order.

    Args:
        incoming_streamer: ``incoming_streamer(flat_sequence)`` returning an async iterator of inputs.
        flattener: ``flattener(flat_sequence, item)`` returning an async iterator of outputs. Subclasses may
            override ``_flattener(self, item)`` instead.
        start_asap: passed to the sequence promise (see `StreamedPromise`).
        sequence_promise_class: the `StreamedPromise` subclass of `sequence_promise`.

    `sequence_promise` streams the outputs; its whole value is the tuple of all outputs (unless the class
    computes its own). An error from the incoming streamer or the flattener is raised at its position, and the
    sequence ends there.

    Example: inputs 0, 1, 2, 3 with a flattener that yields n n times give ``(1, 2, 2, 3, 3, 3)``.
    """

    def __init__(
        self,
        incoming_streamer: Callable[[Any], AsyncIterator[InT]],
        flattener: Callable[[Any, InT], AsyncIterator[OutT]] | None = None,
        start_asap: bool | Sentinel = DEFAULT,
        sequence_promise_class: type[StreamedPromise[OutT, Any]] = StreamedPromise,
    ) -> None:
        self._incoming_streamer = incoming_streamer
        if flattener is not None:
            self._flattener_function = flattener
        extra: dict[str, Any] = {}
        if sequence_promise_class._resolver is StreamedPromise._resolver:
            extra["resolver"] = _collect_pieces
        self.sequence_promise = sequence_promise_class(streamer=self._astream, start_asap=start_asap, **extra)

    def _flattener(self, item: InT) -> AsyncIterator[OutT]:
        flattener = getattr(self, "_flattener_function", None)
        if flattener is None:
            raise FunctionNotProvidedError(
                f"{type(self).__name__} has no flattener: pass `flattener=` or override `_flattener()`"
            )
        return flattener(self, item)  # type: ignore[no-any-return]

    async def _astream(self, _: Any) -> AsyncIterator[OutT]:
        async for item in self._incoming_streamer(self):
            async for output in self._flattener(item):
                yield output
