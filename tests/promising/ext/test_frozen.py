from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from typing import Any, Optional

import pytest
from pydantic import PrivateAttr, ValidationError

from miniagents import Message, PromisingContext
from miniagents.promising.ext.frozen import Frozen


class SampleModel(Frozen):
    some_req_field: str
    some_opt_field: int = 2
    sub_model: Optional[SampleModel] = None  # noqa: UP045 - the SPEC's exact model


def test_hash_vector_of_sample_model() -> None:
    model = SampleModel(some_req_field="test")
    assert (
        model.serialized
        == '{"class_": "SampleModel", "some_opt_field": 2, "some_req_field": "test", "sub_model": null}'
    )
    assert model.hash_key == "2f9753c92f0452bacafaa606b6076d2bf266e095"


def test_hash_input_of_nested_frozen() -> None:
    frozen = Frozen(content="test", final_sender_alias="user", custom_field={"role": "user"})
    expected = (
        '{"class_": "Frozen", "content": "test", "custom_field": {"class_": "Frozen", "role": "user"}, '
        '"final_sender_alias": "user"}'
    )
    assert frozen.serialized == expected
    assert frozen.hash_key == hashlib.sha256(expected.encode()).hexdigest()[:40]


async def test_longer_hash_keys_in_context() -> None:
    async with PromisingContext(longer_hash_keys=True):
        assert len(SampleModel(some_req_field="x").hash_key) == 64
    assert len(SampleModel(some_req_field="x").hash_key) == 40  # no context: 40 (not an error)


def test_assignment_raises() -> None:
    model = SampleModel(some_req_field="test")
    with pytest.raises(ValidationError):
        model.some_req_field = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        model.extra = 1  # type: ignore[attr-defined]


def test_hash_key_is_computed_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    model = SampleModel(some_req_field="test")
    calls = []
    original = SampleModel.serialize

    def counting(self: Frozen) -> dict[str, object]:
        calls.append(self)
        return original(self)

    monkeypatch.setattr(SampleModel, "serialize", counting)
    assert model.hash_key == model.hash_key
    assert len(calls) == 1


def test_field_order_does_not_change_the_hash() -> None:
    assert Frozen(a=1, b=2).hash_key == Frozen(b=2, a=1).hash_key


def test_nested_objects_are_not_copied() -> None:
    inner = Frozen(x=1)
    message = Message(text="m")
    outer = Frozen(inner=inner, items=[message, {"k": inner}])
    assert outer.inner is inner  # type: ignore[attr-defined]
    assert outer.items[0] is message  # type: ignore[attr-defined]
    assert outer.items[1].k is inner  # type: ignore[attr-defined]


def test_private_attributes_are_settable_and_do_not_affect_hash_or_equality() -> None:
    first = Message(text="same")
    second = Message(text="same")
    str(first)  # fills the string cache of one of them only
    key = first.hash_key
    first._persisted = True
    assert first == second
    assert hash(first) == hash(second)
    assert first.hash_key == key == second.hash_key
    assert "_persisted" not in first.model_dump() and "persisted" not in first.full_json


def test_values_are_frozen_recursively() -> None:
    frozen = Frozen(items=[1, [2, {"a": [3]}]], mapping={"b": (4,)})
    assert frozen.items == (1, (2, Frozen(a=(3,))))  # type: ignore[attr-defined]
    assert frozen.mapping == Frozen(b=(4,))  # type: ignore[attr-defined]
    assert frozen.mapping.class_ == "Frozen"  # type: ignore[attr-defined]
    assert SampleModel(some_req_field="x", d={"y": 1}).d.class_ == "Frozen"  # type: ignore[attr-defined]


class Table(Message):
    cells: list[Message] = []  # noqa: RUF012 - what users write (a default is frozen too)
    grid: list[list[int]] = []  # noqa: RUF012
    when: Optional[datetime.datetime] = None  # noqa: UP045 - a type that parses a string into an unfrozen value
    label: Optional[str] = None  # noqa: UP045


class LabelledTable(Table):
    _cache: list[int] = PrivateAttr(default_factory=list)  # (pydantic's own private initialization)


@pytest.mark.parametrize("cls", [Table, LabelledTable])
def test_declared_list_fields_are_frozen_too(cls: type[Table]) -> None:
    table = cls(text="t", cells=[Message(text="c")], grid=[[1, 2], [3]])
    assert table.cells == (Message(text="c"),) and table.grid == ((1, 2), (3,))
    assert table == cls(text="t", cells=(Message(text="c"),), grid=((1, 2), (3,)))
    assert table.hash_key == cls(text="t", cells=(Message(text="c"),), grid=((1, 2), (3,))).hash_key
    assert cls.__refrozen_fields__ == ("cells", "grid", "when")  # (text, label: kept frozen by their types)
    assert Message.__refrozen_fields__ == ()
    assert cls(text="t").cells == ()


def test_a_declared_type_that_makes_an_unfrozen_value_is_rejected_with_key_and_type() -> None:
    with pytest.raises(ValidationError, match=r"'when'.*datetime"):
        Table(text="t", when="2026-12-03T10:00:00")


@pytest.mark.parametrize(
    "annotation",
    ["dict", "dict[str, int]", "Optional[dict[str, int]]", "Mapping[str, Any]", "tuple[dict[str, int], ...]"],
)
def test_a_field_declared_as_a_dict_is_refused_when_the_class_is_made(annotation: str) -> None:
    with pytest.raises(TypeError, match=r"Settings.options is declared as .*dict.*Frozen.*could never hold one"):
        exec(
            f"class Settings(Message):\n    options: {annotation} = None", {**globals(), "Mapping": Mapping, "Any": Any}
        )


def test_a_field_that_also_takes_a_frozen_holds_a_frozen_dict() -> None:
    class Settings(Message):
        options: Optional[Frozen] = None  # noqa: UP045
        anything: Any = None

    settings = Settings(options={"depth": 2}, anything={"x": [1]})
    assert settings.options == Frozen(depth=2) and settings.anything == Frozen(x=(1,))


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", object(), {1: "a non-string key"}])
def test_unfreezable_values_are_rejected_with_key_and_type(bad: object) -> None:
    with pytest.raises(ValidationError, match=rf"'bad_key'.*{type(bad).__name__}"):
        Frozen(bad_key=bad)


def test_class_field() -> None:
    assert SampleModel(some_req_field="x").class_ == "SampleModel"
    assert SampleModel(some_req_field="x", class_="SampleModel").class_ == "SampleModel"
    with pytest.raises(ValidationError, match="class_"):
        SampleModel(some_req_field="x", class_="Other")


def test_equality_is_by_class_and_values_extras_included() -> None:
    assert Message(text="x", a=[1, {"b": 2}]) == Message(text="x", a=(1, Frozen(b=2)))
    assert Message(text="x", a=1) != Message(text="x", a=2)

    class UserLike(Message):
        role: str = "user"

    assert Message(text="x") != UserLike(text="x")


def test_string_forms_and_iteration_helpers() -> None:
    frozen = Frozen(x=1, y="z")
    assert frozen.full_json == '{"class_":"Frozen","x":1,"y":"z"}'
    assert str(frozen) == frozen.full_json == frozen.as_string
    assert list(frozen.frozen_fields()) == ["class_", "x", "y"]
    assert list(frozen.frozen_fields(exclude_class=True)) == ["x", "y"]
    assert frozen.frozen_fields_and_values() == {"x": 1, "y": "z"} == frozen.as_kwargs()
    assert frozen.serialize() == {"class_": "Frozen", "x": 1, "y": "z"}


def test_repr_omits_class_and_none_fields() -> None:
    assert repr(Message(text="hi")) == "Message(text='hi')"


def test_private_attributes_of_subclasses_are_initialized_per_instance() -> None:
    """The fast private-attribute initialization keeps user private attributes and `model_post_init` hooks."""
    from pydantic import PrivateAttr

    calls = []

    class WithFactory(Message):
        _items: list[int] = PrivateAttr(default_factory=list)

    class WithHook(Message):
        _count: int = PrivateAttr(default=3)

        def model_post_init(self, context: object, /) -> None:
            calls.append((type(self).__name__, self._count, self._persisted))

    class Child(WithHook):
        extra: int = 1

    first, second = WithFactory(text="a"), WithFactory(text="a")
    first._items.append(1)
    assert second._items == [] and first == second
    assert first._hash_key_cache is None and first._persisted is False
    WithHook(text="x")
    Child(text="y")
    assert calls == [("WithHook", 3, False), ("Child", 3, False)]
    message = Message(text="z")
    message._persisted = True
    assert Message(text="z")._persisted is False
