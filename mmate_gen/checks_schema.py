"""Types, messages and their fields: names, type expressions, constraints, defaults, base fields."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .defaults import Records, default_problems
from .diagnostics import Location
from .ir import Constraints, EnumType, Field, JsonValue, Kind, Message, RecordType, TypeRef
from .names import (
    CAMEL_RE,
    ENVELOPE_NAMES,
    PASCAL_RE,
    abbreviated,
    did_you_mean,
    python_name_problem,
    snake_case,
)
from .rawspec import RawField, RawMessage, RawType
from .report import Report
from .routing import MAX_KEY_BYTES
from .typeexpr import INTEGER, NUMERIC, SCALARS, SIZED, TypeExpr, TypeSyntaxError, parse_type

_STRING = TypeRef("scalar", "string")
_KINDS: Mapping[str, Kind] = {
    "command": "command",
    "event": "event",
    "query": "query",
    "reply": "reply",
}

# (json name, type, nullable, default, description) per kind, in the order of docs/interop.md.
BASE_FIELDS: Mapping[str, tuple[tuple[str, TypeRef, bool, JsonValue, str], ...]] = {
    "command": (
        ("targetService", _STRING, False, "", "Service the command is addressed to."),
        ("replyTo", _STRING, True, None, "Where a reply should go, if any."),
    ),
    "event": (
        ("aggregateId", _STRING, False, "", "Id of the aggregate the event is about."),
        ("sequence", TypeRef("scalar", "int64"), False, 0, "Position in the aggregate's stream."),
        ("source", _STRING, True, None, "Service that raised the event."),
    ),
    "query": (("replyTo", _STRING, False, "", "Reply queue (filled in by the runtime)."),),
    "reply": (
        ("success", TypeRef("scalar", "bool"), False, True, "False when the query failed."),
        ("errorCode", _STRING, True, None, "Error code of a failed query."),
        ("errorMessage", _STRING, True, None, "Error message of a failed query."),
    ),
}


@dataclass(frozen=True, slots=True)
class PendingDefault:
    """A field's default, checked once every record is built (a record default needs the record's
    fields)."""

    raw: RawField
    field: Field
    what: str


@dataclass(frozen=True, slots=True)
class TypeTable:
    """Every spec type by name (enums with their values), and the message names."""

    enums: Mapping[str, tuple[str, ...]]
    records: frozenset[str]
    messages: frozenset[str]


def check_type_name(report: Report, name: str, loc: Location, what: str) -> None:
    if not PASCAL_RE.match(name) or name in ("None", "True", "False"):
        report.error(
            loc,
            f'{what} name "{name}" is not PascalCase',
            f'write it like "{_pascal_suggestion(name)}" (a capital, then letters and digits)',
        )
    elif what == "message" and len(name.encode()) > MAX_KEY_BYTES:
        report.error(
            loc,
            f'message name "{abbreviated(name)}" is longer than 255 bytes: it is the AMQP type '
            "property of every message sent, which AMQP limits to 255 bytes",
            "shorten it",
        )


def build_enum(report: Report, raw: RawType) -> EnumType:
    values: list[str] = []
    for value, loc in raw.enum or []:
        if not isinstance(value, str):
            continue  # reported by the reader as a non-string
        if not value:
            report.error(loc, f"enum {raw.name} has an empty value", "write a non-empty string")
        elif value in values:
            report.error(loc, f'enum {raw.name} lists "{value}" twice', "remove the repeated value")
        else:
            values.append(value)
    if raw.enum is not None and not raw.enum:
        report.error(raw.loc, f"enum {raw.name} has no values", "write enum: [value1, value2]")
    return EnumType(raw.name, tuple(values), raw.description, raw.file, raw.loc)


def build_record(
    report: Report, raw: RawType, table: TypeTable, defaults: list[PendingDefault]
) -> RecordType:
    owner = f"type {raw.name}"
    fields = build_fields(report, raw.fields or [], owner, table, (), (), defaults)
    return RecordType(raw.name, tuple(fields), raw.description, raw.file, raw.loc)


def build_message(
    report: Report,
    raw: RawMessage,
    table: TypeTable,
    replies: set[str],
    defaults: list[PendingDefault],
) -> Message:
    kind = _KINDS.get(raw.kind or "", "command")
    owner = f"message {raw.name}"
    base = tuple(
        Field(
            json_name=name,
            py_name=snake_case(name),
            type=ref,
            required=False,
            nullable=nullable,
            has_default=True,
            default=default,
            description=description,
            constraints=Constraints(),
            base=True,
            loc=raw.loc,
        )
        for name, ref, nullable, default, description in BASE_FIELDS[kind]
    )
    own = build_fields(report, raw.fields, owner, table, base, ENVELOPE_NAMES, defaults)
    if raw.kind == "query" and raw.reply is None:
        report.error(
            raw.loc,
            f"query {raw.name} has no reply",
            f"add reply: NAME, naming a message of kind reply ({_example(replies, 'OrderReply')})",
        )
    if raw.reply is not None and raw.reply_loc is not None:
        if raw.kind is not None and raw.kind != "query":
            report.error(
                raw.reply_loc,
                f"{raw.kind} {raw.name} has a reply, but only queries have one",
                "remove reply, or make it kind: query",
            )
        elif raw.reply not in replies:
            what = "is not a message of kind reply" if raw.reply in table.messages else "is unknown"
            report.error(
                raw.reply_loc,
                f'reply "{raw.reply}" of query {raw.name} {what}',
                did_you_mean(
                    raw.reply, replies, f"name a message of kind reply, or define {raw.reply}"
                )
                if what == "is unknown"
                else f"give {raw.reply} kind: reply, or name a reply message",
            )
    reply = raw.reply if raw.kind == "query" else None
    return Message(
        raw.name, snake_case(raw.name), kind, base + tuple(own), raw.description, reply,
        raw.version, raw.file, raw.loc,
    )  # fmt: skip


def build_fields(
    report: Report,
    raws: list[RawField],
    owner: str,
    table: TypeTable,
    base: tuple[Field, ...],
    reserved: tuple[str, ...],
    defaults: list[PendingDefault],
) -> list[Field]:
    fields: list[Field] = []
    py_names = {f.py_name: f.json_name for f in base}
    base_names = {f.json_name for f in base}
    kind = _kind_of(base)
    for raw in raws:
        what = f'field "{raw.name}" of {owner}'
        py_name = snake_case(raw.name)
        if raw.name in reserved:
            report.error(
                raw.loc,
                f"{what} is reserved: the envelope carries {raw.name}",
                f'rename it, e.g. "{_rename(raw.name, owner)}" (id, type, timestamp and '
                "correlationId are envelope keys)",
            )
        elif raw.name in base_names:
            report.error(
                raw.loc,
                f"{what} is a base field of every {kind}",
                f"remove it; every {kind} has it already (docs/interop.md, Base fields per kind)",
            )
        elif not CAMEL_RE.match(raw.name):
            report.error(
                raw.loc,
                f"{what} is not camelCase",
                f'write "{_camel_suggestion(raw.name)}" (a lowercase letter, then letters, digits)',
            )
        elif (problem := python_name_problem(py_name)) is not None:
            report.error(
                raw.loc,
                f'{what} becomes the Python attribute "{py_name}", which {problem}',
                f'rename it, e.g. "{_rename(raw.name)}"',
            )
        elif py_name in py_names:
            report.error(
                raw.loc,
                f'{what} and field "{py_names[py_name]}" both become "{py_name}" in Python',
                "rename one of them",
            )
        py_names.setdefault(py_name, raw.name)
        field = _build_field(report, raw, what, py_name, table)
        if field is not None:
            fields.append(field)
            if raw.has_default:
                defaults.append(PendingDefault(raw, field, what))
    return fields


def _kind_of(base: tuple[Field, ...]) -> str:
    names = tuple(f.json_name for f in base)
    for kind, spec in BASE_FIELDS.items():
        if tuple(s[0] for s in spec) == names:
            return kind
    return "message"


def _build_field(
    report: Report, raw: RawField, what: str, py_name: str, table: TypeTable
) -> Field | None:
    if raw.type_text is None:
        return None
    ref = resolve_type(report, raw.type_text, raw.type_loc, what, table)
    if ref is None:
        return None
    constraints = _constraints(report, raw, ref, what)
    has_default = raw.has_default or raw.optional
    return Field(
        json_name=raw.name,
        py_name=py_name,
        type=ref,
        required=not raw.optional and not has_default,
        nullable=raw.optional,
        has_default=has_default,
        default=raw.default if raw.has_default else None,
        description=raw.description,
        constraints=constraints,
        base=False,
        loc=raw.loc,
    )


def check_defaults(
    report: Report, pending: list[PendingDefault], table: TypeTable, records: Records
) -> None:
    """Every problem of every default, at the part of it that is wrong."""
    for item in pending:
        raw, field = item.raw, item.field
        problems = default_problems(
            raw.default, field.type, table.enums, field.nullable, field.constraints, records
        )
        for p in problems:
            value_loc, key_loc = raw.default_locs.get(p.path, (raw.default_loc, None))
            loc = (key_loc if p.at_key else value_loc) or raw.default_loc or raw.loc
            where = f" at {_value_path(raw.name, p.path)}" if p.path else ""
            inside = f" ({p.inside})" if p.inside is not None else ""
            report.error(
                loc, f"default of {item.what} is invalid{where}{inside}: {p.problem}", p.hint
            )


def _value_path(name: str, path: tuple[str | int, ...]) -> str:
    """``lines[0].quantity`` style, rooted at the field's name."""
    text = name
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def resolve_type(
    report: Report, text: str, loc: Location, what: str, table: TypeTable
) -> TypeRef | None:
    try:
        expr = parse_type(text)
    except TypeSyntaxError as exc:
        report.error(loc, f"type of {what}: {exc}", exc.hint)
        return None
    return _resolve(report, expr, loc, what, table)


def _resolve(
    report: Report, expr: TypeExpr, loc: Location, what: str, table: TypeTable
) -> TypeRef | None:
    if expr.kind == "scalar":
        return TypeRef("scalar", expr.name)
    if expr.kind in ("list", "map") and expr.item is not None:
        item = _resolve(report, expr.item, loc, what, table)
        return TypeRef(expr.kind, expr.kind, item) if item is not None else None
    if expr.name in table.enums:
        return TypeRef("enum", expr.name)
    if expr.name in table.records:
        return TypeRef("record", expr.name)
    if expr.name in table.messages:
        report.error(
            loc,
            f"type of {what} is message {expr.name}; fields can only use types",
            "define the shape under types: and use that, or use a scalar",
        )
        return None
    known = (*SCALARS, *table.enums, *table.records)
    report.error(
        loc,
        f'type of {what} names unknown type "{expr.name}"',
        did_you_mean(
            expr.name,
            known,
            "write a scalar (string, int, int64, float, decimal, bool, datetime, date, uuid, "
            "bytes), "
            f"list[T], map[string, T], or define {expr.name} under types:",
        ),
    )
    return None


def _constraints(report: Report, raw: RawField, ref: TypeRef, what: str) -> Constraints:
    values: dict[str, JsonValue] = {}
    type_text = raw.type_text or ref.name
    for key, (value, loc) in raw.constraints.items():
        if key in ("min", "max") and not (ref.kind == "scalar" and ref.name in NUMERIC):
            report.error(
                loc,
                f"{key} of {what} applies only to numbers, not {type_text}",
                "remove it, or use min_length/max_length for lengths"
                if ref.name in SIZED or ref.kind in ("list", "map")
                else "remove it",
            )
        elif key in ("min_length", "max_length") and not (
            ref.kind in ("list", "map") or ref.name in SIZED
        ):
            report.error(
                loc,
                f"{key} of {what} applies only to string, bytes, list and map, not {type_text}",
                "remove it, or use min/max for numbers" if ref.name in NUMERIC else "remove it",
            )
        elif key == "pattern" and not (ref.kind == "scalar" and ref.name == "string"):
            report.error(
                loc, f"pattern of {what} applies only to string, not {type_text}", "remove it"
            )
        elif key == "pattern":
            try:
                re.compile(str(value))
            except re.error as exc:
                report.error(
                    loc,
                    f"pattern of {what} is not a valid regular expression: {exc}",
                    "fix the regular expression (Python re syntax)",
                )
            else:
                values[key] = value
        else:
            if key in ("min", "max") and ref.name in INTEGER and not isinstance(value, int):
                report.error(
                    loc,
                    f"{key} of {what} must be a whole number for {ref.name}",
                    f"write {key}: {int(float(str(value)))}",
                )
                continue
            values[key] = value
    for low, high in (("min", "max"), ("min_length", "max_length")):
        lo, hi = values.get(low), values.get(high)
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            report.error(
                raw.constraints[low][1],
                f"{low} {lo} of {what} is above its {high} {hi}",
                f"write a {low} no greater than {hi}",
            )
    return Constraints(
        minimum=_num(values.get("min")),
        maximum=_num(values.get("max")),
        min_length=_int(values.get("min_length")),
        max_length=_int(values.get("max_length")),
        pattern=str(values["pattern"]) if "pattern" in values else None,
    )


def _num(value: JsonValue) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: JsonValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _camel_suggestion(name: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    if not parts:
        return "fieldName"
    head = parts[0]
    head = head.lower() if head.isupper() else head[:1].lower() + head[1:]
    text = head + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return text if CAMEL_RE.match(text) else "fieldName"


def _pascal_suggestion(name: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts)
    return text if PASCAL_RE.match(text) and text not in ("None", "True", "False") else "TypeName"


def _rename(name: str, owner: str = "") -> str:
    """A camelCase alternative to ``name``: prefixed with the owner's name when given
    (``id`` of PingCommand -> ``pingCommandId``), else suffixed (``from`` -> ``fromValue``)."""
    if name.startswith("model") and name != "model":
        name = name[5:6].lower() + name[6:]
    owner_name = owner.rsplit(" ", 1)[-1]
    if owner_name and CAMEL_RE.match(name):
        text = owner_name[:1].lower() + owner_name[1:] + name[:1].upper() + name[1:]
    else:
        text = f"{name}Value"
    return text if CAMEL_RE.match(text) else "fieldName"


def _example(names: set[str], fallback: str) -> str:
    return f"e.g. {sorted(names)[0]}" if names else f"e.g. {fallback}"
