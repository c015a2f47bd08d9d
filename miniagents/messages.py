"""Messages, message promises and message sequences.

A `Message` is an immutable `Frozen` model with a ``text``. A `MessagePromise` is a message that may still be
streaming, token by token. A `MessageSequencePromise` is a replayable stream of message promises: what every
agent replies. `MessageSequence` flattens any `MessageType` structure into such a stream.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Union

from pydantic import BaseModel, PrivateAttr

from miniagents.promising._failures import cancelled_work_error
from miniagents.promising._streamed_promise import PENDING
from miniagents.promising._tasks import is_own_cancellation
from miniagents.promising.ext.frozen import _LEAF_TYPES, _PLAIN_LEAF_TYPES, Frozen, init_fresh_private_attributes
from miniagents.promising.promising import Promise, StreamAppender, StreamedPromise
from miniagents.promising.sentinels import DEFAULT, END_OF_QUEUE, NO_VALUE, Sentinel
from miniagents.promising.sequence import FlatSequence

__all__ = [
    "Message",
    "MessagePromise",
    "MessageSequence",
    "MessageSequencePromise",
    "MessageTokenStreamer",
    "MessageType",
    "SingleMessageType",
]

SingleMessageType = Union[str, dict[str, Any], BaseModel, "Message", "MessagePromise", BaseException]
"""One message: a string, a dict of fields, a pydantic model, a `Message`, a `MessagePromise` or an exception."""

MessageType = Union[SingleMessageType, Iterable[Any], AsyncIterable[Any]]  # noqa: UP007 - a runtime alias
"""What agents accept and reply: single messages, or (async) iterables of `MessageType`, nested arbitrarily."""

MessageTokenStreamer = Callable[[dict[str, Any]], AsyncIterator[str]]
"""``streamer(metadata_so_far)`` returning an async iterator of tokens."""

_TEXT_FIELDS = frozenset({"class_", "text", "text_template"})
_encode_json_string = json.encoder.encode_basestring  # what `json` (``ensure_ascii=False``) writes for a str


class Message(Frozen):
    """An immutable message: ``text`` plus any metadata as extra fields (``role``, ``model`` …).

    The text may be given positionally: ``Message("hi", role="user")``. Subclass it to declare fields.

    ``str(message)`` is ``text`` if it is not None, else ``text_template.format(**fields)``, else the JSON dump.
    """

    text: str | None = None
    text_template: str | None = None

    _as_promise_cache: MessagePromise | None = PrivateAttr(default=None)
    _persisted: Any = PrivateAttr(default=False)  # False, the context that did (usually one), or a tuple of them

    def persisted_by(self, context: Any) -> bool:
        """Whether ``context`` (a `MiniAgents`) has persisted this very instance (see ``on_persist_message``)."""
        persisted = self.__pydantic_private__["_persisted"]  # type: ignore[index]  # (faster than `self._persisted`)
        return persisted is context or (type(persisted) is tuple and context in persisted)

    def mark_persisted_by(self, context: Any) -> None:
        """Record that ``context`` persisted this very instance."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        persisted = private["_persisted"]
        if persisted is False:
            private["_persisted"] = context  # (no tuple per message for the usual single context)
        elif type(persisted) is tuple:
            private["_persisted"] = (*persisted, context)
        else:
            private["_persisted"] = (persisted, context)

    def __init__(self, text: str | None = None, /, **data: Any) -> None:
        if text is not None:
            data["text"] = text
        if type(self) is Message and len(data) == 1 and type(data.get("text")) is str:
            _init_text_only_message(self, data["text"])  # the most common message, without validation
            return
        super().__init__(**data)

    def _as_string(self) -> str:
        if self.text is not None:
            return self.text
        if self.text_template is not None:
            return self.text_template.format(**self.frozen_fields_and_values(exclude_class=True))
        return self.full_json

    def serialize(self) -> dict[str, Any]:
        """The dump, with nested messages replaced by references.

        A field holding a message becomes ``<field>__hash_key``; a tuple holding messages becomes
        ``<field>__hash_keys``, with each message replaced by its hash key (other elements kept).
        """
        return _serialize_fields(self)

    @property
    def serialized(self) -> str:
        """``serialize()`` as JSON with sorted keys (what `hash_key` hashes), see `Frozen.serialized`."""
        fields = self.__dict__
        text = fields["text"]
        if (
            type(self) is Message
            and type(text) is str
            and fields["text_template"] is None
            and not self.__pydantic_extra__
        ):
            # A text-only message (the most common one): what the JSON encoder writes, without the encoder.
            return f'{{"class_": "Message", "text": {_encode_json_string(text)}, "text_template": null}}'
        return super().serialized

    def sub_messages(self) -> Iterator[Message]:
        """Yield every message nested in this one (at any depth), depth-first, children before their parent."""
        return iter(nested_messages(self))

    @property
    def as_promise(self) -> MessagePromise:
        """A `MessagePromise` already resolved to this message (the same object on every access)."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]  # (always a dict here)
        promise = private["_as_promise_cache"]  # the dict behind the private attributes: faster than `self._...`
        if promise is None:
            promise = private["_as_promise_cache"] = MessagePromise(prefill_message=self)
        return promise  # type: ignore[no-any-return]

    @classmethod
    def promise(
        cls,
        start_asap: bool | Sentinel = DEFAULT,
        message_token_streamer: MessageTokenStreamer | None = None,
        **preliminary_metadata: Any,
    ) -> MessagePromise:
        """Promise a message of this class.

        Args:
            start_asap: see `MessagePromise`.
            message_token_streamer: ``streamer(metadata_so_far: dict)`` returning an async iterator of tokens.
                Without it the message is built right away from ``preliminary_metadata``.
            **preliminary_metadata: fields known before the first token.

        Returns:
            A streaming `MessagePromise`, or the already resolved ``cls(**preliminary_metadata).as_promise``.
        """
        if message_token_streamer is None:
            return cls(**preliminary_metadata).as_promise
        return MessagePromise(
            start_asap=start_asap,
            message_token_streamer=message_token_streamer,
            message_class=cls,
            **preliminary_metadata,
        )


_TEXT_ONLY_TEMPLATE = Message.__new__(Message)
BaseModel.__init__(_TEXT_ONLY_TEMPLATE, text="")  # validated (`Message.__init__` would take the shortcut below)


def _init_text_only_message(message: Message, text: str) -> None:
    """Make ``message`` exactly what validating ``Message(text=text)`` makes, much faster.

    A plain ``str`` needs no validation or freezing, so the state comes from a message validated once (the
    template): the same fields in the same order, the same ``fields_set``, and the private attributes.
    """
    template = _TEXT_ONLY_TEMPLATE
    object.__setattr__(message, "__dict__", {**template.__dict__, "text": text})
    object.__setattr__(message, "__pydantic_extra__", {})
    object.__setattr__(message, "__pydantic_fields_set__", set(template.__pydantic_fields_set__))
    init_fresh_private_attributes(message)


def _serialize_value(value: Any) -> Any:
    if isinstance(value, Message):
        return value.hash_key
    if isinstance(value, Frozen):
        return _serialize_fields(value)
    if isinstance(value, tuple):
        return tuple([_serialize_value(item) for item in value])
    return value


def _serialize_fields(frozen: Frozen) -> dict[str, Any]:
    fields = frozen.frozen_fields_and_values(exclude_class=False)
    leaf_types = _PLAIN_LEAF_TYPES
    for value in fields.values():
        if type(value) not in leaf_types:
            break
    else:
        return fields  # only plain values (most messages): nothing to replace
    result: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Message):
            result[f"{name}__hash_key"] = value.hash_key
        elif isinstance(value, tuple) and _tuple_holds_message(value):
            result[f"{name}__hash_keys"] = _serialize_value(value)
        else:
            result[name] = _serialize_value(value)
    return result


def _tuple_holds_message(values: tuple[Any, ...]) -> bool:
    """Whether a message is an item of ``values`` or of a tuple in it, at any depth (not inside a `Frozen`).

    Such a field is serialized as ``<field>__hash_keys``: its messages become their keys, and a reader knows that
    keys are what to look for (a message two tuples deep, say a table of messages, too).
    """
    return any(isinstance(item, Message) or (isinstance(item, tuple) and _tuple_holds_message(item)) for item in values)


def holds_only_plain_values(frozen: Frozen) -> bool:
    """Whether every value of ``frozen`` is a str, int, float, bool or None (then no message is nested in it)."""
    plain = _PLAIN_LEAF_TYPES
    for value in frozen.__dict__.values():
        if type(value) not in plain:
            return False
    extra = frozen.__pydantic_extra__
    return not extra or all(type(value) in plain for value in extra.values())


def holds_only_persisted(message: Message, context: Any) -> bool:
    """Whether no message nested in ``message`` is left for ``context`` to persist, at a shallow look.

    True when each value is plain (see `holds_only_plain_values`), a message that ``context`` persisted already
    (whose own nested messages were persisted before it), or a tuple of these; anything else is for
    `nested_messages` to walk.
    """
    extra = message.__pydantic_extra__
    return values_hold_only_persisted(message.__dict__.values(), context) and (
        not extra or values_hold_only_persisted(extra.values(), context)
    )


def values_hold_only_persisted(values: Iterable[Any], context: Any) -> bool:
    """`holds_only_persisted` for the values of fields (see `nested_messages_in`)."""
    plain = _PLAIN_LEAF_TYPES
    for value in values:
        if type(value) in plain:
            continue
        if type(value) is tuple:
            for item in value:
                if not (type(item) in plain or (isinstance(item, Message) and item.persisted_by(context))):
                    return False
        elif not (isinstance(value, Message) and value.persisted_by(context)):
            return False
    return True


def nested_messages_in(values: Iterable[Any], prune: Callable[[Message], bool] | None = None) -> list[Message]:
    """`nested_messages` for the values of fields (of a message not built yet): the messages in them, depth-first."""
    found: list[Message] = []
    _collect_value(tuple(values), prune, found)  # (a tuple's items are walked as the fields' values would be)
    return found


def nested_messages(frozen: Frozen, prune: Callable[[Message], bool] | None = None) -> list[Message]:
    """The messages nested in ``frozen``'s values, depth-first, children before their parent.

    A message for which ``prune(message)`` is true is left out with everything nested in it.
    """
    found: list[Message] = []
    _collect_nested(frozen, prune, found)
    return found


def _collect_nested(frozen: Frozen, prune: Callable[[Message], bool] | None, found: list[Message]) -> None:
    extra = frozen.__pydantic_extra__
    for values in (frozen.__dict__.values(), extra.values() if extra else ()):
        for value in values:
            if not isinstance(value, _LEAF_TYPES):  # (most values are)
                _collect_value(value, prune, found)


def _collect_value(value: Any, prune: Callable[[Message], bool] | None, found: list[Message]) -> None:
    if isinstance(value, Message):
        if prune is None or not prune(value):
            _collect_nested(value, prune, found)
            found.append(value)
    elif isinstance(value, Frozen):
        _collect_nested(value, prune, found)
    elif isinstance(value, tuple):
        for item in value:
            if not isinstance(item, _LEAF_TYPES):
                _collect_value(item, prune, found)


class MessagePromise(StreamedPromise[str, Message]):
    """A promise of a `Message` whose text streams token by token.

    Args:
        start_asap: stream (and build the message) in the background right away; see `StreamedPromise`.
        message_token_streamer: ``streamer(metadata_so_far: dict)`` returning an async iterator of ``str``
            tokens. The dict starts as a copy of the preliminary metadata; the streamer may add keys to it
            (usage, finish reason …), but not ``text`` or ``text_template``.
        prefill_message: a finished message; its single token is ``str(message)``.
        message_class: the `Message` subclass to build from the tokens and the metadata.
        **preliminary_metadata: fields known before the first token (available as `preliminary_metadata`).

    ``async for token in promise`` yields the tokens (replayable); awaiting it gives the `Message`, whose text
    is the joined tokens. On a clash, preliminary metadata wins over keys the streamer added.
    """

    _resolve_after_stream = True

    def __init__(
        self,
        start_asap: bool | Sentinel = DEFAULT,
        message_token_streamer: MessageTokenStreamer | None = None,
        prefill_message: Message | None = None,
        message_class: type[Message] = Message,
        **preliminary_metadata: Any,
    ) -> None:
        if prefill_message is not None:
            self.preliminary_metadata: Frozen = prefill_message
            super().__init__(
                prefill_pieces=(str(prefill_message),), prefill_result=prefill_message, start_asap=start_asap
            )
            return
        self.preliminary_metadata = Frozen(**preliminary_metadata)
        self._metadata_so_far = self.preliminary_metadata.frozen_fields_and_values()
        self._token_streamer = message_token_streamer
        self._message_class = message_class
        super().__init__(start_asap=start_asap)

    def _streamer(self) -> AsyncIterator[str]:
        token_streamer = self._token_streamer
        if token_streamer is None:
            return super()._streamer()
        self._token_streamer = None  # called once and never again: drop the reference
        return token_streamer(self._metadata_so_far)

    @property
    def message_class(self) -> type[Message]:
        """The class of the message this promise resolves to."""
        if self.is_resolved and not self.has_failed:
            return type(self._result)
        return getattr(self, "_message_class", Message)

    async def _resolver(self) -> Message:
        tokens = await self.acollect_pieces()  # `[token async for token in self]`, woken once, not per token
        metadata = self._metadata_so_far
        for forbidden in ("text", "text_template"):
            if forbidden in metadata:
                raise ValueError(f"a message token streamer must not put {forbidden!r} into metadata_so_far")
        metadata.update(self.preliminary_metadata.frozen_fields_and_values())
        return self._message_class(text="".join(tokens), **metadata)


class MessageSequencePromise(StreamedPromise[MessagePromise, tuple[Message, ...]]):
    """A replayable stream of `MessagePromise`s, e.g. an agent's replies.

    ``async for message_promise in sequence`` yields the message promises; awaiting the sequence (or
    `aresolve_messages`) gives the tuple of resolved messages, the same tuple every time. An error inside the
    sequence is raised at its position, after the messages before it.
    """

    _resolve_after_stream = True

    async def _resolver(self) -> tuple[Message, ...]:
        # `tuple([await message_promise async for message_promise in self])`, without a coroutine for what is
        # there already: the message promises produced so far and the messages resolved so far.
        messages: list[Message] = []
        iterator = self.__aiter__()
        next_nowait = getattr(iterator, "_next_nowait", _always_pending)
        take_present = getattr(iterator, "_take_present", _nothing_present)
        while True:
            try:
                message_promise = next_nowait()
                if message_promise is PENDING:
                    batch: tuple[Any, ...] = (await iterator.__anext__(),)
                else:  # a run of pieces that are there already: the rest of it too, in one go (a history, say)
                    batch = (message_promise, *take_present())
            except StopAsyncIteration:
                return tuple(messages)
            for message_promise in batch:
                if isinstance(message_promise, Promise) and not message_promise._failed:
                    message = message_promise._result  # (what `result_nowait` gives, without its call)
                    if message is not NO_VALUE:
                        messages.append(message)
                        continue
                messages.append(await message_promise)

    def _resolve_now(self) -> bool:
        if type(self)._resolver is not MessageSequencePromise._resolver:
            return False  # a subclass computes its value differently
        result: list[Message] = []
        for piece in self.produced_pieces():
            if piece is END_OF_QUEUE:
                break
            if not isinstance(piece, Promise) or not piece.is_resolved or piece.has_failed:
                return False  # an error or a message still to come: resolve the usual way
            result.append(piece.result_nowait())  # type: ignore[arg-type]
        self._set_result(tuple(result))
        return True

    async def aresolve_messages(self) -> tuple[Message, ...]:
        """The same as awaiting the sequence promise."""
        return await self.aresolve()

    def as_single_promise(self, **kwargs: Any) -> MessagePromise:
        r"""Join the messages into one `MessagePromise` (separated by ``"\\n\\n"`` by default).

        Keyword arguments are those of `miniagents.utils.join_messages` (``start_asap`` is False).
        """
        return join_sequence(self, **{"start_asap": False, **kwargs})


def promise_of_leaf(item: Any) -> MessagePromise | None:
    """The message promise for a single-message item, None for collections; raises for errors and bad types."""
    if type(item) is str:  # the most common item first (it cannot be any of the types checked before `str`)
        message = Message.__new__(Message)
        _init_text_only_message(message, item)
        return message.as_promise
    if isinstance(item, MessagePromise):
        return item
    if isinstance(item, Message):
        return item.as_promise
    if isinstance(item, str):
        return Message(text=item).as_promise
    if isinstance(item, BaseModel):
        return Message(**item.model_dump()).as_promise
    if isinstance(item, dict):
        return Message(**item).as_promise
    if isinstance(item, BaseException):
        raise item
    if hasattr(item, "__iter__") or hasattr(item, "__aiter__"):
        return None
    raise TypeError(_unexpected_type_message(item))


def _unexpected_type_message(item: Any) -> str:
    return (
        f"Unexpected message type: {type(item).__name__} ({item!r}). Reply or send str, dict, Message, "
        f"MessagePromise, a pydantic model, an exception, or (async) iterables of those"
    )


_EXHAUSTED = object()


def _always_pending() -> Any:
    return PENDING


def _nothing_present() -> tuple[()]:
    return ()


def _open_collection(item: Any) -> tuple[Any, Callable[[], Any] | None]:
    """An iterator over a collection item and, for an async one, its ``_next_nowait`` (sync iterables first)."""
    if hasattr(item, "__iter__"):
        return iter(item), None
    iterator = type(item).__aiter__(item)
    return iterator, getattr(iterator, "_next_nowait", _always_pending)


def flattener_factory(incoming_streamer: Callable[[Any], Any]) -> Callable[[MessageSequencePromise], Any]:
    """``streamer(promise)`` for a `MessageSequencePromise`: ``incoming_streamer(None)``'s items, flattened."""
    return _FlattenerFactory(incoming_streamer)


class _FlattenerFactory:
    """``streamer(promise)`` for `MessageSequence.light_sequence_promise` (one object, unlike a partial)."""

    __slots__ = ("_incoming_streamer",)

    def __init__(self, incoming_streamer: Callable[[Any], Any]) -> None:
        self._incoming_streamer = incoming_streamer

    def __call__(self, promise: MessageSequencePromise) -> _Flattener:
        return _Flattener(self._incoming_streamer, None, promise)


class _Flattener:
    """What a `MessageSequence` streams from: its incoming items flattened into message promises, in order.

    Depth-first over nested collections with an explicit stack of iterators, so a message passes through one
    step however deep it sits. Whatever is there already (queued items, sync collections, pieces that nested
    sequences have produced) comes out of `_next_nowait` without awaiting anything (see `PENDING`); `__anext__`
    awaits only the one iterator that has nothing yet. Like a generator, it is finished after an error.
    """

    __slots__ = (
        "_finished",
        "_incoming",
        "_incoming_nowait",
        "_incoming_streamer",
        "_pending_fetch",
        "_promise",
        "_sequence",
        "_stack",
    )

    _cancel_safe = True  # (see `PENDING`): iterators that are not are awaited in a fetch task, see `_anext_of`

    def __init__(self, incoming_streamer: Callable[[Any], Any], sequence: Any, promise: MessageSequencePromise) -> None:
        self._incoming_streamer: Callable[[Any], Any] | None = incoming_streamer
        self._sequence = sequence  # what the incoming streamer is called with
        self._promise = promise
        self._incoming: Any = None  # opened at the first step, where a generator's `async for` would open it
        self._incoming_nowait: Callable[[], Any] = _always_pending
        self._stack: list[tuple[Any, Callable[[], Any] | None]] = []
        self._finished = False
        self._pending_fetch: tuple[Any, asyncio.Task[Any]] | None = None

    def __aiter__(self) -> _Flattener:
        return self

    def _open_incoming(self) -> None:
        incoming_streamer, sequence = self._incoming_streamer, self._sequence
        assert incoming_streamer is not None
        self._incoming_streamer = self._sequence = None  # not needed any more (they often refer back to us)
        incoming = incoming_streamer(sequence)
        incoming = type(incoming).__aiter__(incoming)
        self._incoming = incoming
        self._incoming_nowait = getattr(incoming, "_next_nowait", _always_pending)
        if isinstance(incoming, StreamAppender):
            incoming.set_direct_taker(self)

    def _finish(self) -> None:
        self._finished = True
        if isinstance(self._incoming, StreamAppender):
            self._incoming.set_direct_taker(None)

    def take_directly(self, item: Any) -> bool:
        """Called by the incoming appender while we wait for it: take a single message (or the end) right away.

        Only when a background task drains our promise (so that task is the one waiting, and nobody is pulling)
        and we are not inside a nested collection: then the piece goes straight into the promise, in order, and
        its consumers see it without a detour through the draining task.
        """
        promise = self._promise
        if self._stack or self._finished or not promise.is_drained_in_background:
            return False
        if not self._incoming.has_waiting_consumer:  # (the incoming appender calls this) the piece must queue up
            return False
        if promise.is_ended:
            return False
        if item is END_OF_QUEUE:
            promise.append_piece(END_OF_QUEUE)
            return True
        if not isinstance(item, (str, Message, MessagePromise)):
            return False
        promise.append_piece(promise_of_leaf(item))
        return True

    def _next_nowait(self) -> Any:
        """The next message promise if getting it needs no awaiting, otherwise `PENDING`."""
        if self._finished:
            raise StopAsyncIteration
        try:
            if self._incoming is None:
                self._open_incoming()
            stack = self._stack
            while True:
                if stack:
                    iterator, next_nowait = stack[-1]
                    if next_nowait is None:  # a sync iterator
                        item = next(iterator, _EXHAUSTED)
                        if item is _EXHAUSTED:
                            stack.pop()
                            continue
                    else:
                        try:
                            item = next_nowait()
                        except StopAsyncIteration:
                            stack.pop()
                            continue
                        if item is PENDING:
                            return PENDING
                else:
                    item = self._incoming_nowait()  # its StopAsyncIteration is our end
                    if item is PENDING:
                        return PENDING
                leaf = promise_of_leaf(item)
                if leaf is not None:
                    return leaf
                stack.append(_open_collection(item))
        except BaseException:
            self._finish()
            raise

    def _next_batch_nowait(self) -> list[MessagePromise] | Any:
        """`_next_nowait`'s leaf and every single message right after it in the same sync collection, or `PENDING`.

        A drainer takes them in one go (a reply of 20,000 history messages is one list, not 20,000 steps).
        """
        leaf = self._next_nowait()
        if leaf is PENDING:
            return PENDING
        batch = [leaf]
        stack = self._stack
        if stack and stack[-1][1] is None:  # the leaf came from a sync collection: take the messages after it
            iterator = stack[-1][0]
            append = batch.append
            for item in iterator:
                if type(item) is Message:  # (a history's messages: their promises without a call each)
                    promise = item.__pydantic_private__["_as_promise_cache"]  # type: ignore[index]
                    append(item.as_promise if promise is None else promise)
                elif isinstance(item, (str, Message, MessagePromise)):
                    append(promise_of_leaf(item))  # (a single message: never None)
                else:  # a collection or an error: `_next_nowait` takes it from here
                    stack[-1] = (itertools.chain((item,), iterator), None)
                    break
        return batch

    async def __anext__(self) -> MessagePromise:
        stack = self._stack
        while True:
            leaf = self._next_nowait()
            if leaf is not PENDING:
                return leaf  # type: ignore[no-any-return]
            try:  # the iterator on top (or the incoming stream) has nothing yet: await it
                if stack:
                    iterator = stack[-1][0]
                    try:
                        item = await self._anext_of(iterator)
                    except StopAsyncIteration:
                        stack.pop()
                        continue
                else:
                    item = await self._anext_of(self._incoming)
                leaf = promise_of_leaf(item)
                if leaf is not None:
                    return leaf
                stack.append(_open_collection(item))
            except BaseException as error:
                if is_own_cancellation(error):
                    raise  # nothing was lost (see `_anext_of`): the next call goes on from here
                self._finish()
                raise

    async def _anext_of(self, iterator: Any) -> Any:
        """Await the next item of ``iterator`` so that our consumer's cancellation cannot break it.

        A cancel-safe iterator (see `PENDING`), or any iterator while a background task drains us (its
        cancellation is the producer's own), is awaited directly. Any other one (a user's async generator) is
        awaited in a fetch task, which a cancelled consumer leaves running for the next call to pick up.
        """
        promise = self._promise
        if getattr(iterator, "_cancel_safe", False) or promise.is_drained_in_background:
            return await type(iterator).__anext__(iterator)
        pending = self._pending_fetch
        if pending is None or pending[0] is not iterator:
            task = asyncio.ensure_future(_anext_awaitable(iterator))
            promise.track_task(task)
            pending = self._pending_fetch = (iterator, task)
        task = pending[1]
        try:
            item = await asyncio.shield(task)
        except BaseException as error:
            if is_own_cancellation(error):
                raise  # the fetch goes on; the next call takes its result
            self._pending_fetch = None
            if task.cancelled():  # the fetch itself was cancelled: the producer's work was
                raise cancelled_work_error(promise.scope_cancel_error() or error) from None
            raise
        self._pending_fetch = None
        return item


async def _anext_awaitable(iterator: Any) -> Any:
    return await type(iterator).__anext__(iterator)


def freeze_message_type(item: Any) -> Any:
    """Normalize a `MessageType` at submission (``reply``/``send_message``), synchronously.

    Sync iterables (lists, tuples, generators …) are materialized into tuples, dicts and pydantic models become
    `Message`s; strings, messages, message promises, exceptions and async iterables are kept as they are.

    Raises:
        TypeError: an unsupported type (``None`` included) anywhere in the structure.
    """
    if isinstance(item, (str, Message, MessagePromise, BaseException)):
        return item
    if isinstance(item, BaseModel):
        return Message(**item.model_dump())
    if isinstance(item, dict):
        return Message(**item)
    if type(item) is tuple and all(map(isinstance, item, itertools.repeat(_FROZEN_ITEMS))):  # (no frame per item)
        return item  # (a history's messages, say: no call per item)
    if hasattr(item, "__iter__"):
        return tuple([freeze_message_type(sub_item) for sub_item in item])
    if hasattr(item, "__aiter__"):
        return item
    raise TypeError(_unexpected_type_message(item))


_FROZEN_ITEMS = (str, Message, MessagePromise, BaseException)


class MessageSequence(FlatSequence[Any, MessagePromise]):
    """Flatten any `MessageType` structure into a `MessageSequencePromise`.

    Args:
        appender_capture_errors: passed to the `message_appender` (see `StreamAppender`).
        start_asap: passed to the `sequence_promise`.
        incoming_streamer: an external source of items; then there is no `message_appender`.

    Flattening order (the check order matters): a `MessagePromise` as is; a `Message` as its ``as_promise``;
    another pydantic model, a dict or a str as a new `Message`; an exception is raised at that position (the
    sequence ends there); sync iterables, then async iterables, element by element, depth-first; anything else
    raises `TypeError`.
    """

    sequence_promise: MessageSequencePromise

    def __init__(
        self,
        appender_capture_errors: bool | Sentinel = DEFAULT,
        start_asap: bool | Sentinel = DEFAULT,
        incoming_streamer: Callable[[Any], AsyncIterator[Any]] | None = None,
    ) -> None:
        self.message_appender: StreamAppender[Any] | None
        if incoming_streamer is None:
            self.message_appender = StreamAppender(capture_errors=appender_capture_errors)
            incoming_streamer = self.message_appender
        else:
            self.message_appender = None
        super().__init__(
            incoming_streamer=incoming_streamer,
            start_asap=start_asap,
            sequence_promise_class=MessageSequencePromise,
        )

    def _astream(self, promise: Any) -> AsyncIterator[MessagePromise]:
        return _Flattener(self._incoming_streamer, self, promise)

    @staticmethod
    def light_sequence_promise(
        incoming_streamer: Callable[[Any], AsyncIterator[Any]], start_asap: bool | Sentinel
    ) -> MessageSequencePromise:
        """``MessageSequence(incoming_streamer=..., start_asap=...).sequence_promise``, lighter (for `AgentCall`).

        There is no `MessageSequence` object: the incoming streamer is called with None instead of it.
        """
        return MessageSequencePromise(streamer=flattener_factory(incoming_streamer), start_asap=start_asap)

    @classmethod
    def turn_into_sequence_promise(cls, messages: MessageType) -> MessageSequencePromise:
        """Wrap any `MessageType` in a closed, error-capturing, lazy sequence; a sequence promise is returned as is."""
        if isinstance(messages, MessageSequencePromise):
            return messages
        frozen_messages = freeze_message_type(messages)  # bad input fails here, at the call
        sequence = cls(appender_capture_errors=True, start_asap=False)
        assert sequence.message_appender is not None
        with sequence.message_appender:
            sequence.message_appender.append(frozen_messages)
        return sequence.sequence_promise


def join_sequence(
    sequence: MessageSequencePromise,
    delimiter: str | None = "\n\n",
    strip_leading_newlines: bool = False,
    reference_original_messages: bool = True,
    start_asap: bool | Sentinel = DEFAULT,
    message_class: type[Message] | None = None,
    **message_metadata: Any,
) -> MessagePromise:
    """Join the messages of ``sequence`` into one streamed `MessagePromise` (see `miniagents.utils.join_messages`)."""

    async def join_tokens(metadata_so_far: dict[str, Any]) -> AsyncIterator[str]:
        originals: list[Message] = []
        async for message_promise in sequence:
            if originals and delimiter:
                yield delimiter
            strip = strip_leading_newlines
            async for token in message_promise:
                if strip:
                    token = token.lstrip("\n\r")
                    if not token:
                        continue
                    strip = False
                yield token
            message = await message_promise
            originals.append(message)
            for name, value in message.frozen_fields_and_values().items():
                if name not in _TEXT_FIELDS:
                    metadata_so_far[name] = value
        if reference_original_messages:
            metadata_so_far["original_messages"] = tuple(originals)

    return (message_class or Message).promise(
        start_asap=start_asap, message_token_streamer=join_tokens, **message_metadata
    )


async def amake_promises(messages: Sequence[Message], per_step: int = 500) -> None:
    """Make each message's `Message.as_promise` ahead of time, ``per_step`` messages per event loop step.

    For agents that will reply a long, already loaded sequence (a chat history): started while they wait for
    their input, it moves the promises' cost (about 5-10 µs each) out of the reply, and the event loop keeps
    running meanwhile. Cancel it when it is no longer needed; what it made stays cached on the messages.
    """
    for start in range(0, len(messages), per_step):
        for message in messages[start : start + per_step]:
            message.as_promise  # noqa: B018 - made and cached on the message
        await asyncio.sleep(0)
