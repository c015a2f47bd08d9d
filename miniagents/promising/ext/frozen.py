"""`Frozen`: an immutable pydantic model whose values are frozen recursively and whose content has a stable hash key.

Freezing turns lists and tuples into tuples and dicts into plain `Frozen` objects, at any depth, for declared
fields and extra fields alike. The allowed leaves are ``None``, ``str``, ``int``, ``float``, ``bool`` and `Frozen`
(messages included); anything else is rejected with a `pydantic.ValidationError` that names the key and the type.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from miniagents.promising._context import active_context as _active_context

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Self

__all__ = ["Frozen", "FrozenType", "init_fresh_private_attributes"]

FrozenType = Union[str, int, float, bool, None, "Frozen", tuple["FrozenType", ...]]
"""The values a `Frozen` model may hold after freezing."""

_LEAF_TYPES = (str, int, float, bool, type(None))
_PLAIN_LEAF_TYPES = frozenset(_LEAF_TYPES)
_SORTED_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)  # `json.dumps(..., ensure_ascii=False,
# sort_keys=True)` without making an encoder per call


def _freeze(value: Any, key: str) -> Any:
    if isinstance(value, _LEAF_TYPES) or isinstance(value, Frozen):
        return value
    if isinstance(value, (list, tuple)):
        return tuple([_freeze(item, key) for item in value])
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise ValueError(
                    f"the value of {key!r} is a dict with the key {name!r} of type {type(name).__name__}: "
                    f"a dict is frozen into a Frozen, whose field names must be strings"
                )
        return Frozen(**value)
    raise ValueError(
        f"the value of {key!r} has the type {type(value).__name__}, which cannot be frozen: "
        f"use str, int, float, bool, None, Frozen (or a Message), or lists, tuples and dicts of those"
    )


def _describe_annotation(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _keeps_frozen(annotation: Any) -> bool:
    """Whether pydantic, validating a frozen value against ``annotation``, certainly keeps it frozen."""
    if annotation in _SAFE_ANNOTATIONS or (isinstance(annotation, type) and issubclass(annotation, Frozen)):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return all(type(value) in _PLAIN_LEAF_TYPES for value in typing.get_args(annotation))
    if origin in (Union, types.UnionType, tuple, typing.Annotated):
        arguments = typing.get_args(annotation)
        if origin is typing.Annotated:
            arguments = arguments[:1]
        return all(argument is Ellipsis or _keeps_frozen(argument) for argument in arguments)
    return False


_SAFE_ANNOTATIONS = (str, int, float, bool, type(None), None, Any)

_MAPPING_ORIGINS = (dict, Mapping, MutableMapping)


def _holds_a_dict_only_as_mapping(annotation: Any) -> bool:
    """Whether ``annotation`` asks for a dict (or mapping) where a frozen dict, a `Frozen`, would not validate.

    A dict is frozen into a `Frozen` before validation, so ``dict[str, int]`` (alone, in an optional or union
    without a `Frozen` branch, or as the items of a tuple or list) could never hold one.
    """
    origin = typing.get_origin(annotation)
    if annotation in _MAPPING_ORIGINS or origin in _MAPPING_ORIGINS:
        return True
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _holds_a_dict_only_as_mapping(arguments[0])
    if origin in (Union, types.UnionType):
        takes_frozen = any(
            argument in (Any, object) or (isinstance(argument, type) and issubclass(argument, Frozen))
            for argument in arguments
        )
        return not takes_frozen and any(_holds_a_dict_only_as_mapping(argument) for argument in arguments)
    if origin in (tuple, list, Sequence):
        return any(argument is not Ellipsis and _holds_a_dict_only_as_mapping(argument) for argument in arguments)
    return False


class Frozen(BaseModel):
    """An immutable pydantic model (``frozen=True``, ``extra="allow"``) with a content hash.

    Any keyword fields are accepted and frozen (see the module docstring). Assigning an attribute raises
    `pydantic.ValidationError`. ``class_`` always holds the concrete class's name; passing a different one
    raises `pydantic.ValidationError`.

    Equality is pydantic's (same class, equal field values, extras included); instances are hashable.
    ``str(obj)`` and `hash_key` are computed once and cached outside the fields.

    Example:
        >>> Frozen(x=1, tags=["a", "b"]).tags
        ('a', 'b')
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    class_: str = ""
    """The concrete class's short name; always filled in by validation."""

    __refrozen_fields__: ClassVar[tuple[str, ...]] = ()
    """The declared fields whose type may undo the freezing (e.g. ``list[...]``): frozen again after validation."""

    _string_cache: str | None = PrivateAttr(default=None)
    _hash_key_cache: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _freeze_values(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        class_name = cls.__name__
        for value in data.values():
            if type(value) not in _PLAIN_LEAF_TYPES:
                frozen = {key: _freeze(value, key) for key, value in data.items()}
                break
        else:
            frozen = dict(data)  # only plain leaves (e.g. `Message(text=...)`): nothing to freeze
        supplied = frozen.get("class_")
        if supplied is None:
            frozen["class_"] = class_name
        elif supplied != class_name:
            raise ValueError(f"class_ must be {class_name!r} for {class_name}, got {supplied!r}")
        return frozen

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Check the declared fields and prepare the class (see `__refrozen_fields__`).

        Raises:
            TypeError: a field is declared as a dict (``dict[str, int]``, ``Mapping[...]``, also inside an optional,
                a tuple or a list): every dict is frozen into a `Frozen` first, so it could never hold one.
        """
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if _holds_a_dict_only_as_mapping(field.annotation):
                raise TypeError(
                    f"{cls.__name__}.{name} is declared as {_describe_annotation(field.annotation)}, but a Frozen "
                    "model freezes every dict into a Frozen first, so the field could never hold one: declare it "
                    "as Frozen (or a Frozen subclass with the keys as fields), or as a tuple of pairs"
                )
        cls.__refrozen_fields__ = tuple(
            name for name, field in cls.model_fields.items() if not _keeps_frozen(field.annotation)
        )
        _install_fast_private_init(cls)

    def frozen_fields(self, exclude_class: bool = False) -> Iterator[str]:
        """Yield the field names: declared fields first, then extra fields in insertion order."""
        for name in self.__dict__:
            if not (exclude_class and name == "class_"):
                yield name
        if self.__pydantic_extra__:
            yield from self.__pydantic_extra__

    def frozen_fields_and_values(self, exclude_class: bool = True) -> dict[str, Any]:
        """Return the fields as a dict (without ``class_`` by default), e.g. to pass them as keyword arguments."""
        values = dict(self.__dict__)
        if self.__pydantic_extra__:
            values.update(self.__pydantic_extra__)
        if exclude_class:
            del values["class_"]
        return values

    as_kwargs = frozen_fields_and_values

    @property
    def full_json(self) -> str:
        """The compact JSON dump, e.g. ``{"class_":"Frozen","x":1}``."""
        return self.model_dump_json()

    def serialize(self) -> dict[str, Any]:
        """Return the dict that `serialized` and `hash_key` are computed from (pydantic's dump by default)."""
        return self.model_dump()

    @property
    def serialized(self) -> str:
        """``serialize()`` as JSON with sorted keys (what `hash_key` hashes)."""
        return _SORTED_JSON.encode(self.serialize())

    @property
    def hash_key(self) -> str:
        """The lowercase hex sha256 of `serialized` (UTF-8), cut to 40 characters.

        It is 64 characters long when the active context has ``longer_hash_keys=True``. Computed once.
        """
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]  # (always set, see below)
        key = private["_hash_key_cache"]  # the dict behind the private attributes: faster than `self._...`
        if key is None:
            key = self._hash_of(self.serialized)
        return key  # type: ignore[no-any-return]

    def known_hash_key(self) -> str | None:
        """The `hash_key` if it was computed already, else None (computing nothing)."""
        return self.__pydantic_private__["_hash_key_cache"]  # type: ignore[index, no-any-return]

    def serialized_and_hash_key(self) -> tuple[str, str]:
        """`serialized` and `hash_key` from one serialization (e.g. to store a message under its key)."""
        serialized = self.serialized
        key: str | None = self.__pydantic_private__["_hash_key_cache"]  # type: ignore[index]
        return serialized, self._hash_of(serialized) if key is None else key

    def _hash_of(self, serialized: str) -> str:
        # (a lone surrogate, which UTF-8 cannot encode, e.g. from a broken stream, is hashed as its surrogatepass
        # bytes: the key exists, and it is the same after storing the message and loading it back)
        key = hashlib.sha256(serialized.encode("utf-8", "surrogatepass")).hexdigest()
        context = _active_context.get()
        if context is None or not context.longer_hash_keys:
            key = key[:40]
        self.__pydantic_private__["_hash_key_cache"] = key  # type: ignore[index]
        return key

    @property
    def as_string(self) -> str:
        """``str(obj)``: computed once by the `_as_string` hook."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        string = private["_string_cache"]
        if string is None:
            string = private["_string_cache"] = self._as_string()
        return string  # type: ignore[no-any-return]

    def _as_string(self) -> str:
        """The hook subclasses override to define ``str(obj)``; `full_json` by default."""
        return self.full_json

    def __str__(self) -> str:
        return self.as_string

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name != "class_" and value is not None:
                yield name, value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A new instance with ``update`` applied: validated and frozen like any other, with fresh caches.

        Unlike pydantic's `pydantic.BaseModel.model_copy` (which skips validation and copies private attributes),
        the copy's ``str()``, `hash_key` and (for a message) ``as_promise`` match its new content. ``deep`` is
        accepted for compatibility and changes nothing: frozen values are immutable, so sharing them is safe.

        Raises:
            pydantic.ValidationError: an updated value cannot be frozen, or ``class_`` is changed.
        """
        fields = self.frozen_fields_and_values()
        if update:
            fields.update(update)
        return type(self)(**fields)

    def __getstate__(self) -> dict[Any, Any]:
        """What pickling keeps: the fields, not the private attributes.

        Those are caches of this process (the string, the hash key, a message's promise and the contexts that
        persisted it), and a message's promise cannot be pickled. An unpickled instance starts with fresh caches,
        as a validated one does.
        """
        return {
            "__dict__": self.__dict__,
            "__pydantic_extra__": self.__pydantic_extra__,
            "__pydantic_fields_set__": self.__pydantic_fields_set__,
        }

    def __setstate__(self, state: dict[Any, Any]) -> None:
        object.__setattr__(self, "__pydantic_fields_set__", set(state.get("__pydantic_fields_set__", ())))
        object.__setattr__(self, "__pydantic_extra__", state.get("__pydantic_extra__") or {})
        object.__setattr__(self, "__dict__", dict(state.get("__dict__", {})))
        init_fresh_private_attributes(self)

    def __copy__(self) -> Self:
        """A new instance with the same fields and fresh caches (pydantic's would share the caches).

        A shared cache would give the copy the original's ``as_promise`` (resolving to the original) and mark it
        persisted wherever the original was.
        """
        copied = type(self).__new__(type(self))
        copied.__setstate__(self.__getstate__())
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """`__copy__`: the field values are immutable (frozen), so sharing them is as good as copying them."""
        return self.__copy__()

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return False
        assert isinstance(other, Frozen)
        return self.__dict__ == other.__dict__ and self.__pydantic_extra__ == other.__pydantic_extra__

    def __hash__(self) -> int:
        return hash(self.hash_key)


_IMMUTABLE_PRIVATE_DEFAULTS = (type(None), bool, int, float, str)
_PRIVATE_SLOT = BaseModel.__dict__.get("__pydantic_private__")
_get_private_slot: Callable[[BaseModel], Any] = (
    _PRIVATE_SLOT.__get__  # `model.__pydantic_private__`, raising `AttributeError` quickly while it is unset
    if _PRIVATE_SLOT is not None
    else lambda model: getattr(model, "__pydantic_private__", None)  # pragma: no cover - no such slot
)


def _install_fast_private_init(cls: type[Frozen]) -> None:
    """Initialize the private attributes (the caches) of ``cls`` instances with one dict copy.

    pydantic does it in Python, per instance and per class level, deep-copying every default: that was about
    three quarters of the cost of ``Message(text=...)``. When all defaults are immutable (our caches are None or
    False) a copy of a prepared dict is equivalent. A user-defined ``model_post_init`` (which pydantic wraps) still
    runs after it; a private attribute with a default factory or a mutable default keeps pydantic's way.
    """
    refrozen = cls.__refrozen_fields__
    defaults: dict[str, Any] = {}
    for name, private in cls.__private_attributes__.items():
        default: Any = private.default
        if private.default_factory is not None or type(default) not in _IMMUTABLE_PRIVATE_DEFAULTS:
            if refrozen:  # pydantic's own initialization, after the freezing
                _install_refreezing(cls, refrozen)
            return
        defaults[name] = default
    original = getattr(cls.__dict__.get("model_post_init"), "__wrapped__", None)  # pydantic's wrapper keeps it here
    # A parent's fast initializer is replaced by this one, but what it ran after is kept.
    original = getattr(original, "_miniagents_then", original)

    get_private = _get_private_slot

    def model_post_init(self: Frozen, context: Any, /) -> None:
        if refrozen:
            _refreeze(self, refrozen)
        try:
            private = get_private(self)  # not `getattr(self, ...)`: an unset slot would go through pydantic's
        except AttributeError:  # Python `__getattr__`, which costs more than all the rest here
            private = None
        if private is None:
            object.__setattr__(self, "__pydantic_private__", defaults.copy())
        if original is not None:
            original(self, context)

    def init_fresh(self: Frozen) -> None:  # (see `init_fresh_private_attributes`)
        object.__setattr__(self, "__pydantic_private__", defaults.copy())
        if original is not None:
            original(self, None)

    model_post_init._miniagents_then = original  # type: ignore[attr-defined]
    model_post_init._miniagents_fresh = init_fresh  # type: ignore[attr-defined]
    cls.model_post_init = model_post_init  # type: ignore[method-assign, assignment]


def _refreeze(model: Frozen, names: tuple[str, ...]) -> None:
    """Freeze again the values of the declared fields ``names`` (see `Frozen.__refrozen_fields__`).

    Raises:
        ValueError: a value that cannot be frozen (pydantic reports it as a `pydantic.ValidationError`).
    """
    values = model.__dict__
    for name in names:
        values[name] = _freeze(values[name], name)  # (a value that is frozen already comes back as it is)


def _install_refreezing(cls: type[Frozen], names: tuple[str, ...]) -> None:
    then = cls.model_post_init

    def model_post_init(self: Frozen, context: Any, /) -> None:
        _refreeze(self, names)
        then(self, context)

    cls.model_post_init = model_post_init  # type: ignore[method-assign, assignment]


def init_fresh_private_attributes(model: Frozen) -> None:
    """Initialize the private attributes (caches) of a model made without validation, as validation would.

    For ``cls.__new__(cls)`` with its fields set by hand (known to be valid): it runs what ``model_post_init``
    runs, without first asking whether the attributes are set (an ``AttributeError`` raised and caught, which
    costs more than the rest).
    """
    cls = type(model)
    try:
        init_fresh = _fresh_inits[cls]
    except KeyError:  # (the classes built without validation are few: the text-only message, the nodes)
        init_fresh = _fresh_inits[cls] = getattr(cls.model_post_init, "_miniagents_fresh", None)
    if init_fresh is None:
        model.model_post_init(None)
    else:
        init_fresh(model)


_fresh_inits: dict[type, Callable[[Any], None] | None] = {}  # per class: its fast init, looked up once


_install_fast_private_init(Frozen)
