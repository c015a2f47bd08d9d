"""Turning stored rows back into messages (each as its own class) and call trees."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from miniagents.messages import Message
from miniagents.promising.ext.frozen import Frozen
from miniagents.store._protocol import MessageStore
from miniagents.store._rows import CallRow, PartialRow, SlotRow

__all__ = ["MessageRegistry", "StoredCall", "aload_call_tree", "aload_history", "aload_message", "aload_messages"]


class MessageRegistry:
    """Which `Message` class a stored ``class_`` name loads as (and which `Frozen` class a value inside one does).

    Registered classes come first; then every `Message` subclass defined so far (for a value inside a message:
    every other `Frozen` subclass). A class defined again under the same module and name (a reloaded module, a
    notebook cell run again) counts once: the one the module holds now. A name that classes of different modules
    share is ambiguous: loading it raises `LookupError` until you register the one you want. A name no class has
    loads as a generic message: a `Message` subclass made on the fly with that name and no declared fields, holding
    the stored fields as extra fields (so it keeps its ``class_`` and its hash key); a value inside a message loads
    as a generic `Frozen` subclass the same way.

    Args:
        classes: classes to register (more with `register`).
    """

    def __init__(self, classes: Iterable[type[Frozen]] = ()) -> None:
        self._registered: dict[str, type[Message]] = {}
        self._registered_frozen: dict[str, type[Frozen]] = {}
        self._generic: dict[str, type[Message]] = {}
        self._generic_frozen: dict[str, type[Frozen]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[FrozenT]) -> type[FrozenT]:
        """Register ``cls`` under its name (usable as a class decorator; returns ``cls``).

        A `Message` subclass is what stored messages of that name load as; another `Frozen` subclass is what values
        of that name inside them load as.

        Raises:
            TypeError: ``cls`` is not a `Frozen` (or `Message`) subclass.
        """
        if not (isinstance(cls, type) and issubclass(cls, Frozen)):
            raise TypeError(f"only Message (or Frozen) classes can be registered, got {cls!r}")
        if issubclass(cls, Message):
            self._registered[cls.__name__] = cls
        else:
            self._registered_frozen[cls.__name__] = cls
        return cls

    def lookup(self, class_name: str) -> type[Message]:
        """The class for ``class_name`` (see the class docstring); a generic one when no class has that name.

        Raises:
            LookupError: classes of different modules have that name, and none is registered.
        """
        return self._known(class_name) or self.generic(class_name)

    def generic(self, class_name: str) -> type[Message]:
        """The generic `Message` subclass named ``class_name`` (made once per registry)."""
        return _generic_class(self._generic, Message, class_name, "A message of an unknown class.")

    def _known(self, class_name: str) -> type[Message] | None:
        """The registered or defined `Message` class named ``class_name``, None when there is none."""
        registered = self._registered.get(class_name)
        if registered is not None:
            return registered
        return _only_class(class_name, _subclasses(Message, class_name))

    def _known_frozen(self, class_name: str) -> type[Frozen] | None:
        """The registered or defined `Frozen` class (not a `Message` one) named ``class_name``, or None."""
        registered = self._registered_frozen.get(class_name)
        if registered is not None:
            return registered
        return _only_class(class_name, _subclasses(Frozen, class_name, but=Message))

    def _generic_frozen_class(self, class_name: str) -> type[Frozen]:
        """The generic `Frozen` subclass named ``class_name`` (made once per registry)."""
        return _generic_class(self._generic_frozen, Frozen, class_name, "A value of an unknown class.")


FrozenT = TypeVar("FrozenT", bound=Frozen)

_GENERIC_CLASSES: set[type[Frozen]] = set()

DEFAULT_REGISTRY = MessageRegistry()


def _generic_class(made: dict[str, type[FrozenT]], base: type[FrozenT], name: str, doc: str) -> type[FrozenT]:
    """The subclass of ``base`` named ``name`` with no declared fields, made once (``made`` keeps it by name)."""
    made_before = made.get(name)
    if made_before is not None:
        return made_before
    cls: type[FrozenT] = type(name, (base,), {"__module__": __name__, "__doc__": doc})
    made[name] = cls
    _GENERIC_CLASSES.add(cls)
    return cls


def _subclasses(base: type[Frozen], name: str, but: type[Frozen] | None = None) -> list[type[Any]]:
    """The subclasses of ``base`` (at any depth, ``base`` included) named ``name``, leaving out ``but``'s."""
    classes: list[type[Any]] = [base]
    for cls in classes:
        classes.extend(sub for sub in cls.__subclasses__() if sub is not but)
    return [cls for cls in classes if cls.__name__ == name and cls not in _GENERIC_CLASSES]


def _only_class(name: str, found: list[type[Any]]) -> type[Any] | None:
    """The one class of ``found`` (a class defined again counts once, as the one its module holds), or None.

    Raises:
        LookupError: classes of different modules (or of different qualified names) remain.
    """
    by_path: dict[tuple[str, str], type[Any]] = {}
    for cls in found:  # (in the order they were defined: the last one of a path wins, unless its module holds one)
        path = (cls.__module__, cls.__qualname__)
        chosen = by_path.get(path)
        if chosen is None or chosen is not _held_by_module(*path):
            by_path[path] = cls
    if len(by_path) > 1:
        paths = ", ".join(sorted(f"{module}.{qualname}" for module, qualname in by_path))
        raise LookupError(
            f"{len(by_path)} classes are named {name!r} ({paths}): pass a MessageRegistry with the one to load "
            f"(MessageRegistry([{name}]))"
        )
    return next(iter(by_path.values()), None)


def _held_by_module(module: str, qualname: str) -> object:
    """What the module ``module`` holds under ``qualname`` now (None when it is not imported or has none)."""
    held: object = sys.modules.get(module)
    for part in qualname.split("."):
        held = getattr(held, part, None)
    return held


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
        self._references: dict[str, tuple[str, ...]] = {}  # hash key -> the hash keys its row refers to
        self._messages: dict[str, Message] = {}
        self._classes: dict[str, tuple[type[Message], type[Message]]] = {}  # name -> (class, generic class)
        # (name, inlined) -> the message class and the Frozen class of a value inside a stored model (`_inner`)
        self._inner_classes: dict[tuple[str, bool], tuple[type[Message] | None, type[Frozen] | None]] = {}

    async def _afetch_tree(self, hash_keys: Iterable[str]) -> None:
        """Read the rows of ``hash_keys`` and of every message nested in them."""
        wanted = {key for key in hash_keys if key not in self._raw}
        while wanted:
            rows = await self._store.aread_messages(sorted(wanted))
            wanted = set()
            for key, row in rows.items():
                data = _parse_object(row.json, f"the stored message {key!r} ({row.class_})")
                if not isinstance(data.get("class_"), str):
                    raise ValueError(f"the stored message {key!r} ({row.class_}) has no class_ in its JSON")
                self._raw[key] = data
                references = self._references[key] = tuple(_references(data))
                wanted.update(ref for ref in references if ref not in self._raw)

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
            for key in self._build_order(hash_key):  # (the nested ones first: no recursion as deep as the nesting)
                data = self._raw[key]
                where = f"the stored message {key!r} ({data['class_']})"
                message = self._instantiate(data["class_"], self._resolve(data, where), where)
                if self._references[key]:  # (a message that holds others: its key now,
                    message.hash_key  # noqa: B018  with theirs known, so computing it later is not as deep as the nesting)
                self._messages[key] = message
            message = self._messages[hash_key]
        return message

    def _build_order(self, hash_key: str) -> list[str]:
        """``hash_key`` and the fetched messages nested in it that are not built yet, each after those it holds.

        Raises:
            ValueError: a message holds itself (the rows were edited: a hash key cannot refer to itself).
        """
        order: list[str] = []
        done: set[str] = set()
        stack: list[tuple[str, bool]] = [(hash_key, False)]
        entered: set[str] = set()
        while stack:
            key, children_done = stack.pop()
            if key in done or key in self._messages:
                continue
            if children_done:
                done.add(key)
                order.append(key)
                continue
            if key in entered:  # (on the path from hash_key to here, not finished)
                raise ValueError(f"the stored message {key!r} holds itself (through its nested messages)")
            entered.add(key)
            stack.append((key, True))
            stack.extend((ref, False) for ref in self._references[key] if ref in self._raw)
        return order

    def _instantiate(self, class_name: str, fields: dict[str, Any], where: str) -> Message:
        classes = self._classes.get(class_name)
        if classes is None:  # (looked up once per name and load: a lookup walks every Message subclass)
            registry = self._registry
            try:
                cls = registry.lookup(class_name)
            except LookupError as error:
                raise LookupError(f"{where} cannot be loaded: {error}") from error
            classes = self._classes[class_name] = (cls, registry.generic(class_name))
        return self._validated(*classes, fields, where)

    def _validated(self, cls: type[FrozenT], generic: type[FrozenT], fields: dict[str, Any], where: str) -> FrozenT:
        try:
            return cls(**fields)
        except ValueError as error:  # the class changed since (a required field, a stricter type): keep the data anyway
            if cls is generic:
                failure = error
            else:
                try:
                    return generic(**fields)
                except ValueError as generic_error:
                    failure = generic_error
        raise ValueError(f"{where} cannot be loaded, not even as a generic {generic.__name__}: {failure}") from failure

    def _resolve(self, data: dict[str, Any], where: str, inlined: bool = False) -> dict[str, Any]:
        """The keyword arguments to rebuild a serialized model: references replaced by the messages.

        ``inlined``: messages are inlined (call kwargs and partial metadata, ``Frozen.serialized``) rather than
        referred to by hash key (message rows).

        Raises:
            KeyError: a message row refers to a nested message by a hash key that no stored message has.
        """
        fields: dict[str, Any] = {}
        for name, value in data.items():
            if name == "class_":
                continue
            if name.endswith("__hash_key") and isinstance(value, str) and value in self._raw:
                fields[name.removesuffix("__hash_key")] = self._build(value)
            elif name.endswith("__hash_key") and not inlined and _looks_like_a_hash_key(value):
                raise KeyError(
                    f"{where} holds the message {value!r} in its field {name.removesuffix('__hash_key')!r}, but no "
                    "message with that hash key is stored"
                )
            elif name.endswith("__hash_keys") and isinstance(value, list):
                fields[name.removesuffix("__hash_keys")] = [
                    self._resolve_value(item, where, inlined, True) for item in value
                ]
            else:
                fields[name] = self._resolve_value(value, where, inlined, False)
        return fields

    def _resolve_value(self, value: Any, where: str, inlined: bool, may_be_reference: bool) -> Any:
        if may_be_reference and isinstance(value, str) and value in self._raw:
            return self._build(value)
        if isinstance(value, list):
            return [self._resolve_value(item, where, inlined, may_be_reference) for item in value]
        if isinstance(value, dict):
            class_name = value.get("class_")
            fields = self._resolve(value, where, inlined)
            if class_name == "Frozen" or not isinstance(class_name, str):
                return Frozen(**fields)
            return self._inner(class_name, fields, where, inlined, "text" in value and "text_template" in value)
        return value

    def _inner(self, class_name: str, fields: dict[str, Any], where: str, inlined: bool, message_like: bool) -> Frozen:
        """A `Frozen` value of a class other than `Frozen` inside a stored model (a message only when ``inlined``)."""
        registry = self._registry
        found = self._inner_classes.get((class_name, inlined))
        if found is None:  # (looked up once per name and load, as in `_instantiate`)
            try:
                message_class = registry._known(class_name) if inlined else None
                cls = None if message_class is not None else registry._known_frozen(class_name)
            except LookupError as error:
                raise LookupError(f"{where} cannot be loaded: {error}") from error
            found = self._inner_classes[(class_name, inlined)] = (message_class, cls)
        message_class, cls = found
        if message_class is not None or (inlined and cls is None and message_like):  # a message inlined
            return self._validated(
                message_class or registry.generic(class_name), registry.generic(class_name), fields, where
            )
        generic = registry._generic_frozen_class(class_name)
        return self._validated(cls or generic, generic, fields, where)

    def kwargs(self, call_id: str, kwargs_json: str | None) -> Frozen | None:
        """Call kwargs as stored (``Frozen.serialized``, messages inlined) back as a `Frozen`."""
        if not kwargs_json:
            return None
        where = f"the kwargs of the stored call {call_id!r}"
        return Frozen(**self._resolve(_parse_object(kwargs_json, where), where, inlined=True))

    def _partial(self, row: PartialRow) -> Message:
        where = f"the partial message {row.partial_id!r} ({row.class_})"
        metadata = self._resolve(_parse_object(row.metadata_json, where), where, inlined=True)
        try:
            text = json.loads(row.text_json)
        except ValueError as error:
            raise ValueError(f"{where} has a broken text: {error}") from error
        metadata.update(text=text, partial=True, partial_status=row.status)
        return self._instantiate(row.class_, metadata, where)

    async def aslots(self, slots: list[SlotRow]) -> list[Message]:
        """The message of each slot (a completed partial as its message), in the order of ``slots``.

        Raises:
            KeyError: a slot names a message or a partial message that is not stored.
        """
        partials = await self._store.aread_partials([slot.partial_id for slot in slots if slot.partial_id])
        keys = [slot.hash_key for slot in slots if slot.hash_key]
        await self._afetch_tree([*keys, *(row.hash_key for row in partials.values() if row.hash_key)])
        result = []
        for slot in slots:
            where = f"the {slot.kind} message {slot.position} of {slot.owner_id!r}"
            if slot.hash_key:
                result.append(self._slot_message(slot.hash_key, where))
            elif slot.partial_id:
                row = partials.get(slot.partial_id)
                if row is None:
                    raise KeyError(f"{where} is the partial message {slot.partial_id!r}, which is not stored")
                result.append(
                    self._slot_message(row.hash_key, f"{where} (the completed partial message {row.partial_id!r})")
                    if row.hash_key
                    else self._partial(row)
                )
            else:
                raise ValueError(f"{where} names neither a message nor a partial message")
        return result

    def _slot_message(self, hash_key: str, where: str) -> Message:
        if hash_key not in self._raw:
            raise KeyError(f"{where} is the message {hash_key!r}, which is not stored")
        return self._build(hash_key)


_HASH_KEY = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def _looks_like_a_hash_key(value: Any) -> bool:
    """Whether ``value`` has the form of a hash key (40 or, with ``longer_hash_keys``, 64 lowercase hex digits)."""
    return isinstance(value, str) and _HASH_KEY.fullmatch(value) is not None


def _parse_object(text: str, where: str) -> dict[str, Any]:
    """A stored JSON object.

    Raises:
        ValueError: ``text`` is not JSON, or not an object (``where`` names what it is).
    """
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} has broken JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{where} has JSON that is not an object: {text[:100]!r}")
    return data


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
        KeyError: no message with that hash key is stored, or no message that it holds (the message names which).
        LookupError: classes of different modules have its class's name (or a nested one's) and none is
            registered (see `MessageRegistry`).
        ValueError: its stored row (or a nested one's) is broken: not a JSON object, no ``class_``, or fields that
            not even a generic message takes (the message names the hash key and the class).
    """
    return (await aload_messages(store, [hash_key], registry))[hash_key]


async def aload_messages(
    store: MessageStore, hash_keys: Iterable[str], registry: MessageRegistry | None = None
) -> dict[str, Message]:
    """Load several stored messages at once (see `aload_message`), by hash key.

    Raises:
        KeyError: one of them is not stored (or a message nested in one).
        LookupError: see `aload_message`.
        ValueError: see `aload_message`.
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
        KeyError: no call with that id is stored, or one of its messages is not (the message names the call, the
            input or reply position and the hash key or partial id).
        LookupError: see `aload_message`.
        ValueError: see `aload_message`.
    """
    rows = await store.aread_calls(root_call_id)
    if not rows:
        raise KeyError(f"no stored agent call with the id {root_call_id!r}")
    slots = await store.aread_slots([row.call_id for row in rows])
    loader = _Loader(store, registry or DEFAULT_REGISTRY)
    messages = await loader.aslots(slots)
    by_call: dict[str, dict[str, list[Message]]] = {}
    for slot, message in zip(slots, messages, strict=True):
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
        kwargs=loader.kwargs(row.call_id, row.kwargs_json),
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

    Raises:
        KeyError: one of its messages is not stored (the message names its position).
        LookupError: see `aload_message`.
        ValueError: see `aload_message`.
    """
    slots = await store.aread_slots([history_id])
    return await _Loader(store, registry or DEFAULT_REGISTRY).aslots([s for s in slots if s.kind == "history"])
