"""The bytes Go Mmate's publisher writes for an envelope, as a model of Go's ``encoding/json``.

Go Mmate marshals its ``contracts.Envelope`` struct with ``json.Marshal``: the struct's keys in
declaration order (``id``, ``type``, ``timestamp``, ``correlationId`` and ``replyTo`` left out when
empty, ``headers`` left out when empty, ``payload``), every map (``headers``, the payload, anything
nested in the payload) with its keys sorted, no whitespace. The payload went through
``map[string]interface{}`` first, so its numbers are float64 values, written in the shortest form
that reads back (an integral value without a fraction, an exponent below 1e-6 and from 1e21 on).
Strings are UTF-8 with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped (``\\u003c``...), as Go's
default HTML-safe encoder does.

The Go-shaped fixtures store their bodies as bytes; a test checks that this model writes exactly
those bytes, so a fixture edited by a test (``go_body``) stays shaped as Go would write it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

ENVELOPE_KEYS = ("id", "type", "timestamp", "correlationId", "replyTo", "headers", "payload")
OMIT_EMPTY = frozenset({"correlationId", "replyTo", "headers"})
_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _string(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    for char, escape in _ESCAPES.items():
        out = out.replace(char, escape)
    return out


def _float(value: float) -> str:
    """strconv.FormatFloat(value, 'f' or 'e', -1, 64) as encoding/json chooses between them."""
    if not math.isfinite(value):
        raise ValueError("Go cannot marshal NaN or infinities")
    if value == 0:
        return "0"
    if 1e-6 <= abs(value) < 1e21:
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    mantissa, exponent = f"{value!r}".split("e")
    sign = exponent[0]
    digits = exponent[1:].lstrip("0") or "0"
    return f"{mantissa}e{sign}{digits.zfill(2) if sign == '+' else digits}"


def _value(value: Any, *, numbers_as_float: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if numbers_as_float:
            return _float(float(value))
        if isinstance(value, float):
            return _float(value)
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return (
            "{"
            + ",".join(
                f"{_string(k)}:{_value(v, numbers_as_float=numbers_as_float)}" for k, v in items
            )
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_value(v, numbers_as_float=numbers_as_float) for v in value) + "]"
    raise TypeError(f"no JSON form for {type(value).__name__}")


def marshal_envelope(envelope: Mapping[str, Any]) -> bytes:
    """``json.Marshal(contracts.Envelope{...})`` of Go Mmate for ``envelope`` (a parsed body)."""
    unknown = set(envelope) - set(ENVELOPE_KEYS)
    if unknown:
        raise ValueError(f"Go's envelope struct has no keys {sorted(unknown)}")
    parts = []
    for key in ENVELOPE_KEYS:
        value = envelope.get(key)
        if key in OMIT_EMPTY and not value:
            continue
        if key == "payload":
            text = _value(value, numbers_as_float=True)
        elif key == "headers":
            text = _value(value, numbers_as_float=False)  # Go's own ints and strings
        else:
            text = _value(value if value is not None else "", numbers_as_float=False)
        parts.append(f"{_string(key)}:{text}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")
