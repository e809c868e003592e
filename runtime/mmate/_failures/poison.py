"""Poison messages: bodies no handler may ever see, and the reason each is dead-lettered with.

Contract: ``readable_body`` runs before anything parses a body: it decodes a compressed body by its
``content_encoding`` (``_wire.compression``, bounded by the decoded-size limit: ``oversized``,
``unknown-encoding``, ``bad-compression``), then ``check_body`` catches what the codec would not: a
body larger than the queue's ``max_message_bytes`` (``oversized``; a compressed body counts by its
decoded size) and a body that is not strict UTF-8 (``not-utf8``: ``json.loads`` of bytes would also
accept UTF-16 and UTF-32, which the wire format does not allow). The codec's ``DecodeError`` of a
body it cannot read is named by ``decode_reason``. Every reason is a short constant written into
``x-mmate-dead-letter-reason``; every poison message is permanent (dead-lettered at once, never
retried, never requeued).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._wire import compression
from ..errors import DecodeError

OVERSIZED = "oversized"
UNKNOWN_ENCODING = "unknown-encoding"
"""A ``content_encoding`` this runtime does not decode (or ``zstd`` without the extra)."""
BAD_COMPRESSION = "bad-compression"
"""A compressed body that is corrupt, truncated, or has bytes after its stream."""
NOT_UTF8 = "not-utf8"
INVALID_JSON = "invalid-json"
NOT_AN_ENVELOPE = "not-an-envelope"
NO_TYPE = "no-type"
UNKNOWN_TYPE = "unknown-type"
VALIDATION_FAILED = "validation-failed"
UNDECODABLE = "undecodable"
"""A ``DecodeError`` whose text no rule below recognises (still poison)."""
INVALID_PROPERTIES = "invalid-properties"
"""The AMQP properties (headers included) of the delivery could not be decoded; the transport
delivered the body with the marker header ``UNDECODABLE_PROPERTIES`` instead of them."""
INTERNAL_ERROR = "internal-error"
"""Processing the delivery raised where nothing should (a bug, or an interceptor's error outside
the handler); it is dead-lettered rather than left unsettled."""

UNDECODABLE_PROPERTIES = "x-mmate-undecodable-properties"
"""Set by the transport, in place of properties it could not decode, to say why."""

POISON_REASONS = frozenset(
    {
        OVERSIZED,
        UNKNOWN_ENCODING,
        BAD_COMPRESSION,
        NOT_UTF8,
        INVALID_JSON,
        NOT_AN_ENVELOPE,
        NO_TYPE,
        UNKNOWN_TYPE,
        VALIDATION_FAILED,
        UNDECODABLE,
        INVALID_PROPERTIES,
        INTERNAL_ERROR,
    }
)


def check_body(
    body: bytes, max_bytes: int | None, queue: str, headers: Mapping[str, Any] | None = None
) -> tuple[str, DecodeError] | None:
    """``(reason, error)`` when the delivery's properties could not be decoded (``headers`` holds
    the transport's ``UNDECODABLE_PROPERTIES`` marker), or ``body`` is oversized or not UTF-8;
    else None."""
    if headers and UNDECODABLE_PROPERTIES in headers:
        return INVALID_PROPERTIES, DecodeError(
            f"the AMQP properties could not be decoded ({headers[UNDECODABLE_PROPERTIES]}); "
            "they were dropped, the body is kept as it was"
        )
    if max_bytes is not None and len(body) > max_bytes:
        return OVERSIZED, DecodeError(
            f"body of {len(body)} bytes exceeds the limit of {max_bytes} bytes of queue {queue!r}"
        )
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return NOT_UTF8, DecodeError(
                f"body is not UTF-8 (byte {exc.start}: {body[exc.start : exc.start + 1]!r})"
            )
    return None


def readable_body(
    body: bytes,
    max_bytes: int | None,
    queue: str,
    headers: Mapping[str, Any] | None = None,
    *,
    content_encoding: str | None = None,
    inflate_limit: int,
) -> bytes | tuple[str, DecodeError]:
    """The body to parse (decoded from its ``content_encoding``, inflating at most
    ``max_bytes`` when the queue has one, else ``inflate_limit`` bytes), or ``(reason, error)``
    when it is poison (``check_body`` on the decoded body, after the properties marker)."""
    if headers and UNDECODABLE_PROPERTIES in headers:
        content_encoding = None  # dropped with the other properties: check_body says so
    if not compression.is_identity(content_encoding):
        limit = max_bytes if max_bytes is not None else inflate_limit
        try:
            body = compression.decompress(body, content_encoding, limit=limit)
        except compression.Unreadable as exc:
            text = exc.text
            if exc.reason == OVERSIZED:
                whose = (
                    f"max_message_bytes of queue {queue!r}"
                    if max_bytes is not None
                    else "the client's max_decompressed_bytes"
                )
                text = f"{text}; the limit is {whose}"
            return exc.reason, DecodeError(text)
    bad = check_body(body, max_bytes, queue, headers)
    return body if bad is None else bad


# Start of the codec's DecodeError text -> reason (codec.parse).
_DECODE_TEXTS: tuple[tuple[str, str], ...] = (
    ("body is not JSON", INVALID_JSON),
    ("body is JSON", NOT_AN_ENVELOPE),
    ("envelope has no type", NO_TYPE),
    ("envelope payload is not an object", NOT_AN_ENVELOPE),
)


def decode_reason(error: DecodeError) -> str:
    """The reason of a ``DecodeError`` raised while parsing an envelope."""
    text = error.reason
    for prefix, reason in _DECODE_TEXTS:
        if text.startswith(prefix):
            return reason
    return UNDECODABLE
