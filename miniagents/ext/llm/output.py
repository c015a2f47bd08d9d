"""Structured output: ``output_type=`` for the LLM agents, and its partial values while the answer streams.

Give an LLM agent ``output_type=SomeModel`` (through ``fork``: types are not freezable) and the model is asked
for JSON of that type (OpenAI and the local model through a JSON-schema ``response_format``, grammar-constrained
on the local model; Anthropic through a forced tool). The final message's tokens are that JSON as it streams,
and once complete the message has an ``output`` property holding the value validated by pydantic. Any type
pydantic validates works (models, dataclasses, ``list[int]``, ``Literal[...]`` …); a type whose schema is not
an object is wrapped as ``{"response": ...}`` on the wire and unwrapped again.

The ``response_format`` asks for OpenAI's strict mode (``"strict": true``: the answer is guaranteed to follow the
schema) when the schema has a strict form that accepts the same values, and goes out as it is otherwise (see
`OutputSpec.strict_schema`): a model whose fields are all required is strict, one with ``score: int = 0`` is not.

`apartial_outputs` yields the values validated from the JSON so far while the message streams (pydantic's
partial JSON validation: an unfinished string or list is cut at the end, an unfinished field is left out).

Example:
    >>> from pydantic import BaseModel
    >>> from miniagents import MiniAgents
    >>> from miniagents.ext.llm import UserMessage
    >>> from miniagents.ext.llm.output import apartial_outputs
    >>> from miniagents.ext.llm.testing import scripted_llm_agent
    >>> class Verdict(BaseModel):
    ...     verdict: str = ""
    ...     score: int = 0
    >>> llm = scripted_llm_agent(['{"verdict": "good draft", "score": 8}']).fork(output_type=Verdict)
    >>> async def main() -> None:
    ...     (message_promise,) = [mp async for mp in llm.inquire(UserMessage("Judge it"))]
    ...     async for partial in apartial_outputs(message_promise):
    ...         print(partial)
    ...     print((await message_promise).output)
    >>> MiniAgents().run(main())
    verdict='' score=0
    verdict='good ' score=0
    verdict='good draft' score=0
    verdict='good draft' score=8
    verdict='good draft' score=8
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pydantic

from miniagents.ext.llm.errors import LLMOutputError
from miniagents.ext.llm.llm_common import AssistantMessage
from miniagents.messages import Message, MessagePromise

__all__ = ["OutputSpec", "StructuredOutputMessage", "apartial_outputs"]

_WRAPPER_FIELD = "response"

_message_classes: dict[tuple[type[Message], OutputSpec], type[Message]] = {}


@dataclass(frozen=True, eq=False)
class OutputSpec:
    """What an LLM agent needs to ask for, stream and validate one ``output_type``.

    Attributes:
        output_type: the type as given.
        name: a name for the schema (``[a-zA-Z0-9_-]``), e.g. the model's class name.
        schema: the JSON schema sent to the provider (an object schema; see ``wrapped``).
        wrapped: whether the type's own schema is not an object and is wrapped as ``{"response": ...}``.
        adapter: the `pydantic.TypeAdapter` that validates the JSON (of the wrapper when ``wrapped``).
        strict_schema: ``schema`` in the form OpenAI's strict structured outputs accept, or None when it has no
            such form that accepts the same values (see `_strict_json_schema`).
    """

    output_type: Any
    name: str
    schema: dict[str, Any]
    wrapped: bool
    adapter: pydantic.TypeAdapter[Any]
    strict_schema: dict[str, Any] | None

    @classmethod
    def of(cls, output_type: Any) -> OutputSpec:
        """Build the spec of a type, once per type (cached).

        Raises:
            TypeError: pydantic cannot make a JSON schema of the type.
        """
        cached = _spec_cache.get(output_type)
        if cached is not None:
            return cached
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(output_type)
            schema = adapter.json_schema()
        except (pydantic.PydanticSchemaGenerationError, pydantic.errors.PydanticInvalidForJsonSchema) as error:
            raise TypeError(f"output_type={output_type!r} has no JSON schema: {error}") from error
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", getattr(output_type, "__name__", None) or "output")[:64]
        wrapped = schema.get("type") != "object"
        if wrapped:
            fields: dict[str, Any] = {_WRAPPER_FIELD: (output_type, ...)}
            wrapper = pydantic.create_model(f"{name}_response", **fields)
            adapter = pydantic.TypeAdapter(wrapper)
            schema = adapter.json_schema()
        spec = cls(
            output_type=output_type,
            name=name,
            schema=schema,
            wrapped=wrapped,
            adapter=adapter,
            strict_schema=_strict_json_schema(schema),
        )
        _spec_cache[output_type] = spec
        return spec

    def validate_json(self, text: str) -> Any:
        """Validate the complete JSON text; return the value (unwrapped).

        Raises:
            pydantic.ValidationError: it is not valid JSON of the type.
        """
        value = self.adapter.validate_json(text)
        return getattr(value, _WRAPPER_FIELD) if self.wrapped else value

    def validate_partial_json(self, text: str) -> Any:
        """Validate the JSON so far, letting unfinished values at its end be cut off.

        Raises:
            pydantic.ValidationError: the text so far cannot be a beginning of a valid value (e.g. a required
                field is still missing).
        """
        value = self.adapter.validate_json(text, experimental_allow_partial="trailing-strings")
        return getattr(value, _WRAPPER_FIELD) if self.wrapped else value

    def checked(self, text: str, provider: str, model: str | None) -> Any:
        """`validate_json`, raising `LLMOutputError` with the raw text instead of a `pydantic.ValidationError`."""
        try:
            return self.validate_json(text)
        except pydantic.ValidationError as error:
            raise LLMOutputError(
                f"{provider} model {model!r} answered with no valid {self.name} ({error.error_count()} errors: "
                f"{error.errors()[0]['msg']}): {text[:200]!r}",
                provider=provider,
                model=model,
                raw_text=text,
            ) from error


_spec_cache: dict[Any, OutputSpec] = {}

_STRICT_KEYWORDS = frozenset(
    {
        # any node
        "type", "title", "description", "enum", "const", "anyOf", "$ref",
        # objects, arrays, strings, numbers
        "properties", "required", "additionalProperties",
        "items", "minItems", "maxItems",
        "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    }
)  # fmt: skip
"""The JSON Schema keywords OpenAI's strict mode takes (``$defs`` too, at the root); any other one is refused."""

_ANNOTATION_KEYWORDS = frozenset({"title", "description"})
"""The keywords that do not constrain values: beside a ``$ref``, they replace the definition's when inlined."""
_STRICT_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_STRICT_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
_DEFINITION_PREFIX = "#/$defs/"


class _NotStrict(Exception):
    """The schema has no strict form that accepts the same values."""


def _strict_json_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema in the form OpenAI's strict structured outputs accept, or None when that would change its meaning.

    Strict mode wants every object to list all its properties in ``required`` and to have
    ``additionalProperties: false``, and it knows only a subset of JSON Schema. The strict form is a copy with:

    - ``additionalProperties: false`` on every object (pydantic ignores unknown fields anyway);
    - an optional property whose default is ``null`` and whose schema accepts ``null`` (``x: int | None = None``)
      made required, its ``default`` dropped: the model answers ``null`` where it would have left it out;
    - a ``$ref`` with other keywords beside it (a field's ``description``) replaced by the definition it points to,
      unless that definition refers back to itself that way or has another value for one of those keywords that
      is not ``title`` or ``description`` (both would apply: ``maximum`` 10 in the definition and 100 beside).

    None is returned (the schema goes out as it is, not strict) for a root that is not an object, any other
    optional property (e.g. ``score: int = 0``, which strict mode would force the model to fill in), objects with
    ``additionalProperties`` other than false or without ``properties`` (``dict[str, int]``), a node without
    ``type``, ``anyOf`` or ``$ref`` (``Any``), a keyword strict mode does not take (``minLength``, ``oneOf``,
    ``prefixItems``, ``uniqueItems``, ``default`` …) or a ``format`` it does not know (``uri``).

    Args:
        schema: a JSON schema as pydantic makes it (definitions in ``$defs`` at the root); it is not changed.

    Returns:
        The strict form (a new dict), or None.

    Example:
        >>> _strict_json_schema({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
        {'type': 'object', 'properties': {'n': {'type': 'integer'}}, 'required': ['n'], 'additionalProperties': False}
        >>> print(_strict_json_schema({"type": "object", "properties": {"n": {"type": "integer", "default": 0}}}))
        None
    """
    if schema.get("type") != "object":
        return None
    definitions = schema.get("$defs", {})
    try:
        if not isinstance(definitions, dict):
            raise _NotStrict
        root = _strict_node({key: value for key, value in schema.items() if key != "$defs"}, definitions, frozenset())
        if definitions:
            root["$defs"] = {
                name: _strict_node(definition, definitions, frozenset()) for name, definition in definitions.items()
            }
    except _NotStrict:
        return None
    return root


def _strict_node(node: Any, definitions: dict[str, Any], inlined: frozenset[str]) -> dict[str, Any]:
    """The strict form of one schema node (``inlined``: the definitions being inlined around it).

    Raises:
        _NotStrict: the node has no strict form that accepts the same values.
    """
    if not isinstance(node, dict) or not node.keys() <= _STRICT_KEYWORDS:
        raise _NotStrict
    reference = node.get("$ref")
    if reference is not None:
        if not (isinstance(reference, str) and reference.startswith(_DEFINITION_PREFIX)):
            raise _NotStrict
        name = reference.removeprefix(_DEFINITION_PREFIX)
        if name not in definitions:
            raise _NotStrict
        if len(node) == 1:
            return dict(node)  # (the definition itself is made strict among the root's definitions)
        if name in inlined:
            raise _NotStrict  # a definition that contains itself cannot be inlined
        definition = definitions[name]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if not isinstance(definition, dict) or any(
            key not in _ANNOTATION_KEYWORDS and key in definition and definition[key] != value
            for key, value in siblings.items()
        ):
            raise _NotStrict  # (both apply beside a $ref, e.g. two maximums: one cannot replace the other)
        return _strict_node({**definition, **siblings}, definitions, inlined | {name})
    types = node.get("type")
    type_names = [types] if isinstance(types, str) else types
    if types is None and "anyOf" not in node:
        raise _NotStrict
    if types is not None and not (isinstance(type_names, list) and set(type_names) <= _STRICT_TYPES):
        raise _NotStrict
    if "format" in node and node["format"] not in _STRICT_FORMATS:
        raise _NotStrict
    strict = dict(node)
    if "anyOf" in node:
        if not isinstance(node["anyOf"], list):
            raise _NotStrict
        strict["anyOf"] = [_strict_node(option, definitions, inlined) for option in node["anyOf"]]
    if "items" in node:
        strict["items"] = _strict_node(node["items"], definitions, inlined)
    if "properties" in node or "object" in (type_names or ()):
        properties = node.get("properties")
        if not isinstance(properties, dict) or node.get("additionalProperties", False) is not False:
            raise _NotStrict
        required = node.get("required", [])
        strict["properties"] = {
            name: _strict_node(value if name in required else _without_null_default(value), definitions, inlined)
            for name, value in properties.items()
        }
        strict["required"] = list(properties)
        strict["additionalProperties"] = False
    return strict


def _without_null_default(property_schema: Any) -> dict[str, Any]:
    """An optional property made required: only one whose default is null and that accepts null keeps its meaning.

    Raises:
        _NotStrict: the property has another default (or none), or does not accept null.
    """
    if not isinstance(property_schema, dict) or "default" not in property_schema:
        raise _NotStrict
    if property_schema["default"] is not None or not _accepts_null(property_schema):
        raise _NotStrict
    return {key: value for key, value in property_schema.items() if key != "default"}


def _accepts_null(node: dict[str, Any]) -> bool:
    types = node.get("type")
    if types == "null" or (isinstance(types, list) and "null" in types):
        return True
    options = node.get("anyOf")
    return isinstance(options, list) and any(isinstance(o, dict) and o.get("type") == "null" for o in options)


class StructuredOutputMessage(AssistantMessage):
    """The final message of an LLM agent with an ``output_type``: its text is the JSON the model produced.

    The LLM agents reply with a subclass of their own message class and this one (e.g. of `OpenAIMessage`), so
    ``isinstance(message, OpenAIMessage)`` still holds; its class name (``class_``) is the provider's.
    """

    output_spec: ClassVar[OutputSpec | None] = None

    @property
    def output(self) -> Any:
        """The validated value (validated again on each access: keep it in a variable).

        Raises:
            pydantic.ValidationError: the text is not valid (the agent already failed the message then).
        """
        spec = type(self).output_spec
        if spec is None:
            raise TypeError(f"{type(self).__name__} has no output type")
        return spec.validate_json(self.text or "")


def _output_message_class(base: type[Message], spec: OutputSpec) -> type[Message]:
    """The subclass of ``base`` and `StructuredOutputMessage` for one output type (made once, then cached)."""
    key = (base, spec)
    message_class = _message_classes.get(key)
    if message_class is None:
        message_class = type(base.__name__, (base, StructuredOutputMessage), {"output_spec": spec})
        message_class.__qualname__ = base.__qualname__
        message_class.__module__ = base.__module__
        _message_classes[key] = message_class
    return message_class


async def apartial_outputs(message_promise: MessagePromise, output_type: Any = None) -> AsyncIterator[Any]:
    """Yield the values validated from the JSON tokens of a message so far, as they stream.

    Args:
        message_promise: the final message of an LLM agent with an ``output_type`` (or any message whose
            tokens are JSON, with ``output_type`` given).
        output_type: the type to validate against; by default the ``output_type`` of the agent that replied
            with the message.

    Yields:
        A value after each token that makes the JSON so far a valid beginning of the type and changes the value
        (tokens that cannot be validated yet, e.g. before a required field, yield nothing). The last value is
        the complete one.

    Raises:
        TypeError: no ``output_type`` was given and the message comes from no agent with one.
        LLMError: what the message raises while streaming (e.g. `LLMOutputError` for an invalid final answer).
    """
    if output_type is not None:
        spec: OutputSpec | None = OutputSpec.of(output_type)
    else:
        spec = getattr(message_promise.message_class, "output_spec", None)
    if spec is None:
        raise TypeError("this message comes from no LLM agent with an output_type: pass output_type= explicitly")
    text = ""
    last: Any = _NOTHING
    async for token in message_promise:
        text += token
        try:
            value = spec.validate_partial_json(text)
        except (pydantic.ValidationError, ValueError):
            continue
        if last is _NOTHING or value != last:
            last = value
            yield value


_NOTHING: Any = object()
