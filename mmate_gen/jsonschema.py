"""The intermediate model as JSON Schema (2020-12).

Two products: one document per message (its payload, with ``$defs`` for the enums and records it
uses, written to ``schemas/<Message>.json``), and one combined document holding every enum, record
and message under ``$defs``, which ``mmate_gen.models`` feeds to datamodel-code-generator.

Payload schemas never set ``additionalProperties``: readers ignore unknown keys (docs/interop.md,
"The envelope").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ir import EnumType, Field, Message, RecordType, SpecSet, TypeRef

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMBINED_TITLE = "MmateSpecRoot"
"""Title of the combined document; datamodel-code-generator names its (discarded) root model so."""

INT64_NOTE = "Values above 2^53 do not survive a Go hop (Go reads JSON numbers as float64)."

Schema = dict[str, Any]

_SCALARS: dict[str, Schema] = {
    "string": {"type": "string"},
    "int": {"type": "integer"},
    "int64": {"type": "integer", "format": "int64"},
    "float": {"type": "number"},
    "decimal": {"type": "number", "customTypePath": "mmate.JsonDecimal"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "uuid": {"type": "string", "format": "uuid"},
    "bytes": {
        "type": "string",
        "contentEncoding": "base64",
        "customTypePath": "mmate.Base64Bytes",
    },
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def type_schema(t: TypeRef, *, for_models: bool = False) -> Schema:
    """The schema of a value of type ``t`` (no constraints, no default)."""
    if t.kind == "scalar":
        schema = dict(_SCALARS[t.name])
        if for_models:
            schema.pop("contentEncoding", None)
        return schema
    if t.kind in ("enum", "record"):
        return ref(t.name)
    if t.item is None:
        raise ValueError(f"{t.kind} type without an item type")
    item = type_schema(t.item, for_models=for_models)
    if t.kind == "list":
        return {"type": "array", "items": item}
    return {"type": "object", "additionalProperties": item}


def _constrained(f: Field, *, for_models: bool) -> Schema:
    schema = type_schema(f.type, for_models=for_models)
    if for_models:
        return schema
    c = f.constraints
    if c.minimum is not None:
        schema["minimum"] = c.minimum
    if c.maximum is not None:
        schema["maximum"] = c.maximum
    lengths = {
        "list": ("minItems", "maxItems"),
        "map": ("minProperties", "maxProperties"),
    }.get(f.type.kind, ("minLength", "maxLength"))
    if c.min_length is not None:
        schema[lengths[0]] = c.min_length
    if c.max_length is not None:
        schema[lengths[1]] = c.max_length
    if c.pattern is not None:
        schema["pattern"] = c.pattern
    return schema


def field_description(f: Field) -> str | None:
    """The field's description, with the int64 precision note where it applies."""
    if _uses_int64(f.type):
        return f"{f.description} {INT64_NOTE}" if f.description else INT64_NOTE
    return f.description


def _uses_int64(t: TypeRef) -> bool:
    if t.kind == "scalar":
        return t.name == "int64"
    return t.item is not None and _uses_int64(t.item)


def field_schema(f: Field, *, for_models: bool = False) -> Schema:
    """The schema of a field's value. ``for_models``: for datamodel-code-generator, without
    constraints (``mmate_gen.models`` writes them: DMCG turns a constrained optional value into a
    root model class of its own) and without ``contentEncoding`` (the custom type decodes base64;
    DMCG would repeat the keyword in ``json_schema_extra``)."""
    value = _constrained(f, for_models=for_models)
    schema: Schema = {"anyOf": [value, {"type": "null"}]} if f.nullable else value
    description = field_description(f)
    if description is not None:
        schema["description"] = description
    if f.has_default:
        schema["default"] = f.default
    elif f.nullable:
        schema["default"] = None
    return schema


def _object_schema(
    title: str, description: str | None, fields: tuple[Field, ...], *, for_models: bool = False
) -> Schema:
    schema: Schema = {"title": title}
    if description is not None:
        schema["description"] = description
    schema["type"] = "object"
    schema["properties"] = {f.json_name: field_schema(f, for_models=for_models) for f in fields}
    required = [f.json_name for f in fields if f.required]
    if required:
        schema["required"] = required
    return schema


def enum_schema(e: EnumType) -> Schema:
    schema: Schema = {"title": e.name}
    if e.description is not None:
        schema["description"] = e.description
    schema["type"] = "string"
    schema["enum"] = list(e.values)
    return schema


def record_schema(r: RecordType, *, for_models: bool = False) -> Schema:
    return _object_schema(r.name, r.description, r.fields, for_models=for_models)


def message_body_schema(m: Message, *, for_models: bool = False) -> Schema:
    return _object_schema(m.name, m.description, m.fields, for_models=for_models)


def named_types(
    spec: SpecSet, fields: tuple[Field, ...]
) -> tuple[list[EnumType], list[RecordType]]:
    """The enums and records ``fields`` use, transitively, each sorted by name."""
    enums = {e.name: e for e in spec.enums}
    records = {r.name: r for r in spec.records}
    seen: set[str] = set()
    pending = [f.type for f in fields]
    while pending:
        t = pending.pop()
        if t.item is not None:
            pending.append(t.item)
        elif t.kind in ("enum", "record") and t.name not in seen:
            seen.add(t.name)
            if t.kind == "record":
                pending.extend(f.type for f in records[t.name].fields)
    return (
        [enums[n] for n in sorted(seen) if n in enums],
        [records[n] for n in sorted(seen) if n in records],
    )


def message_schema(spec: SpecSet, m: Message, comment: str) -> Schema:
    """The standalone schema of ``m``'s payload, ``$defs`` holding the named types it uses."""
    enums, records = named_types(spec, m.fields)
    schema: Schema = {"$comment": comment, "$schema": SCHEMA_DIALECT}
    schema.update(message_body_schema(m))
    defs = _defs(enums, records, ())
    if defs:
        schema["$defs"] = defs
    return schema


def combined_schema(spec: SpecSet) -> Schema:
    """Every enum, record and message of ``spec`` under ``$defs``, sorted by name, for
    datamodel-code-generator (see ``field_schema`` for how it differs)."""
    return {
        "$schema": SCHEMA_DIALECT,
        "title": COMBINED_TITLE,
        "$defs": _defs(spec.enums, spec.records, spec.messages, for_models=True),
    }


def _defs(
    enums: Sequence[EnumType],
    records: Sequence[RecordType],
    messages: Sequence[Message],
    *,
    for_models: bool = False,
) -> Schema:
    defs: Schema = {}
    for e in enums:
        defs[e.name] = enum_schema(e)
    for r in records:
        defs[r.name] = record_schema(r, for_models=for_models)
    for m in messages:
        defs[m.name] = message_body_schema(m, for_models=for_models)
    return dict(sorted(defs.items()))
