"""Turning stored rows back into messages (each as its own class) and call trees."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from miniagents.messages import Message
from miniagents.promising.ext.frozen import Frozen
from miniagents.store._protocol import MessageStore
from miniagents.store._rows import CallRow, PartialRow, SlotRow

__all__ = ["MessageRegistry", "StoredCall", "aload_call_tree", "aload_history", "aload_message", "aload_messages"]


class MessageRegistry:
    """Which `Message` class a stored ``class_`` name loads as.

    Registered classes come first; then every `Message` subclass defined so far (a name two classes share is
    ambiguous: register the one you want). A name no class has loads as a generic message: a `Message` subclass
    made on the fly with that name and no declared fields, holding the stored fields as extra fields (so it keeps
    its ``class_`` and its hash key).

    Args:
        classes: classes to register (more with `register`).
    """

    def __init__(self, classes: Iterable[type[Message]] = ()) -> None:
        self._registered: dict[str, type[Message]] = {}
        self._generic: dict[str, type[Message]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[Message]) -> type[Message]:
        """Register ``cls`` under its name (usable as a class decorator; returns ``cls``).

        Raises:
            TypeError: ``cls`` is not a `Message` subclass.
        """
        if not (isinstance(cls, type) and issubclass(cls, Message)):
            raise TypeError(f"only Message classes can be registered, got {cls!r}")
        self._registered[cls.__name__] = cls
        return cls

    def lookup(self, class_name: str) -> type[Message]:
        """The class for ``class_name`` (see the class docstring); a generic one when no class has that name."""
        registered = self._registered.get(class_name)
        if registered is not None:
            return registered
        found = [cls for cls in _message_classes() if cls.__name__ == class_name and cls not in _GENERIC_CLASSES]
        if len(found) == 1:
            return found[0]
        return self.generic(class_name)

    def generic(self, class_name: str) -> type[Message]:
        """The generic `Message` subclass named ``class_name`` (made once per registry)."""
        cls = self._generic.get(class_name)
        if cls is None:
            cls = type(class_name, (Message,), {"__module__": __name__, "__doc__": "A message of an unknown class."})
            _GENERIC_CLASSES.add(cls)
            self._generic[class_name] = cls
        return cls


_GENERIC_CLASSES: set[type[Message]] = set()

DEFAULT_REGISTRY = MessageRegistry()


def _message_classes() -> list[type[Message]]:
    classes: list[type[Message]] = [Message]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    return classes


@dataclass
class StoredCall:
    """An agent call read back from a store, with its messages and the calls it made.

    Attributes:
        call_id: the call's id (`AgentCall.call_id`: a version 7 UUID in hex).
        parent_call_id: the id of the call whose agent made this call, None at top level.
        agent_alias: the agent's alias.
        kwargs: the inquire kwargs as a `Frozen` (messages in them resolved), None when there were none.
        status: ``"running"`` (also what a call interrupted by a crash keeps), ``"finished"``, ``"failed"`` or
            ``"cancelled"``.
        started_at: when it started, in seconds since the epoch.
        ended_at: when it ended, None while running.
        error: the error's text when it failed or was cancelled.
        inputs: the input messages in order; a message that was still streaming loads with ``partial=True`` and
            the text stored so far (see `aload_message`).
        replies: the reply messages in order, the same way.
        children: the calls this call's agent made, in the order they started.
    """

    call_id: str
    parent_call_id: str | None
    agent_alias: str
    kwargs: Frozen | None
    status: str
    started_at: float
    ended_at: float | None
    error: str | None
    inputs: tuple[Message, ...] = ()
    replies: tuple[Message, ...] = ()
    children: list[StoredCall] = field(default_factory=list)


class _Loader:
    """Loads messages by hash key (with their nested messages) and partials, caching what it read."""

    def __init__(self, store: MessageStore, registry: MessageRegistry) -> None:
        self._store = store
        self._registry = registry
        self._raw: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, Message] = {}

    async def _afetch_tree(self, hash_keys: Iterable[str]) -> None:
        """Read the rows of ``hash_keys`` and of every message nested in them."""
        wanted = {key for key in hash_keys if key not in self._raw}
        while wanted:
            rows = await self._store.aread_messages(sorted(wanted))
            wanted = set()
            for key, row in rows.items():
                data = json.loads(row.json)
                self._raw[key] = data
                wanted.update(ref for ref in _references(data) if ref not in self._raw)

    async def amessages(self, hash_keys: Iterable[str]) -> dict[str, Message]:
        keys = list(hash_keys)
        await self._afetch_tree(keys)
        missing = [key for key in keys if key not in self._raw]
        if missing:
            raise KeyError(f"no stored message with the hash key {missing[0]!r}")
        return {key: self._build(key) for key in keys}

    def _build(self, hash_key: str) -> Message:
        message = self._messages.get(hash_key)
        if message is None:
            data = self._raw[hash_key]
            message = self._instantiate(data["class_"], self._resolve(data))
            self._messages[hash_key] = message
        return message

    def _instantiate(self, class_name: str, fields: dict[str, Any]) -> Message:
        cls = self._registry.lookup(class_name)
        try:
            return cls(**fields)
        except ValueError:  # the class changed since (a required field, a stricter type): keep the data anyway
            return self._registry.generic(class_name)(**fields)

    def _resolve(self, data: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments to rebuild a serialized model: references replaced by the messages."""
        fields: dict[str, Any] = {}
        for name, value in data.items():
            if name == "class_":
                continue
            if name.endswith("__hash_key") and isinstance(value, str) and value in self._raw:
                fields[name.removesuffix("__hash_key")] = self._build(value)
            elif name.endswith("__hash_keys") and isinstance(value, list):
                fields[name.removesuffix("__hash_keys")] = [self._resolve_value(item, True) for item in value]
            else:
                fields[name] = self._resolve_value(value, False)
        return fields

    def _resolve_value(self, value: Any, may_be_reference: bool) -> Any:
        if may_be_reference and isinstance(value, str) and value in self._raw:
            return self._build(value)
        if isinstance(value, list):
            return [self._resolve_value(item, may_be_reference) for item in value]
        if isinstance(value, dict):
            class_name = value.get("class_")
            if class_name == "Frozen" or not isinstance(class_name, str):
                return Frozen(**self._resolve(value))
            return self._instantiate(class_name, self._resolve(value))  # a message inlined (in call kwargs)
        return value

    def kwargs(self, kwargs_json: str | None) -> Frozen | None:
        """Call kwargs as stored (``Frozen.serialized``, messages inlined) back as a `Frozen`."""
        return Frozen(**self._resolve(json.loads(kwargs_json))) if kwargs_json else None

    async def apartials(self, partial_ids: Iterable[str]) -> dict[str, Message]:
        rows = await self._store.aread_partials(list(partial_ids))
        completed = await self.amessages([row.hash_key for row in rows.values() if row.hash_key])
        return {
            partial_id: completed[row.hash_key] if row.hash_key else self._partial(row)
            for partial_id, row in rows.items()
        }

    def _partial(self, row: PartialRow) -> Message:
        metadata = json.loads(row.metadata_json)
        metadata.pop("class_", None)
        metadata.update(text=json.loads(row.text_json), partial=True, partial_status=row.status)
        return self._instantiate(row.class_, metadata)

    async def aslots(self, slots: list[SlotRow]) -> list[Message]:
        messages = await self.amessages([slot.hash_key for slot in slots if slot.hash_key])
        partials = await self.apartials([slot.partial_id for slot in slots if slot.partial_id])
        result = []
        for slot in slots:
            if slot.hash_key:
                result.append(messages[slot.hash_key])
            elif slot.partial_id in partials:
                result.append(partials[slot.partial_id])
        return result


def _references(data: Any) -> Iterable[str]:
    """Every hash key a serialized model refers to (``…__hash_key`` and ``…__hash_keys`` fields, at any depth)."""
    if isinstance(data, dict):
        for name, value in data.items():
            if name.endswith("__hash_key") and isinstance(value, str):
                yield value
            elif name.endswith("__hash_keys") and isinstance(value, list):
                yield from _strings(value)
            else:
                yield from _references(value)
    elif isinstance(data, list):
        for item in data:
            yield from _references(item)


def _strings(value: list[Any]) -> Iterable[str]:
    for item in value:
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            yield from _strings(item)
        else:
            yield from _references(item)


async def aload_message(store: MessageStore, hash_key: str, registry: MessageRegistry | None = None) -> Message:
    """Load a stored message as its own class, with its nested messages resolved.

    Args:
        store: the store.
        hash_key: the message's hash key (``message.hash_key`` when it was stored).
        registry: which class each ``class_`` loads as; by default every `Message` subclass defined so far by its
            name, and a generic message for an unknown one (see `MessageRegistry`).

    Returns:
        The message; equal to the one stored, with the same hash key, when its class is known and unchanged.

    Raises:
        KeyError: no message with that hash key is stored.
    """
    return (await aload_messages(store, [hash_key], registry))[hash_key]


async def aload_messages(
    store: MessageStore, hash_keys: Iterable[str], registry: MessageRegistry | None = None
) -> dict[str, Message]:
    """Load several stored messages at once (see `aload_message`), by hash key.

    Raises:
        KeyError: one of them is not stored.
    """
    return await _Loader(store, registry or DEFAULT_REGISTRY).amessages(hash_keys)


async def aload_call_tree(
    store: MessageStore, root_call_id: str, registry: MessageRegistry | None = None
) -> StoredCall:
    """Load an agent call with its input and reply messages and, recursively, the calls it made.

    A message that was still streaming when the process stopped loads as its class with the text stored so far
    and the extra fields ``partial=True`` and ``partial_status`` (``"streaming"`` or ``"failed"``).

    Args:
        store: the store.
        root_call_id: the call's id (``AgentCall.call_id``).
        registry: see `aload_message`.

    Returns:
        The call, its ``children`` filled in.

    Raises:
        KeyError: no call with that id is stored.
    """
    rows = await store.aread_calls(root_call_id)
    if not rows:
        raise KeyError(f"no stored agent call with the id {root_call_id!r}")
    slots = await store.aread_slots([row.call_id for row in rows])
    loader = _Loader(store, registry or DEFAULT_REGISTRY)
    messages = await loader.aslots(slots)
    by_call: dict[str, dict[str, list[Message]]] = {}
    for slot, message in zip(slots, messages, strict=False):
        by_call.setdefault(slot.owner_id, {}).setdefault(slot.kind, []).append(message)
    calls = {row.call_id: _stored_call(row, by_call.get(row.call_id, {}), loader) for row in rows}
    for row in rows:
        if row.call_id != root_call_id and row.parent_call_id in calls:
            calls[row.parent_call_id].children.append(calls[row.call_id])
    return calls[root_call_id]


def _stored_call(row: CallRow, messages: dict[str, list[Message]], loader: _Loader) -> StoredCall:
    return StoredCall(
        call_id=row.call_id,
        parent_call_id=row.parent_call_id,
        agent_alias=row.agent_alias,
        kwargs=loader.kwargs(row.kwargs_json),
        status=row.status,
        started_at=row.started_at,
        ended_at=row.ended_at,
        error=row.error,
        inputs=tuple(messages.get("input", ())),
        replies=tuple(messages.get("reply", ())),
    )


async def aload_history(store: MessageStore, history_id: str, registry: MessageRegistry | None = None) -> list[Message]:
    """Load the messages of a history (see `store_history_agent`) in order.

    Partial messages are marked as in `aload_call_tree`.
    """
    slots = await store.aread_slots([history_id])
    return await _Loader(store, registry or DEFAULT_REGISTRY).aslots([s for s in slots if s.kind == "history"])
