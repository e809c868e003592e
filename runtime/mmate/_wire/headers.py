"""AMQP header tables as untrusted input: which values a table can carry back onto the wire, and
the properties of a received message made safe to republish.

An AMQP field table holds strings (UTF-8), booleans, signed integers of up to 64 bits, floats (32
bits, as pamqp writes every float),
decimals (a scale of 0-255 and a 32-bit unscaled value), timestamps (seconds since 1970, 64 bits),
void, arrays and nested tables, with keys of at most 128 bytes. A header read from a delivery may
hold anything a producer wrote, and some of it (a value the client library decoded but cannot
encode, such as a long string that was not UTF-8 and arrives as bytes) cannot go out again as it
came. ``encodable`` makes a received message's properties safe to republish (moves to wait and
dead-letter queues, the delay relay, replays), so recording why a message failed never fails on
what it carried. Every backend follows these rules.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._transport.base import Properties

DROPPED = "x-mmate-dropped-headers"
"""Names the headers left out of a republished message (they could not be encoded, or must not
go out again)."""

ROUTING_HEADERS = ("CC", "BCC")
"""RabbitMQ's sender-selected distribution: extra routing keys for the one publish that carries
them (``BCC`` is removed before delivery, ``CC`` is delivered). A republished copy (a retry, a
dead letter) that kept ``CC`` would also be routed to the queues it names, the origin queue
among them, and so again and again; RabbitMQ's own dead-lettering removes both too."""

_MAX_DEPTH = 32
_FLOAT = struct.Struct(">f")
_INT64 = 2**63


def _short_ok(text: str, limit: int) -> bool:
    try:
        return len(text.encode("utf-8")) <= limit
    except UnicodeEncodeError:
        return False


def value_encodes(value: Any, depth: int = 0) -> bool:
    """``value`` can be written into an AMQP field table."""
    if depth > _MAX_DEPTH:
        return False
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    if isinstance(value, float):
        try:  # the aiormq backend (pamqp) writes every float as a 32-bit float
            _FLOAT.pack(value)
        except OverflowError:
            return False
        return True
    if isinstance(value, str):
        return _short_ok(value, 2**32 - 1)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return False
        _sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int) or not -255 <= exponent <= 0:
            return False
        unscaled = int("".join(map(str, digits)) or "0")
        return unscaled < 2**31
    if isinstance(value, datetime):
        try:
            return 0 <= value.timestamp() < 2**63 and math.isfinite(value.timestamp())
        except (OverflowError, ValueError, OSError):
            return False
    if isinstance(value, list | tuple):
        return all(value_encodes(item, depth + 1) for item in value)
    if isinstance(value, Mapping):
        return table_encodes(value, depth + 1)
    return False


def table_encodes(table: Mapping[Any, Any], depth: int = 0) -> bool:
    """Every key and value of ``table`` can be written as an AMQP field table."""
    return all(
        isinstance(key, str) and _short_ok(key, 128) and value_encodes(value, depth)
        for key, value in table.items()
    )


def encodable(properties: Properties) -> Properties:
    """``properties`` of a received message as they can go back on the wire: headers that cannot
    be encoded are dropped and named in ``x-mmate-dropped-headers`` (a long string value that was
    not UTF-8, read as bytes, is kept decoded with replacement characters), and short-string
    properties over 255 bytes (a message id, say) are left out. Returns ``properties`` itself
    when everything encodes (the usual case)."""
    headers = properties.headers or {}
    message_id = properties.message_id
    long_id = message_id is not None and not _short_ok(message_id, 255)
    if not long_id and table_encodes(headers):
        return properties
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in headers.items():
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(key, str) and _short_ok(key, 128) and value_encodes(value):
            kept[key] = value
        else:
            dropped.append(repr(key)[:100])
    note_dropped(kept, dropped)
    return replace(properties, headers=kept, message_id=None if long_id else message_id)


def note_dropped(headers: dict[str, Any], names: list[str]) -> None:
    """Add ``names`` to the ``x-mmate-dropped-headers`` list in ``headers`` (at most 1,000
    characters in all)."""
    if not names:
        return
    before = headers.get(DROPPED)
    text = ", ".join(names)
    headers[DROPPED] = (f"{before}, {text}" if isinstance(before, str) else text)[:1000]


def copied_properties(
    original: Properties,
    headers: Mapping[str, Any],
    *,
    expiration: str | None = None,
    message_id: str | None = None,
) -> Properties:
    """The original message's properties with other ``headers`` and ``expiration``.

    Used wherever the runtime republishes a message it received (moves, retries, the delay relay,
    replays). Left out, whatever the original carried:

    * ``user_id``: RabbitMQ refuses a ``user_id`` that is not the publishing connection's user,
      and the original may come from another service's user;
    * ``cluster_id``: deprecated in AMQP 0-9-1 and required to be empty; RabbitMQ delivers one
      that a producer set, but a client refuses to send it again (pamqp does), so a move that
      kept it would fail on every try;
    * the ``CC`` and ``BCC`` headers (``ROUTING_HEADERS``), named in
      ``x-mmate-dropped-headers``.
    """
    kept = dict(headers)
    note_dropped(kept, [name for name in ROUTING_HEADERS if kept.pop(name, None) is not None])
    return Properties(
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers=kept,
        delivery_mode=original.delivery_mode,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        expiration=expiration,
        message_id=original.message_id or message_id or None,
        timestamp=original.timestamp,
        type=original.type,
        app_id=original.app_id,
    )
