"""Field type expressions: a scalar, ``list[T]``, ``map[string, T]`` or the name of a spec type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SCALARS = (
    "string",
    "int",
    "int64",
    "float",
    "decimal",
    "bool",
    "datetime",
    "date",
    "uuid",
    "bytes",
)
NUMERIC = frozenset({"int", "int64", "float", "decimal"})
INTEGER = frozenset({"int", "int64"})
SIZED = frozenset({"string", "bytes", "list", "map"})

_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(.))")


@dataclass(frozen=True, slots=True)
class TypeExpr:
    """A parsed, not yet resolved type: ``named`` is a name to look up among the spec's types."""

    kind: Literal["scalar", "list", "map", "named"]
    name: str
    item: TypeExpr | None = None


class TypeSyntaxError(ValueError):
    """The expression is malformed; the message says how, ``hint`` what to write instead."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


_FORMS = "write a scalar (string, int, ...), list[T], map[string, T] or a type name"


def parse_type(text: str) -> TypeExpr:
    tokens = [m.group(1) or m.group(2) for m in _TOKEN_RE.finditer(text) if m.group(0).strip()]
    tokens = [t for t in tokens if t is not None and not t.isspace()]
    if not tokens:
        raise TypeSyntaxError("the type is empty", _FORMS)
    expr, pos = _parse(tokens, 0, text)
    if pos != len(tokens):
        raise TypeSyntaxError(f'unexpected "{tokens[pos]}" in type "{text}"', _FORMS)
    return expr


def _expect(tokens: list[str], pos: int, want: str, text: str) -> int:
    if pos >= len(tokens) or tokens[pos] != want:
        got = f'"{tokens[pos]}"' if pos < len(tokens) else "the end"
        raise TypeSyntaxError(f'expected "{want}" but found {got} in type "{text}"', _FORMS)
    return pos + 1


def _parse(tokens: list[str], pos: int, text: str) -> tuple[TypeExpr, int]:
    if pos >= len(tokens):
        raise TypeSyntaxError(f'type "{text}" ends too early', _FORMS)
    word = tokens[pos]
    if not (word[0].isalpha() or word[0] == "_"):
        raise TypeSyntaxError(f'unexpected "{word}" in type "{text}"', _FORMS)
    pos += 1
    if word == "list":
        pos = _expect(tokens, pos, "[", text)
        item, pos = _parse(tokens, pos, text)
        pos = _expect(tokens, pos, "]", text)
        return TypeExpr("list", "list", item), pos
    if word == "map":
        pos = _expect(tokens, pos, "[", text)
        key, pos = _parse(tokens, pos, text)
        if key != TypeExpr("scalar", "string"):
            raise TypeSyntaxError(
                f'map keys must be string in type "{text}"',
                "write map[string, T] (JSON object keys)",
            )
        pos = _expect(tokens, pos, ",", text)
        item, pos = _parse(tokens, pos, text)
        pos = _expect(tokens, pos, "]", text)
        return TypeExpr("map", "map", item), pos
    if word in SCALARS:
        return TypeExpr("scalar", word), pos
    return TypeExpr("named", word), pos
