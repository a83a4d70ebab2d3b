"""A JSON Schema (draft 2020-12) of job spec files, generated from the `trainserve.v1.JobSpec`
descriptors, so it never disagrees with the proto: editors that read JSON Schema (the YAML
language server of VS Code, JetBrains IDEs, Neovim) complete field names and flag a wrong
type or an unknown field as it is typed. `trainserve spec-schema` prints it.

The schema takes what `core.spec.parse_spec` takes: .proto field names, YAML's empty value
for a section (`lenet5:`), at most one field of a oneof (one architecture)."""
from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from trainserve.core.pb import spec_pb2

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32,
         FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_SCALARS = {FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
            FieldDescriptor.TYPE_STRING: {"type": "string"},
            FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
            FieldDescriptor.TYPE_FLOAT: {"type": "number"},
            FieldDescriptor.TYPE_DOUBLE: {"type": "number"}}


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a job spec document."""
    defs: dict[str, Any] = {}
    _define(spec_pb2.JobSpec.DESCRIPTOR, defs)
    return {"$schema": DIALECT, "title": "trainserve job spec (trainserve.v1.JobSpec)",
            "$ref": _ref(spec_pb2.JobSpec.DESCRIPTOR), "$defs": defs}


def _ref(desc: Descriptor) -> str:
    return f"#/$defs/{desc.full_name}"


def _define(desc: Descriptor, defs: dict[str, Any]) -> None:
    """Add message `desc` and every message it holds to `defs` (each once)."""
    if desc.full_name in defs:
        return
    defs[desc.full_name] = {}  # taken before recursing: messages may hold themselves
    properties = {f.name: _field(f, defs) for f in desc.fields}
    schema: dict[str, Any] = {"type": ["object", "null"], "properties": properties,
                              "additionalProperties": False}
    exclusive = _oneofs(desc)
    if exclusive:
        schema["dependentSchemas"] = exclusive
    defs[desc.full_name] = schema


def _oneofs(desc: Descriptor) -> dict[str, Any]:
    """field -> "then none of its oneof's other fields" (proto3 optional fields excluded)."""
    out: dict[str, Any] = {}
    for oneof in desc.oneofs:
        members = [f.name for f in oneof.fields]
        if len(members) < 2:
            continue
        for name in members:
            out[name] = {"properties": {other: False for other in members if other != name}}
    return out


def _field(field: FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, defs)}
    if field.is_repeated:
        return {"type": "array", "items": _single(field, defs)}
    return _single(field, defs)


def _single(field: FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one value of `field` (an item, for a repeated field)."""
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        _define(field.message_type, defs)
        return {"$ref": _ref(field.message_type)}
    if t == FieldDescriptor.TYPE_ENUM:
        return {"enum": list(field.enum_type.values_by_name)}
    if t in _INT32:
        return {"type": "integer"}
    if t in _UINT:
        return {"type": "integer", "minimum": 0}
    if t in _INT64:  # proto3 JSON writes 64-bit integers as strings
        return {"type": ["integer", "string"], "pattern": "^-?[0-9]+$"}
    return dict(_SCALARS[t])
