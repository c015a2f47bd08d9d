"""Which ``output_type`` schemas go out in OpenAI's strict mode, and the strict form they take."""

from __future__ import annotations

import copy
import datetime
import enum
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic
import pytest
from typing_extensions import TypeAliasType

from miniagents.ext.llm.output import OutputSpec


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(pydantic.BaseModel):
    x: int
    y: int


class AllRequired(pydantic.BaseModel):
    name: str
    size: float = pydantic.Field(ge=0)
    when: datetime.date
    color: Color
    kind: Literal["a", "b"]
    points: list[Point]
    maybe: int | None


class NoneDefaults(pydantic.BaseModel):
    name: str
    note: str | None = None
    point: Point | None = None


class Defaulted(pydantic.BaseModel):
    name: str
    count: int = 0


class FactoryDefault(pydantic.BaseModel):
    tags: list[str] = pydantic.Field(default_factory=list)


class NoneDefaultNotNullable(pydantic.BaseModel):
    name: str = None  # type: ignore[assignment]  # (a None default on a type without None)


class Constrained(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)


class ExtraAllowed(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    name: str


class ExtraForbidden(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str


class Link(pydantic.BaseModel):
    url: pydantic.AnyUrl


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]


class Pet(pydantic.BaseModel):
    pet: Cat | Dog = pydantic.Field(discriminator="kind")


class Tree(pydantic.BaseModel):
    value: int
    children: list[Tree]


class Chain(pydantic.BaseModel):
    value: int
    next: Chain | None = pydantic.Field(description="the next link")


class Described(pydantic.BaseModel):
    point: Point = pydantic.Field(description="where it is")


@dataclass
class DataclassWithDefault:
    name: str
    count: int = 1


@pytest.mark.parametrize(
    "output_type",
    [AllRequired, NoneDefaults, ExtraForbidden, Tree, Chain, Described, list[int], int, uuid.UUID, str | None],
    ids=lambda t: getattr(t, "__name__", str(t)),
)
def test_schemas_with_a_strict_form_of_the_same_meaning_are_strict(output_type: Any) -> None:
    spec = OutputSpec.of(output_type)
    assert spec.strict_schema is not None
    for node in _objects(spec.strict_schema):
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
        assert not any("default" in value for value in node["properties"].values())


@pytest.mark.parametrize(
    ("output_type", "why"),
    [
        (Defaulted, "a default other than null: strict mode would force the model to fill the field in"),
        (FactoryDefault, "a default other than null"),
        (NoneDefaultNotNullable, "a null default the type does not accept"),
        (DataclassWithDefault, "a default other than null"),
        (Constrained, "minLength: not a keyword of strict mode"),
        (ExtraAllowed, "additionalProperties: true"),
        (dict[str, int], "an object of any keys"),
        (Link, "the uri format is not one strict mode knows"),
        (Pet, "oneOf (a discriminated union)"),
        (tuple[int, str], "prefixItems"),
        (set[int], "uniqueItems"),
        (Any, "no type at all"),
        (Literal[1, "a"], "an enum without a type"),
    ],
    ids=lambda value: getattr(value, "__name__", None) or str(value)[:40],
)
def test_schemas_without_a_strict_form_of_the_same_meaning_are_not_strict(output_type: Any, why: str) -> None:
    assert OutputSpec.of(output_type).strict_schema is None, why


def test_the_strict_form_of_null_defaults_and_described_references() -> None:
    spec = OutputSpec.of(NoneDefaults)
    original = copy.deepcopy(spec.schema)
    assert spec.strict_schema == {
        "$defs": {
            "Point": {
                "properties": {"x": {"title": "X", "type": "integer"}, "y": {"title": "Y", "type": "integer"}},
                "required": ["x", "y"],
                "title": "Point",
                "type": "object",
                "additionalProperties": False,
            }
        },
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Note"},
            "point": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]},
        },
        "required": ["name", "note", "point"],
        "title": "NoneDefaults",
        "type": "object",
        "additionalProperties": False,
    }
    assert spec.schema == original  # the schema itself is left as it was
    assert spec.validate_json('{"name": "n", "note": null, "point": null}') == NoneDefaults(name="n")

    # a $ref with a description beside it is replaced by the definition, the description kept
    described = OutputSpec.of(Described).strict_schema
    assert described is not None
    assert described["properties"]["point"] == {
        "properties": {"x": {"title": "X", "type": "integer"}, "y": {"title": "Y", "type": "integer"}},
        "required": ["x", "y"],
        "title": "Point",
        "type": "object",
        "additionalProperties": False,
        "description": "where it is",
    }


def test_a_definition_that_contains_itself_beside_other_keywords_is_not_inlined() -> None:
    class Loop(pydantic.BaseModel):
        value: int
        next: Loop = pydantic.Field(description="the next one")

    assert OutputSpec.of(Loop).strict_schema is None  # inlining it would never end


Small = TypeAliasType("Small", Annotated[int, pydantic.Field(le=10)])


class ReferenceNarrowedBeside(pydantic.BaseModel):
    small: Small = pydantic.Field(json_schema_extra={"maximum": 100})
    color: Color = pydantic.Field(json_schema_extra={"enum": ["red", "blue", "green"]})


def test_keywords_beside_a_reference_do_not_replace_the_definitions_own() -> None:
    # beside a $ref both apply (here maximum 10 and maximum 100): the inlined form must not keep only the latter
    spec = OutputSpec.of(ReferenceNarrowedBeside)
    assert spec.schema["properties"]["small"] == {"$ref": "#/$defs/Small", "maximum": 100}
    with pytest.raises(pydantic.ValidationError):
        spec.validate_json('{"small": 50, "color": "green"}')
    assert spec.strict_schema is None


class ReferenceAnnotatedBeside(pydantic.BaseModel):
    small: Small = pydantic.Field(title="Tiny", description="at most ten", json_schema_extra={"maximum": 10})


def test_annotations_and_repeated_keywords_beside_a_reference_are_inlined() -> None:
    strict = OutputSpec.of(ReferenceAnnotatedBeside).strict_schema
    assert strict is not None
    assert strict["properties"]["small"] == {
        "maximum": 10,
        "type": "integer",
        "title": "Tiny",
        "description": "at most ten",
    }


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema (one with ``properties``) in a schema, the root and the definitions included."""
    found = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append(schema)
            values = list(schema["properties"].values())
        else:
            values = []
        values += [value for key, value in schema.items() if key != "properties"]
        for value in values:
            found.extend(_objects(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_objects(value))
    return found
