"""Poison messages: bodies no handler may ever see, and the reason each is dead-lettered with.

Contract: ``check_body`` runs before anything parses a body and catches what the codec would not:
a body larger than the queue's ``max_message_bytes`` (``oversized``) and a body that is not strict
UTF-8 (``not-utf8``: ``json.loads`` of bytes would also accept UTF-16 and UTF-32, which the wire
format does not allow). The codec's ``DecodeError`` of a body it cannot read is named by
``decode_reason``. Every reason is a short constant written into ``x-mmate-dead-letter-reason``;
every poison message is permanent (dead-lettered at once, never retried, never requeued).
"""

from __future__ import annotations

from .errors import DecodeError

OVERSIZED = "oversized"
NOT_UTF8 = "not-utf8"
INVALID_JSON = "invalid-json"
NOT_AN_ENVELOPE = "not-an-envelope"
NO_TYPE = "no-type"
UNKNOWN_TYPE = "unknown-type"
VALIDATION_FAILED = "validation-failed"
UNDECODABLE = "undecodable"
"""A ``DecodeError`` whose text no rule below recognises (still poison)."""

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
    }
)


def check_body(body: bytes, max_bytes: int | None, queue: str) -> tuple[str, DecodeError] | None:
    """``(reason, error)`` when ``body`` is oversized or not UTF-8, else None."""
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
