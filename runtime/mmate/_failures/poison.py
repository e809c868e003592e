"""Poison messages: bodies no handler may ever see, and the reason each is dead-lettered with.

Contract: ``check_body`` runs before anything parses a body and catches what the codec would not:
a body larger than the queue's ``max_message_bytes`` (``oversized``) and a body that is not strict
UTF-8 (``not-utf8``: ``json.loads`` of bytes would also accept UTF-16 and UTF-32, which the wire
format does not allow). The codec's ``DecodeError`` of a body it cannot read is named by
``decode_reason``. Every reason is a short constant written into ``x-mmate-dead-letter-reason``;
every poison message is permanent (dead-lettered at once, never retried, never requeued).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import DecodeError

OVERSIZED = "oversized"
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
