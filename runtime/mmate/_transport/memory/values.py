"""What an AMQP message and its arguments can carry, as the in-memory broker stores them.

A publish is copied into the broker the way it would cross the wire (so a publisher that changes
its headers dict afterwards changes nothing in the queue, and every delivery is a fresh copy):

* field-table values are what the aiormq backend (pamqp) can write, arriving as RabbitMQ
  delivers them: ``str``, ``bytearray`` (a byte array), ``bool``, ``int`` (64-bit signed),
  ``float`` (written as a 32-bit float, so ``0.1`` arrives as ``0.10000000149011612``; one beyond
  its range is refused), ``Decimal`` (a 32-bit unscaled value and a scale of 0-255; ``1E+3``
  arrives as ``1000``), ``datetime`` (an aware UTC datetime in whole seconds: an AMQP timestamp; a
  naive one is read as UTC), ``None``, lists of these and tables (``dict`` with ``str`` keys).
  Anything else (``bytes``, a tuple, ...) is refused with ``MmateError`` naming the header, as
  the client refuses to send it;
* short strings (names, routing keys, the string properties) hold at most 255 UTF-8 bytes.

``amqp_type`` names a value's AMQP type as RabbitMQ's reply texts do (``byte``, ``short``,
``signedint``, ``long`` for integers by size, as a Python client encodes them; ``longstr``,
``bool``, ``double``...), and ``equivalent`` compares two argument values the way RabbitMQ does
for a redeclaration (all integer types are one class; an integer is not a float, a bool or a
string).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ...errors import MmateError
from ..base import Properties

SHORTSTR_MAX = 255
_INT64 = (-(1 << 63), (1 << 63) - 1)

_STRING_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


def check_shortstr(value: str, what: str) -> None:
    """Refuse a short string longer than AMQP allows (``what`` names it)."""
    if len(value) > SHORTSTR_MAX // 4 and len(value.encode()) > SHORTSTR_MAX:
        raise MmateError(
            f"{what} is {len(value.encode())} bytes long; AMQP allows at most {SHORTSTR_MAX}"
        )


def timestamp(value: datetime) -> datetime:
    """``value`` as an AMQP timestamp carries it: aware UTC, whole seconds (naive means UTC)."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def field_value(value: Any, where: str) -> Any:
    """A copy of one field-table value as it would arrive (see the module docstring)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise MmateError(f"{where}: the integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        try:
            (narrowed,) = _FLOAT32.unpack(_FLOAT32.pack(value))
        except OverflowError:
            raise MmateError(f"{where}: the float {value} does not fit in 32 bits") from None
        return narrowed
    if isinstance(value, Decimal):
        return _decimal(value, where)
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, Mapping):
        return field_table(value, where)
    if isinstance(value, list):
        return [field_value(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise MmateError(
        f"{where}: a {type(value).__name__} cannot travel in an AMQP field table (use str, "
        "bytearray, bool, int, float, Decimal, datetime, None, a list or a dict)"
    )


_FLOAT32 = struct.Struct(">f")
_TEN = Decimal(10)


def _decimal(value: Decimal, where: str) -> Decimal:
    """``value`` as an AMQP decimal carries it: a scale of 0-255 and a signed 32-bit unscaled
    value (a positive exponent is multiplied out)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise MmateError(f"{where}: the decimal {value} is not a number AMQP can carry")
    scale = 0 if exponent > 0 else -exponent
    unscaled = int(value) if exponent > 0 else int(value.scaleb(scale))
    if scale > 255 or not -(2**31) <= unscaled < 2**31:
        raise MmateError(
            f"{where}: the decimal {value} does not fit in AMQP's 32-bit unscaled value with a "
            "scale of 0-255"
        )
    return Decimal(unscaled) * (_TEN**-scale)


def field_table(table: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """A copy of a field table as it would arrive."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if not isinstance(key, str):
            raise MmateError(f"{where}: field-table keys are strings, got {key!r}")
        check_shortstr(key, f"{where}: key {key[:40]!r}")
        out[key] = field_value(value, f"{where}[{key!r}]")
    return out


def copy_value(value: Any) -> Any:
    """A deep copy of a value already normalised by ``field_value`` (only lists, dicts and byte
    arrays are mutable there)."""
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, dict):
        return {key: copy_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_value(item) for item in value]
    return value


def stored_properties(properties: Properties) -> Properties:
    """The properties of a publish as the broker keeps them (validated, copied)."""
    for name in _STRING_PROPERTIES:
        value = getattr(properties, name)
        if value is not None:
            if not isinstance(value, str):
                raise MmateError(f"property {name} must be a str, got {type(value).__name__}")
            check_shortstr(value, f"property {name}")
    for name in ("delivery_mode", "priority"):
        value = getattr(properties, name)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255
        ):
            raise MmateError(f"property {name} must be an int from 0 to 255, got {value!r}")
    headers = properties.headers
    return replace(
        properties,
        headers=None if headers is None else field_table(headers, "header"),
        timestamp=None if properties.timestamp is None else timestamp(properties.timestamp),
    )


def delivered_properties(properties: Properties, extra: Mapping[str, Any] | None) -> Properties:
    """A fresh copy for one delivery (a consumer may change it freely), with ``extra`` headers."""
    headers = properties.headers
    if headers is None and not extra:
        return replace(properties)
    copied: dict[str, Any] = copy_value(headers) if headers is not None else {}
    if extra:
        copied.update(extra)
    return replace(properties, headers=copied)


def amqp_type(value: Any) -> str:
    """The AMQP type a value travels as, named as RabbitMQ names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if -(1 << 7) <= value < 1 << 7:
            return "byte"
        if -(1 << 15) <= value < 1 << 15:
            return "short"
        if -(1 << 31) <= value < 1 << 31:
            return "signedint"
        return "long"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return "void"


def _type_class(value: Any) -> str:
    kind = amqp_type(value)
    return "int" if kind in ("byte", "short", "signedint", "long") else kind


def equivalent(a: Any, b: Any) -> bool:
    """RabbitMQ's argument equivalence: same type class and equal value."""
    if _type_class(a) != _type_class(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equivalent(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(equivalent, a, b))
    return bool(a == b)


def erlang_equal(a: Any, b: Any) -> bool:
    """Header values compared as a headers exchange compares them (Erlang ``==``): numbers by
    value (1 == 1.0), a bool only to a bool, text and bytes by their bytes."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str | bytes | bytearray) and isinstance(b, str | bytes | bytearray):
        return _as_bytes(a) == _as_bytes(b)
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(erlang_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(erlang_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _as_bytes(value: str | bytes | bytearray) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def shown(value: Any) -> str:
    """A value as RabbitMQ prints it in a reply text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
