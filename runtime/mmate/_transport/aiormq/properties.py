"""AMQP basic properties between the seam's ``Properties`` and pamqp's, and their fast encoding.

``to_pamqp`` builds the ``Basic.Properties`` aiormq publishes with; its ``marshal`` (called by
aiormq for every publish) produces exactly pamqp's bytes, faster: header entries that are the same
for every message of a contract and repeating strings are encoded once, and strings take a direct
path. Anything unusual (a string over its length limit, a naive or non-datetime timestamp, an
out-of-range octet) goes to pamqp's own encoder, which encodes it or raises its usual error.
``from_pamqp`` turns a delivery's properties into the seam's.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pamqp import encode as amqp_encode
from pamqp.commands import Basic

from ..base import Properties

_LENGTH = tuple(bytes((n,)) for n in range(256))
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_CACHE_LIMIT = 4096
_shortstrs: dict[str, bytes] = {}
"""Encoded short strings of property values that repeat (content type, type, app id, reply
queue)."""
_keys: dict[str, bytes] = {}
"""Encoded header-table keys."""
_entries: dict[tuple[str, str], bytes] = {}
"""Encoded header-table entries (key and string value) that are the same for every message of a
contract: ``x-message-type``, ``x-message-kind``, ``x-source``, ``x-schema-version``."""
_CONSTANT_KEYS = frozenset({"x-message-type", "x-message-kind", "x-source", "x-schema-version"})


class _Unusual(Exception):
    """A value the fast encoder leaves to pamqp (which encodes it, or raises its own error)."""


def _short(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise _Unusual
    return _LENGTH[len(raw)] + raw


def _short_cached(value: str) -> bytes:
    found = _shortstrs.get(value)
    if found is None:
        if len(_shortstrs) >= _CACHE_LIMIT:
            _shortstrs.clear()
        found = _shortstrs[value] = _short(value)
    return found


def _key(key: str) -> bytes:
    found = _keys.get(key)
    if found is None:
        raw = key.encode()
        if len(raw) > 128:  # pamqp truncates (and warns)
            raise _Unusual
        if len(_keys) >= _CACHE_LIMIT:
            _keys.clear()
        found = _keys[key] = _LENGTH[len(raw)] + raw
    return found


def _table(headers: Mapping[str, Any]) -> bytes:
    """pamqp's ``field_table``: entries sorted by key, strings as long strings (``S``)."""
    parts: list[bytes] = []
    for key in sorted(headers):
        value = headers[key]
        if type(value) is str:
            if key in _CONSTANT_KEYS:
                entry = _entries.get((key, value))
                if entry is None:
                    raw = value.encode()
                    entry = _key(key) + b"S" + _U32.pack(len(raw)) + raw
                    if len(_entries) >= _CACHE_LIMIT:
                        _entries.clear()
                    _entries[(key, value)] = entry
                parts.append(entry)
            else:
                raw = value.encode()
                parts.append(_key(key) + b"S" + _U32.pack(len(raw)) + raw)
        else:  # numbers, booleans, nested values: pamqp's own rules (integer widths, float)
            parts.append(_key(key) + amqp_encode.encode_table_value(value))
    data = b"".join(parts)
    return _U32.pack(len(data)) + data


def _octet(value: Any) -> bytes:
    if type(value) is not int or not 0 <= value <= 255:
        raise _Unusual
    return _LENGTH[value]


def _marshal(p: Basic.Properties) -> bytes:
    """What ``BasicProperties.marshal`` returns for ``p``: the set properties (not None, not empty)
    in slot order behind their flags, each encoded as pamqp encodes it."""
    flags = 0
    parts: list[bytes] = [b""]
    v: Any = p.content_type
    if v is not None and v != "":
        flags |= 0x8000
        parts.append(_short_cached(v))
    v = p.content_encoding
    if v is not None and v != "":
        flags |= 0x4000
        parts.append(_short_cached(v))
    v = p.headers
    if v is not None and v != "":
        flags |= 0x2000
        parts.append(_table(v) if v else b"\x00\x00\x00\x00")
    v = p.delivery_mode
    if v is not None and v != "":
        flags |= 0x1000
        parts.append(_octet(v))
    v = p.priority
    if v is not None and v != "":
        flags |= 0x0800
        parts.append(_octet(v))
    v = p.correlation_id
    if v is not None and v != "":
        flags |= 0x0400
        parts.append(_short(v))
    v = p.reply_to
    if v is not None and v != "":
        flags |= 0x0200
        parts.append(_short_cached(v))
    v = p.expiration
    if v is not None and v != "":
        flags |= 0x0100
        parts.append(_short(v))
    v = p.message_id
    if v is not None and v != "":
        flags |= 0x0080
        parts.append(_short(v))
    v = p.timestamp
    if v is not None and v != "":
        if type(v) is not datetime or v.tzinfo is None:
            raise _Unusual
        flags |= 0x0040
        parts.append(_U64.pack(int(v.timestamp())))
    v = p.message_type
    if v is not None and v != "":
        flags |= 0x0020
        parts.append(_short_cached(v))
    v = p.user_id
    if v is not None and v != "":
        flags |= 0x0010
        parts.append(_short(v))
    v = p.app_id
    if v is not None and v != "":
        flags |= 0x0008
        parts.append(_short_cached(v))
    v = p.cluster_id
    if v is not None and v != "":
        flags |= 0x0004
        parts.append(_short(v))
    parts[0] = flags.to_bytes(2, "big")
    return b"".join(parts)


class _Properties(Basic.Properties):
    """``Basic.Properties`` with the fast ``marshal`` of the module docstring."""

    def marshal(self) -> bytes:
        try:
            return _marshal(self)
        except _Unusual:
            return super().marshal()


def to_pamqp(p: Properties) -> Basic.Properties:
    """The seam's properties as the pamqp properties aiormq publishes."""
    return _Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=p.headers,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=p.timestamp,
        message_type=p.type,
        user_id=p.user_id,
        app_id=p.app_id,
        cluster_id=p.cluster_id or "",
    )


def from_pamqp(p: Basic.Properties) -> Properties:
    """A delivery's pamqp properties as the seam's."""
    return Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=p.headers,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=p.timestamp,
        type=p.message_type,
        user_id=p.user_id,
        app_id=p.app_id,
        cluster_id=p.cluster_id,
    )
