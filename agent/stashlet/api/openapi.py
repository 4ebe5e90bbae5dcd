"""Structural OpenAPI v3 schemas for CRDs, built by walking the pydantic models' fields and annotations.

The mapping is Kubernetes' (not JSON Schema's): every node has a ``type``; optional fields are simply
absent from ``required``; free-form embedded Kubernetes objects preserve unknown fields while everything
else is closed, so the API server rejects a misspelt field instead of dropping it.
"""

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from stashlet.api.common import (
    CelRule,
    IntOrStringMarker,
    KubeModel,
    SchemaDefault,
    SchemaFormat,
    SchemaLimits,
    SchemaProperties,
)

Schema = dict[str, Any]


class SchemaError(TypeError):
    """A model field has a type the generator cannot express as a structural schema."""


def model_schema(model: type[BaseModel]) -> Schema:
    """The object schema of a model: its properties, required fields and validation rules."""
    properties: Schema = {}
    required: list[str] = []
    for name, field in model.model_fields.items():
        wire_name = field.alias or name
        properties[wire_name] = field_schema(field)
        if field.is_required():
            required.append(wire_name)
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = sorted(required)
    rules = getattr(model, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [_rule(rule) for rule in rules]
    return schema


def field_schema(field: FieldInfo) -> Schema:
    """The schema of one model field, with its description."""
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    schema = type_schema(annotation)
    if field.description:
        schema = {"description": field.description, **schema}
    return schema


def type_schema(annotation: Any) -> Schema:
    """The schema of a Python type annotation."""
    annotation, markers = _unwrap_annotated(annotation)
    schema = _bare_type_schema(annotation, markers)
    for marker in markers:
        if isinstance(marker, SchemaFormat):
            schema["format"] = marker.format
        elif isinstance(marker, SchemaDefault):
            schema["default"] = marker.value
        elif isinstance(marker, SchemaLimits):
            if marker.max_length is not None:
                schema["maxLength"] = marker.max_length
            if marker.minimum is not None:
                schema["minimum"] = marker.minimum
            if marker.max_items is not None:
                schema["maxItems"] = marker.max_items
        elif isinstance(marker, SchemaProperties):
            schema["properties"] = marker.properties
        elif isinstance(marker, CelRule):
            schema.setdefault("x-kubernetes-validations", []).append(_rule(marker))
    return schema


def _rule(rule: CelRule) -> Schema:
    schema: Schema = {"rule": rule.rule, "message": rule.message}
    if rule.field_path is not None:
        schema["fieldPath"] = rule.field_path
    return schema


def _unwrap_annotated(annotation: Any) -> tuple[Any, list[Any]]:
    """Split ``Annotated[T, m1, m2]`` into ``T`` and its metadata, dropping ``None`` from unions."""
    markers: list[Any] = []
    while True:
        if typing.get_origin(annotation) is Annotated:
            base, *metadata = typing.get_args(annotation)
            markers.extend(metadata)
            annotation = base
            continue
        if _is_union(annotation):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, markers


def _is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is Union or origin is types.UnionType


def _bare_type_schema(annotation: Any, markers: list[Any]) -> Schema:
    if any(isinstance(marker, IntOrStringMarker) for marker in markers):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    if _is_union(annotation):
        raise SchemaError(f"unions other than int-or-string are not structural: {annotation!r}")
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return _enum_schema(list(typing.get_args(annotation)))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": type_schema(item)}
    if origin is dict:
        key, value = typing.get_args(annotation)
        if key is not str:
            raise SchemaError(f"object keys must be strings: {annotation!r}")
        if value is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": type_schema(value)}
    if isinstance(annotation, type):
        return _class_schema(annotation)
    raise SchemaError(f"no schema for {annotation!r}")


def _class_schema(cls: type) -> Schema:
    if issubclass(cls, Enum):
        return _enum_schema([member.value for member in cls])
    if issubclass(cls, KubeModel):
        return model_schema(cls)
    if cls is bool:
        return {"type": "boolean"}
    if cls is int:
        return {"type": "integer"}
    if cls is float:
        return {"type": "number"}
    if cls is str:
        return {"type": "string"}
    if cls is datetime:
        return {"type": "string", "format": "date-time"}
    raise SchemaError(f"no schema for {cls!r}")


def _enum_schema(values: list[Any]) -> Schema:
    kinds = {type(value) for value in values}
    if kinds == {str}:
        return {"type": "string", "enum": values}
    if kinds == {int}:
        return {"type": "integer", "enum": values}
    raise SchemaError(f"enum values must all be strings or all integers: {values!r}")
