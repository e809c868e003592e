"""Frames from the broker that aiormq cannot decode, decoded anyway, so that one hostile message
cannot stop a consumer.

aiormq decodes every frame with ``pamqp.frame.unmarshal`` inside its connection's reader and treats
a failure as fatal: the connection closes, the unacked message goes back to the head of its queue,
and the client that reconnects gets it again, forever. A producer needs nothing special to cause
this: a routing key that is not UTF-8, a header key that is not UTF-8, an AMQP timestamp beyond the
year 9999, or a header table nested a few thousand levels deep are all accepted by RabbitMQ and
fail in pamqp.

``install()`` (called once when the aiormq backend is first used) wraps ``pamqp.frame.unmarshal``:
frames that decode are untouched; when decoding fails,

* a **content header** frame (the message's properties) is decoded with its fixed part only (body
  size, which the reader needs to assemble the body) and properties holding just the header
  ``x-mmate-undecodable-properties`` with the reason; the consumer dead-letters such a message as
  poison (reason ``invalid-properties``), its body byte for byte;
* a ``basic.deliver``, ``basic.get-ok`` or ``basic.return`` frame whose short strings are not UTF-8
  is decoded with replacement characters (the routing key then reads ``rk.\ufffd``);
* anything else fails as before (only the broker writes those frames).

Every frame is first given to ``fast_frames.decode``, which decodes the most frequent ones
(deliveries, their properties and bodies, publish confirms) to the same objects as pamqp, faster;
whatever it does not decode goes to pamqp as before. ``fast`` does the same for encoding
(``basic.publish``, ``basic.ack``, bodies) around ``pamqp.frame.marshal``.

This is the one place where mmate changes how a library behaves; it only ever turns a fatal
error into a decoded frame, and decodes the others to what pamqp would, for every user of pamqp in
the process.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pamqp.frame
from pamqp import commands, constants, header

from ..._failures.poison import UNDECODABLE_PROPERTIES
from . import fast_frames

_DELIVER = (60, 60)
_GET_OK = (60, 71)
_RETURN = (60, 50)

Unmarshal = Callable[[bytes], tuple[int, int, Any]]


class _Reader:
    """Reads the fields of a method frame's arguments, short strings with replacement."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def shortstr(self) -> str:
        length = self._data[self._at]
        raw = self._data[self._at + 1 : self._at + 1 + length]
        self._at += 1 + length
        return raw.decode("utf-8", "replace")

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        (value,) = struct.unpack_from(fmt, self._data, self._at)
        self._at += size
        return value


def _method(payload: bytes) -> Any:
    class_id, method_id = struct.unpack_from(">HH", payload, 0)
    args = _Reader(payload[4:])
    if (class_id, method_id) == _DELIVER:
        return commands.Basic.Deliver(
            consumer_tag=args.shortstr(),
            delivery_tag=args.unpack(">Q"),
            redelivered=bool(args.unpack(">B") & 1),
            exchange=args.shortstr(),
            routing_key=args.shortstr(),
        )
    if (class_id, method_id) == _GET_OK:
        return commands.Basic.GetOk(
            delivery_tag=args.unpack(">Q"),
            redelivered=bool(args.unpack(">B") & 1),
            exchange=args.shortstr(),
            routing_key=args.shortstr(),
            message_count=args.unpack(">I"),
        )
    if (class_id, method_id) == _RETURN:
        return commands.Basic.Return(
            reply_code=args.unpack(">H"),
            reply_text=args.shortstr(),
            exchange=args.shortstr(),
            routing_key=args.shortstr(),
        )
    return None


def _content_header(payload: bytes, reason: str) -> header.ContentHeader:
    _class_id, weight, body_size = struct.unpack_from(">HHQ", payload, 0)
    properties = commands.Basic.Properties(headers={UNDECODABLE_PROPERTIES: reason[:500]})
    return header.ContentHeader(weight, body_size, properties)


def tolerant(original: Unmarshal) -> Unmarshal:
    """``original`` (``pamqp.frame.unmarshal``), with the fallbacks of the module docstring."""

    def unmarshal(data_in: bytes) -> tuple[int, int, Any]:
        try:
            return fast_frames.decode(data_in)
        except Exception:  # pamqp decodes it (or fails) below
            pass
        try:
            return original(data_in)
        except (Exception, RecursionError) as error:
            frame_type, channel, size = pamqp.frame.frame_parts(data_in)
            if size is None or len(data_in) < constants.FRAME_HEADER_SIZE + size + 1:
                raise
            payload = data_in[constants.FRAME_HEADER_SIZE : constants.FRAME_HEADER_SIZE + size]
            consumed = constants.FRAME_HEADER_SIZE + size + 1
            try:
                if frame_type == constants.FRAME_HEADER:
                    reason = f"{type(error).__name__}: {error}"
                    return consumed, channel, _content_header(payload, reason)
                if frame_type == constants.FRAME_METHOD:
                    method = _method(payload)
                    if method is not None:
                        return consumed, channel, method
            except (Exception, RecursionError):
                pass
            raise

    unmarshal.__wrapped__ = original  # type: ignore[attr-defined]
    return unmarshal


Marshal = Callable[[Any, int], bytes]


def fast(original: Marshal) -> Marshal:
    """``original`` (``pamqp.frame.marshal``), encoding the frames ``fast_frames.encode`` knows
    to the same bytes itself."""

    def marshal(frame_value: Any, channel_id: int) -> bytes:
        try:
            data = fast_frames.encode(frame_value, channel_id)
        except Exception:  # pamqp encodes it (or raises its own error) below
            data = None
        if data is not None:
            return data
        data = original(frame_value, channel_id)
        if type(frame_value) is commands.Basic.Publish:
            fast_frames.accepted_exchange(frame_value.exchange)  # pamqp validated the name
        return data

    marshal.__wrapped__ = original  # type: ignore[attr-defined]
    return marshal


def install() -> None:
    """Wrap ``pamqp.frame.unmarshal`` and ``pamqp.frame.marshal`` (once per process)."""
    current = pamqp.frame.unmarshal
    if getattr(current, "__wrapped__", None) is None:
        pamqp.frame.unmarshal = tolerant(current)  # type: ignore[assignment]
    encoder = pamqp.frame.marshal
    if getattr(encoder, "__wrapped__", None) is None:
        pamqp.frame.marshal = fast(encoder)  # type: ignore[assignment]
