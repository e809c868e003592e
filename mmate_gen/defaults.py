"""Whether a field's ``default`` is a valid value of its type and within its constraints."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .ir import Constraints, JsonValue, RecordType, TypeRef
from .names import did_you_mean
from .typeexpr import INTEGER
from .yamlnodes import ValuePath

Enums = Mapping[str, tuple[str, ...]]
"""The values of each enum type, by name."""
Records = Mapping[str, RecordType]
"""The records whose defaults can be checked field by field, by name (those whose every field was
built; a default of another record is only checked to be a mapping)."""

_SAMPLES = {
    "string": '"text"', "int": "0", "int64": "0", "float": "0.5", "decimal": "0.5",
    "bool": "false", "datetime": '"2024-01-15T10:31:00Z"', "date": '"2024-01-15"',
    "uuid": '"6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10"', "bytes": '""',
}  # fmt: skip
"""A valid value of each scalar as written in YAML, for hints."""


@dataclass(frozen=True, slots=True)
class DefaultProblem:
    """One way a default is not a valid value of its field."""

    problem: str
    hint: str
    path: ValuePath = ()
    """Where in the default (mapping keys, list indexes); ``()``: the whole default."""
    at_key: bool = False
    """The problem is the mapping key at ``path`` (an unknown field), not its value."""
    inside: str | None = None
    """The record field the value at ``path`` belongs to (``field "zip" of record Address``)."""


def default_problems(
    value: JsonValue,
    ref: TypeRef,
    enums: Enums,
    nullable: bool,
    constraints: Constraints,
    records: Records | None = None,
) -> list[DefaultProblem]:
    """Every way ``value`` is not a valid default of type ``ref`` within ``constraints``; a record
    default is checked against the record's fields, recursively."""
    return list(_field_problems(value, ref, nullable, constraints, enums, records or {}, (), None))


def _field_problems(
    value: JsonValue,
    ref: TypeRef,
    nullable: bool,
    constraints: Constraints,
    enums: Enums,
    records: Records,
    path: ValuePath,
    inside: str | None,
) -> Iterator[DefaultProblem]:
    if value is None:
        if not nullable:
            hint = (
                "add optional: true, or give a value"
                if inside is None
                else f"give a value, or add optional: true to {inside}"
            )
            yield DefaultProblem("null, but the field is not optional", hint, path, inside=inside)
        return
    problems = list(_value_problems(value, ref, enums, records, path, inside))
    if problems:
        yield from problems
        return
    problem = _constraint_problem(value, constraints)
    if problem is not None:
        yield DefaultProblem(problem[0], problem[1], path, inside=inside)


def _constraint_problem(value: JsonValue, constraints: Constraints) -> tuple[str, str] | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if constraints.minimum is not None and value < constraints.minimum:
            return (
                f"{value} is below the field's min {constraints.minimum}",
                "write a default within the bounds",
            )
        if constraints.maximum is not None and value > constraints.maximum:
            return (
                f"{value} is above the field's max {constraints.maximum}",
                "write a default within the bounds",
            )
    if isinstance(value, str | list | dict) and not isinstance(value, bool):
        size = len(value)
        if constraints.min_length is not None and size < constraints.min_length:
            return (
                f"it is shorter than the field's min_length {constraints.min_length}",
                "write a longer default",
            )
        if constraints.max_length is not None and size > constraints.max_length:
            return (
                f"it is longer than the field's max_length {constraints.max_length}",
                "write a shorter default",
            )
    if (
        isinstance(value, str)
        and constraints.pattern is not None
        and re.search(constraints.pattern, value) is None
    ):
        return (
            f'"{value}" does not match the field\'s pattern',
            "write a default that matches it",
        )
    return None


def _value_problems(
    value: JsonValue,
    ref: TypeRef,
    enums: Enums,
    records: Records,
    path: ValuePath,
    inside: str | None,
) -> Iterator[DefaultProblem]:
    """The problems of a non-null ``value`` of type ``ref`` (list items and map values too)."""
    shown = json.dumps(value)
    if ref.kind == "enum":
        values = enums.get(ref.name, ())
        if not (isinstance(value, str) and value in values):
            hint = did_you_mean(str(value), values, f"write one of: {', '.join(values)}")
            yield DefaultProblem(
                f"{shown} is not a value of enum {ref.name}", hint, path, False, inside
            )
    elif ref.kind == "record":
        if not isinstance(value, dict):
            yield DefaultProblem(
                f"{shown} is not a mapping for record {ref.name}",
                "write a mapping of its fields",
                path,
                False,
                inside,
            )
        elif ref.name in records:
            yield from _record_problems(value, records[ref.name], enums, records, path)
    elif ref.kind in ("list", "map"):
        items: list[tuple[str | int, JsonValue]]
        if ref.kind == "list":
            if not isinstance(value, list):
                yield DefaultProblem(
                    f"{shown} is not a list", "write a list, e.g. []", path, False, inside
                )
                return
            items = list(enumerate(value))
        else:
            if not isinstance(value, dict):
                yield DefaultProblem(
                    f"{shown} is not a mapping", "write a mapping, e.g. {}", path, False, inside
                )
                return
            items = list(value.items())
        if ref.item is not None:
            for key, item in items:
                yield from _value_problems(item, ref.item, enums, records, (*path, key), inside)
    else:
        problem = _scalar_problem(value, ref.name, shown)
        if problem is not None:
            yield DefaultProblem(problem[0], problem[1], path, False, inside)


def _record_problems(
    value: dict[str, JsonValue],
    record: RecordType,
    enums: Enums,
    records: Records,
    path: ValuePath,
) -> Iterator[DefaultProblem]:
    fields = {f.json_name: f for f in record.fields}
    by_py_name = {f.py_name: f.json_name for f in record.fields}
    meant: set[str] = set()
    """Fields that an unknown key is reported as a misspelling of (not reported missing too)."""
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            if key in by_py_name:
                meant.add(by_py_name[key])
                hint = f'write its JSON name "{by_py_name[key]}"'
            else:
                hint = did_you_mean(
                    key, fields, f"remove it (the fields of {record.name}: {', '.join(fields)})"
                )
                if hint.startswith("did you mean"):
                    meant.add(hint.split('"')[1])
            yield DefaultProblem(
                f'record {record.name} has no field "{key}"', hint, (*path, key), at_key=True
            )
            continue
        inside = f'field "{key}" of record {record.name}'
        yield from _field_problems(
            item,
            field.type,
            field.nullable,
            field.constraints,
            enums,
            records,
            (*path, key),
            inside,
        )
    missing = [f for f in record.fields if f.required and f.json_name not in value.keys() | meant]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        names = ", ".join(f'"{f.json_name}"' for f in missing)
        add = ", ".join(f"{f.json_name}: {_sample(f.type, enums)}" for f in missing)
        yield DefaultProblem(
            f"it lacks the required field{plural} {names} of record {record.name}",
            f"add {add} to it",
            path,
        )


def _sample(ref: TypeRef, enums: Enums) -> str:
    """A valid YAML value of type ``ref``, for hints."""
    if ref.kind == "enum":
        values = enums.get(ref.name, ())
        return values[0] if values else '""'
    if ref.kind == "record":
        return "{...}"
    if ref.kind == "list":
        return "[]"
    if ref.kind == "map":
        return "{}"
    return _SAMPLES.get(ref.name, '""')


def _scalar_problem(value: JsonValue, name: str, shown: str) -> tuple[str, str] | None:
    ok: bool
    example = {
        "string": '"text"', "int": "0", "int64": "0", "float": "0.5", "decimal": "0.5",
        "bool": "true or false", "datetime": '"2024-01-15T10:31:00Z"', "date": '"2024-01-15"',
        "uuid": '"6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10"', "bytes": "base64 text",
    }[name]  # fmt: skip
    if name == "string":
        ok = isinstance(value, str)
    elif name in INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in ("float", "decimal"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif name == "bool":
        ok = isinstance(value, bool)
    elif not isinstance(value, str):
        ok = False
    else:
        ok = _text_ok(value, name)
    return (
        None
        if ok
        else (f"{shown} is not a valid {name}", f"write {_article(name)} {name} such as {example}")
    )


def _text_ok(value: str, name: str) -> bool:
    try:
        if name == "datetime":
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed.tzinfo is not None
        if name == "date":
            datetime.date.fromisoformat(value)
        elif name == "uuid":
            uuid.UUID(value)
        elif name == "bytes":
            base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return False
    return True


def _article(name: str) -> str:
    return "an" if name in ("int", "int64") else "a"
