"""The ``expiration`` property (a per-message TTL) as RabbitMQ reads it: one parser for the
in-memory broker, which enforces it, and for the delay relay, which copies a TTL from an
untrusted header and must know before publishing whether the broker will refuse it."""

from __future__ import annotations

MAX_TTL_MS = 315_360_000_000
"""RabbitMQ's largest TTL and expiry (ten years in milliseconds)."""

_MAX_DIGITS = len(str(MAX_TTL_MS))


def parse_expiration(text: str) -> int | str | None:
    """A per-message TTL in milliseconds from an ``expiration`` value, as RabbitMQ reads it: an
    int, None for an empty one (no TTL), or RabbitMQ's reason (a str) why it is invalid. Any
    length is safe: a number of more digits than the largest TTL is refused unread."""
    if text == "":
        return None
    digits_at = 1 if text[:1] in "+-" else 0
    end = digits_at
    while end < len(text) and text[end].isascii() and text[end].isdigit():
        end += 1
    if end == digits_at:
        return "no_integer"
    if end < len(text):
        return f'{{leftover_string,"{text[end:]}"}}'
    digits = text[digits_at:end].lstrip("0") or "0"
    # int() of thousands of digits is slow (and limited), and refused anyway: never read.
    shown = digits if len(digits) <= _MAX_DIGITS else digits[:20] + "..."
    if text[0] == "-" and digits != "0":
        return f"{{value_negative,-{shown}}}"
    if len(digits) > _MAX_DIGITS or int(digits) > MAX_TTL_MS:
        return f"{{value_too_large,{shown}}}"
    return int(digits)
