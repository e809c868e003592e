"""The frames the broker sends most, decoded faster than pamqp, to the same objects: a
delivery's ``basic.deliver``, content header (its AMQP properties) and body, and the
``basic.ack``/``basic.nack`` that confirm publishes.

pamqp decodes every frame generically (a lookup per field, a copy of the rest of the frame per
field and per header-table entry, a validation per object), which made it the largest single cost
of consuming a message with Mmate's headers. ``decode`` reads these shapes in one pass with
precomputed ``struct`` readers and returns what ``pamqp.frame.unmarshal`` returns for the same
bytes: the same classes with the same values of the same types (timestamps, decimals, byte arrays
and nested header tables included).

It is stricter than pamqp: a length that runs past its frame, a string that is not UTF-8, a
timestamp ``datetime`` cannot hold, tables or arrays nested deeper than ``MAX_DEPTH``, a second
property-flags word, an unknown type or any other frame raise (``Unusual``, or the decoding's own
error), and the caller hands the frame to pamqp, which decodes it as it always did or fails (then
``frames.tolerant`` takes over). So the result is pamqp's for every input; a test compares the two
on generated frames and on random bytes.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pamqp import body, constants, header
from pamqp.commands import Basic

MAX_DEPTH = 16
"""Nesting of tables and arrays decoded here; deeper ones go to pamqp."""

_FIXED = struct.Struct(">HHQH")  # class id, weight, body size, first property-flags word
_FRAME = struct.Struct(">BHI")
_U8 = struct.Struct(">B")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">l")
_U32 = struct.Struct(">L")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_U32_AT = _U32.unpack_from
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DECIMAL = struct.Struct(">Bi")
_TEN = Decimal(10)


class Unusual(Exception):
    """Bytes this decoder leaves to pamqp."""


def _shortstr(data: bytes, at: int, end: int) -> tuple[str, int]:
    length = data[at]
    stop = at + 1 + length
    if stop > end:
        raise Unusual
    return data[at + 1 : stop].decode("utf-8"), stop


def _extent(data: bytes, at: int, end: int, depth: int = 0) -> tuple[int, int]:
    """Where the content of a value with a 4-byte length at ``at`` starts and ends (a long
    string, a byte array, a table or an array at nesting ``depth``)."""
    if depth > MAX_DEPTH or at + 4 > end:
        raise Unusual
    (length,) = _U32_AT(data, at)
    stop = at + 4 + length
    if stop > end:
        raise Unusual
    return at + 4, stop


def _long_bytes(data: bytes, at: int, end: int) -> tuple[bytes, int]:
    """The bytes of a value with a 4-byte length at ``at``, and the offset after them."""
    start, stop = _extent(data, at, end)
    return data[start:stop], stop


def _value(data: bytes, at: int, end: int, depth: int) -> tuple[Any, int]:
    """The table or array value whose type byte is at ``at``, and the offset after it."""
    if at >= end:
        raise Unusual
    kind = data[at]
    at += 1
    if kind == 0x53:  # S: long string
        raw, stop = _long_bytes(data, at, end)
        return raw.decode("utf-8"), stop
    if kind == 0x74:  # t: boolean
        if at + 1 > end:
            raise Unusual
        return data[at] != 0, at + 1
    if kind == 0x46:  # F: table
        return _table(data, at, end, depth + 1)
    if kind == 0x41:  # A: array
        return _array(data, at, end, depth + 1)
    reader = _FIXED_SIZE.get(kind)
    if reader is not None:
        size = reader.size
        if at + size > end:
            raise Unusual
        (number,) = reader.unpack_from(data, at)
        return number, at + size
    if kind == 0x54:  # T: timestamp
        return _timestamp(data, at, end)
    if kind == 0x44:  # D: decimal
        if at + 5 > end:
            raise Unusual
        places, raw = _DECIMAL.unpack_from(data, at)
        return Decimal(raw) * (_TEN**-places), at + 5
    if kind == 0x78:  # x: byte array
        raw, stop = _long_bytes(data, at, end)
        return bytearray(raw), stop
    if kind == 0x56 or kind == 0x00:  # V (void), and the undocumented NUL pamqp accepts
        return None, at
    raise Unusual


_FIXED_SIZE: dict[int, struct.Struct] = {
    0x62: _I8,  # b
    0x42: _U8,  # B
    0x73: _I16,  # s
    0x75: _U16,  # u
    0x49: _I32,  # I
    0x69: _U32,  # i
    0x6C: _I64,  # l
    0x4C: _I64,  # L (pamqp reads it signed)
    0x66: _F32,  # f
    0x64: _F64,  # d
}


def _table(data: bytes, at: int, end: int, depth: int) -> tuple[dict[str, Any], int]:
    at, stop = _extent(data, at, end, depth)
    table: dict[str, Any] = {}
    while at < stop:
        value_at = at + 1 + data[at]
        if value_at >= stop:
            raise Unusual
        key = data[at + 1 : value_at].decode("utf-8")
        if data[value_at] == 0x53 and value_at + 5 <= stop:  # S, inline: nearly every entry
            (size,) = _U32_AT(data, value_at + 1)
            at = value_at + 5 + size
            if at > stop:
                raise Unusual
            table[key] = data[value_at + 5 : at].decode("utf-8")
        else:
            table[key], at = _value(data, value_at, stop, depth)
    return table, stop


def _array(data: bytes, at: int, end: int, depth: int) -> tuple[list[Any], int]:
    at, stop = _extent(data, at, end, depth)
    items: list[Any] = []
    while at < stop:
        item, at = _value(data, at, stop, depth)
        items.append(item)
    return items, stop


def _octet(data: bytes, at: int, end: int) -> tuple[int, int]:
    if at + 1 > end:
        raise Unusual
    return data[at], at + 1


def _timestamp(data: bytes, at: int, end: int) -> tuple[datetime, int]:
    """pamqp reads a value beyond the year 2106 as milliseconds."""
    if at + 8 > end:
        raise Unusual
    (seconds,) = _U64.unpack_from(data, at)
    try:
        moment = datetime.fromtimestamp(
            seconds / 1000.0 if seconds > 0xFFFFFFFF else seconds, tz=UTC
        )
    except (OverflowError, ValueError, OSError):
        raise Unusual from None
    return moment, at + 8


def _headers(data: bytes, at: int, end: int) -> tuple[dict[str, Any], int]:
    return _table(data, at, end, 1)


_READERS = {
    "shortstr": _shortstr,
    "table": _headers,
    "octet": _octet,
    "timestamp": _timestamp,
}
_PROPERTIES: tuple[tuple[int, str, Any], ...] = tuple(
    (
        Basic.Properties.flags[name],
        name,
        _READERS[getattr(Basic.Properties, "_" + name)],
    )
    for name in Basic.Properties.__slots__
)
"""(flag, attribute, reader) per property, in pamqp's (the protocol's) order."""


_DELIVER = (60 << 16) | 60
_ACK = (60 << 16) | 80
_NACK = (60 << 16) | 120


def decode(frame: bytes) -> tuple[int, int, Any]:
    """``pamqp.frame.unmarshal``'s result for one whole frame (frame header, payload, end byte)
    of the shapes of the module docstring, or ``Unusual``."""
    size = len(frame)
    if size < 8:  # 7 frame-header bytes, the end byte
        raise Unusual
    frame_type, channel, length = _FRAME.unpack_from(frame, 0)
    end = constants.FRAME_HEADER_SIZE + length
    if not length or end + 1 > size or frame[end] != constants.FRAME_END:
        raise Unusual
    if frame_type == constants.FRAME_BODY:
        return end + 1, channel, body.ContentBody(frame[constants.FRAME_HEADER_SIZE : end])
    if frame_type == constants.FRAME_HEADER:
        return end + 1, channel, _content_header(frame, end)
    if frame_type == constants.FRAME_METHOD:
        return end + 1, channel, _method(frame, end)
    raise Unusual


def _method(frame: bytes, end: int) -> Any:
    at = constants.FRAME_HEADER_SIZE
    if at + 4 > end:
        raise Unusual
    (index,) = _U32.unpack_from(frame, at)
    at += 4
    if index == _DELIVER:
        deliver = Basic.Deliver()
        deliver.consumer_tag, at = _shortstr(frame, at, end)
        if at + 9 > end:
            raise Unusual
        (deliver.delivery_tag,) = _I64.unpack_from(frame, at)
        deliver.redelivered = frame[at + 8] & 1 != 0
        deliver.exchange, at = _shortstr(frame, at + 9, end)
        deliver.routing_key, at = _shortstr(frame, at, end)
        return deliver
    if index in (_ACK, _NACK):
        if at + 9 > end:
            raise Unusual
        (tag,) = _I64.unpack_from(frame, at)
        bits = frame[at + 8]
        if index == _ACK:
            ack = Basic.Ack()
            ack.delivery_tag, ack.multiple = tag, bits & 1 != 0
            return ack
        nack = Basic.Nack()
        nack.delivery_tag, nack.multiple, nack.requeue = tag, bits & 1 != 0, bits & 2 != 0
        return nack
    raise Unusual


def _content_header(frame: bytes, end: int) -> header.ContentHeader:
    if end - constants.FRAME_HEADER_SIZE < 14:  # class id, weight, body size, flags
        raise Unusual
    class_id, weight, body_size, flags = _FIXED.unpack_from(frame, constants.FRAME_HEADER_SIZE)
    if flags & 1:  # a second flags word: no AMQP 0-9-1 property needs one
        raise Unusual
    properties = Basic.Properties()
    at = constants.FRAME_HEADER_SIZE + 14
    for flag, name, reader in _PROPERTIES:
        if flags & flag:
            value, at = reader(frame, at, end)
            setattr(properties, name, value)
    content = header.ContentHeader(weight, body_size, properties)
    content.class_id = class_id
    return content


# -- encoding --------------------------------------------------------------------------------------

_PUBLISH = struct.Struct(">BHIIH")  # frame type, channel, size, method id, ticket
_ACK_FRAME = struct.Struct(">BHIIqB")  # frame type, channel, size, method id, tag, bits
_FRAME_END = bytes((constants.FRAME_END,))
_PUBLISH_ID = (60 << 16) | 40
_BITS = (b"\x00", b"\x01", b"\x02", b"\x03")
_exchanges: dict[str, bytes] = {}
"""Exchange names pamqp accepted (its ``Basic.Publish.validate``), encoded as short strings."""
_EXCHANGE_LIMIT = 4096


def encode(value: object, channel: int) -> bytes | None:
    """``pamqp.frame.marshal(value, channel)`` for a ``basic.publish`` to an exchange name
    pamqp accepted before, a ``basic.ack`` or a content body; None for anything else (a content
    header, say: its properties encode themselves, ``properties.py``), which pamqp encodes. No
    exception on this path: it runs for every frame a publish writes."""
    if type(value) is body.ContentBody:
        payload = value.value
        return _FRAME.pack(constants.FRAME_BODY, channel, len(payload)) + payload + _FRAME_END
    if type(value) is Basic.Publish:
        exchange = _exchanges.get(value.exchange)
        if exchange is None or value.ticket:
            return None
        key = value.routing_key.encode("utf-8")
        if len(key) > 255:
            return None
        mandatory, immediate = value.mandatory, value.immediate
        if type(mandatory) is not bool or type(immediate) is not bool:
            return None
        flags = _BITS[mandatory | immediate << 1]
        size = 6 + len(exchange) + 1 + len(key) + 1
        head = _PUBLISH.pack(constants.FRAME_METHOD, channel, size, _PUBLISH_ID, 0)
        return b"".join((head, exchange, _LENGTH[len(key)], key, flags, _FRAME_END))
    if type(value) is Basic.Ack:
        tag = value.delivery_tag
        if type(tag) is not int or not 0 <= tag < 1 << 63:
            return None
        multiple = value.multiple
        if type(multiple) is not bool:
            return None
        head = _ACK_FRAME.pack(constants.FRAME_METHOD, channel, 13, _ACK, tag, multiple)
        return head + _FRAME_END
    return None


def accepted_exchange(name: str) -> None:
    """Remember that pamqp encoded a ``basic.publish`` to ``name`` (so it passed validation)."""
    if name not in _exchanges:
        if len(_exchanges) >= _EXCHANGE_LIMIT:
            _exchanges.clear()
        raw = name.encode("utf-8")
        _exchanges[name] = _LENGTH[len(raw)] + raw


_LENGTH = tuple(bytes((n,)) for n in range(256))
