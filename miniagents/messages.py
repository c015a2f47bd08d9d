"""Messages, message promises and message sequences.

A `Message` is an immutable `Frozen` model with a ``text``. A `MessagePromise` is a message that may still be
streaming, token by token. A `MessageSequencePromise` is a replayable stream of message promises: what every
agent replies. `MessageSequence` flattens any `MessageType` structure into such a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PrivateAttr

from miniagents.promising.ext.frozen import Frozen
from miniagents.promising.promising import StreamAppender, StreamedPromise
from miniagents.promising.sentinels import DEFAULT, Sentinel
from miniagents.promising.sequence import FlatSequence

if TYPE_CHECKING:
    from miniagents.miniagent_typing import MessageTokenStreamer, MessageType

__all__ = ["Message", "MessagePromise", "MessageSequence", "MessageSequencePromise"]


class Message(Frozen):
    """An immutable message: ``text`` plus any metadata as extra fields (``role``, ``model`` …).

    The text may be given positionally: ``Message("hi", role="user")``. Subclass it to declare fields.

    ``str(message)`` is ``text`` if it is not None, else ``text_template.format(**fields)``, else the JSON dump.
    """

    text: str | None = None
    text_template: str | None = None

    _as_promise_cache: MessagePromise | None = PrivateAttr(default=None)
    _persisted: bool = PrivateAttr(default=False)

    def __init__(self, text: str | None = None, /, **data: Any) -> None:
        if text is not None:
            data["text"] = text
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

    def sub_messages(self) -> Iterator[Message]:
        """Yield every message nested in this one (at any depth), depth-first, children before their parent."""
        for name in self.frozen_fields():
            yield from _sub_messages_of(getattr(self, name))

    @property
    def as_promise(self) -> MessagePromise:
        """A `MessagePromise` already resolved to this message (the same object on every access)."""
        promise = self._as_promise_cache
        if promise is None:
            promise = self._as_promise_cache = MessagePromise(prefill_message=self)
        return promise

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


def _serialize_value(value: Any) -> Any:
    if isinstance(value, Message):
        return value.hash_key
    if isinstance(value, Frozen):
        return _serialize_fields(value)
    if isinstance(value, tuple):
        return tuple([_serialize_value(item) for item in value])
    return value


def _serialize_fields(frozen: Frozen) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in frozen.frozen_fields_and_values(exclude_class=False).items():
        if isinstance(value, Message):
            result[f"{name}__hash_key"] = value.hash_key
        elif isinstance(value, tuple) and any(isinstance(item, Message) for item in value):
            result[f"{name}__hash_keys"] = _serialize_value(value)
        else:
            result[name] = _serialize_value(value)
    return result


def _sub_messages_of(value: Any) -> Iterator[Message]:
    if isinstance(value, Message):
        yield from value.sub_messages()
        yield value
    elif isinstance(value, Frozen):
        for name in value.frozen_fields():
            yield from _sub_messages_of(getattr(value, name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _sub_messages_of(item)


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
        if self._token_streamer is None:
            return super()._streamer()
        return self._token_streamer(self._metadata_so_far)

    async def _resolver(self) -> Message:
        tokens = [token async for token in self]
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
        return tuple([await message_promise async for message_promise in self])

    async def aresolve_messages(self) -> tuple[Message, ...]:
        """The same as awaiting the sequence promise."""
        return await self.aresolve()

    def as_single_promise(self, **kwargs: Any) -> MessagePromise:
        r"""Join the messages into one `MessagePromise` (separated by ``"\\n\\n"`` by default).

        Keyword arguments go to `miniagents.utils.join_messages` (``start_asap`` is False).
        """
        from miniagents.utils import join_messages

        return join_messages(self, start_asap=False, **kwargs)


def _promise_of_leaf(item: Any) -> MessagePromise | None:
    """The message promise for a single-message item, None for collections; raises for errors and bad types."""
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


async def _aflatten(item: Any) -> AsyncIterator[MessagePromise]:
    if hasattr(item, "__iter__"):
        for sub_item in item:
            leaf = _promise_of_leaf(sub_item)
            if leaf is not None:
                yield leaf
            else:
                async for message_promise in _aflatten(sub_item):
                    yield message_promise
    else:
        async for sub_item in item:
            leaf = _promise_of_leaf(sub_item)
            if leaf is not None:
                yield leaf
            else:
                async for message_promise in _aflatten(sub_item):
                    yield message_promise


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
    if hasattr(item, "__iter__"):
        return tuple([freeze_message_type(sub_item) for sub_item in item])
    if hasattr(item, "__aiter__"):
        return item
    raise TypeError(_unexpected_type_message(item))


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

    async def _astream(self, _: Any) -> AsyncIterator[MessagePromise]:
        async for item in self._incoming_streamer(self):
            leaf = _promise_of_leaf(item)
            if leaf is not None:
                yield leaf
            else:
                async for message_promise in _aflatten(item):
                    yield message_promise

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
