"""Whether a field's ``default`` is a valid value of its type and within its constraints."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import uuid
from collections.abc import Mapping

from .ir import Constraints, JsonValue, TypeRef
from .names import did_you_mean
from .typeexpr import INTEGER

Enums = Mapping[str, tuple[str, ...]]
"""The values of each enum type, by name."""


def default_problem(
    value: JsonValue,
    ref: TypeRef,
    enums: Enums,
    nullable: bool,
    constraints: Constraints,
) -> tuple[str, str] | None:
    """(what is wrong, hint) when ``value`` is not a valid default of type ``ref``."""
    if value is None:
        return (
            None
            if nullable
            else ("null, but the field is not optional", "add optional: true, or give a value")
        )
    problem = _value_problem(value, ref, enums)
    if problem is not None:
        return problem
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


def _value_problem(value: JsonValue, ref: TypeRef, enums: Enums) -> tuple[str, str] | None:
    shown = json.dumps(value)
    if ref.kind == "enum":
        values = enums.get(ref.name, ())
        if isinstance(value, str) and value in values:
            return None
        hint = did_you_mean(str(value), values, f"write one of: {', '.join(values)}")
        return (f"{shown} is not a value of enum {ref.name}", hint)
    if ref.kind == "record":
        if isinstance(value, dict):
            return None
        return (f"{shown} is not a mapping for record {ref.name}", "write a mapping of its fields")
    if ref.kind == "list":
        if not isinstance(value, list):
            return (f"{shown} is not a list", "write a list, e.g. []")
        for item in value:
            if ref.item is not None and (p := _value_problem(item, ref.item, enums)) is not None:
                return p
        return None
    if ref.kind == "map":
        if not isinstance(value, dict):
            return (f"{shown} is not a mapping", "write a mapping, e.g. {}")
        for item in value.values():
            if ref.item is not None and (p := _value_problem(item, ref.item, enums)) is not None:
                return p
        return None
    return _scalar_problem(value, ref.name, shown)


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
