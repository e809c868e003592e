"""Broker-side retry, pure functions (no I/O; ``consumer`` publishes, ``decide`` decides): the
attempt of a delivery (``attempt_of``: ``x-mmate-attempt`` or the queue's own ``x-death``
rejections, the larger), the wait-queue tier of a retry (``backoff_tier``, ``tier_at_least``,
``tier_at_most``; jitter), the headers of a retried message (``retry_headers``) and the removal
of forged death headers. The rules: docs/runtime/failures.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from .._contract.topology import RetryPolicy
from .._wire.headers import note_dropped

ATTEMPT = "x-mmate-attempt"
FIRST_FAILURE = "x-mmate-first-failure"
LAST_FAILURE = "x-mmate-last-failure"
LAST_ERROR = "x-mmate-last-error"
RETRY_DELAY = "x-mmate-retry-delay-ms"
ORIGINAL_EXCHANGE = "x-mmate-original-exchange"
ORIGINAL_ROUTING_KEY = "x-mmate-original-routing-key"

MAX_ERROR_TEXT = 1000
"""Longest error text written into a header (characters)."""


MAX_ATTEMPT = 1_000_000
"""The largest attempt number read from a delivery's headers; anything above is clamped to it
(far beyond any retry policy, and always encodable in an AMQP header)."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


def count_of(value: Any) -> int | None:
    """A non-negative count read from an untrusted header value, clamped to ``MAX_ATTEMPT``;
    None when it is not a count. Integers (not booleans), integral finite floats, and decimal
    strings or bytes are counts; anything else (``1.5``, ``"abc"``, ``NaN``, a table) is not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = MAX_ATTEMPT + 1 if abs(value) > MAX_ATTEMPT else int(value)
    elif isinstance(value, str | bytes):
        text = _text(value).strip()
        if not text.isascii() or not text.isdigit():
            return None
        number = MAX_ATTEMPT + 1 if len(text) > 7 else int(text)
    else:
        return None
    return min(max(number, 0), MAX_ATTEMPT)


def death_entries(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The entries of a delivery's ``x-death`` header that are tables (newest first, as RabbitMQ
    writes them); anything else in it is ignored."""
    value = headers.get("x-death")
    if not isinstance(value, list | tuple):
        return []
    return [entry for entry in value[:100] if isinstance(entry, Mapping)]


def _rejections(headers: Mapping[str, Any], queue: str) -> int:
    """How often the broker dead-lettered this message from ``queue`` (``x-death`` entries),
    clamped to ``MAX_ATTEMPT``."""
    total = 0
    for entry in death_entries(headers):  # RabbitMQ keeps one entry per queue and reason
        if _text(entry.get("queue")) != queue:
            continue
        if _text(entry.get("reason")) not in ("rejected", "delivery_limit"):
            continue
        count = count_of(entry.get("count", 1))
        total += count if count else 1
    return min(total, MAX_ATTEMPT)


_DEATH_REASONS = frozenset({"rejected", "expired", "maxlen", "delivery_limit"})
_DEATH_TEXT_HEADERS = (
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


def _sound_death(entry: Any) -> bool:
    """An ``x-death`` entry shaped as RabbitMQ writes it."""
    if not isinstance(entry, Mapping):
        return False
    count, keys, reason = entry.get("count"), entry.get("routing-keys", []), entry.get("reason")
    return (
        isinstance(count, int)
        and not isinstance(count, bool)
        and 0 <= count < 2**63
        and isinstance(reason, str)
        and reason in _DEATH_REASONS
        and isinstance(entry.get("queue"), str)
        and isinstance(entry.get("exchange", ""), str)
        and isinstance(keys, list | tuple)
        and all(isinstance(k, str) for k in keys)
        and isinstance(entry.get("time", datetime.now()), datetime)
    )


def without_forged_deaths(headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` (changed in place) without broker dead-letter headers that RabbitMQ did not
    write: an ``x-death`` that is not a list of entries shaped like RabbitMQ's, or an
    ``x-first-death-*`` / ``x-last-death-*`` that is not a string. A message republished with a
    forged ``x-death`` into a queue that dead-letters (a wait queue) is dropped by RabbitMQ when
    it dead-letters it, so these never go back on the wire; their names are listed in
    ``x-mmate-dropped-headers``."""
    dropped: list[str] = []
    deaths = headers.get("x-death")
    if deaths is not None and not (
        isinstance(deaths, list | tuple) and len(deaths) <= 100 and all(map(_sound_death, deaths))
    ):
        del headers["x-death"]
        dropped.append("x-death")
    for name in _DEATH_TEXT_HEADERS:
        value = headers.get(name)
        if value is not None and not isinstance(value, str):
            del headers[name]
            dropped.append(name)
    note_dropped(headers, dropped)
    return headers


def without_death_cycles(headers: dict[str, Any], queue: str) -> dict[str, Any]:
    """``headers`` (changed in place) without the ``x-death`` entries that would make RabbitMQ
    drop the message as a dead-letter cycle when a wait queue dead-letters it back to ``queue``.

    RabbitMQ (``rabbit_dead_letter``, cycle detection) drops a message dead-lettered for any
    reason but ``rejected`` into a queue whose newest ``x-death`` entry, and every newer entry,
    records no rejection: to the broker that is a loop with nobody in it. A message that had
    expired in ``queue`` (or overflowed it, or hit its delivery limit) and was replayed into it
    carries such an entry, and its retry through a wait queue would vanish. So the entries of
    ``queue`` with another reason than ``rejected`` are left out (the attempt number travels in
    ``x-mmate-attempt``) and named in ``x-mmate-dropped-headers``."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list | tuple):
        return headers
    kept, dropped = [], []
    for entry in deaths:
        if (
            isinstance(entry, Mapping)
            and _text(entry.get("queue")) == queue
            and _text(entry.get("reason")) != "rejected"
        ):
            dropped.append(f"x-death entry {_text(entry.get('reason'))} from {queue}")
        else:
            kept.append(entry)
    if dropped:
        if kept:
            headers["x-death"] = kept
        else:
            del headers["x-death"]
        note_dropped(headers, dropped)
    return headers


def attempt_of(headers: Mapping[str, Any] | None, queue: str) -> int:
    """The attempt number of a delivery from ``queue`` (see the module docstring), between 1 and
    ``MAX_ATTEMPT`` whatever the headers hold."""
    if not headers or (ATTEMPT not in headers and "x-death" not in headers):
        return 1  # a first delivery: neither stamped nor dead-lettered (the common case)
    stamped = count_of(headers.get(ATTEMPT)) or 1
    return min(max(stamped, 1 + _rejections(headers, queue)), MAX_ATTEMPT)


def nominal_delay_ms(policy: RetryPolicy, attempt: int) -> int:
    """The spec's delay after a failure of ``attempt`` (before attempt ``attempt + 1``)."""
    if not policy.delays_ms:
        return policy.initial_delay_ms
    return policy.delays_ms[min(max(attempt, 1), len(policy.delays_ms)) - 1]


def tier_at_most(tiers: Collection[int], delay_ms: float) -> int:
    """The largest tier not above ``delay_ms``, or the smallest tier if all are above it."""
    ordered = sorted(tiers)
    if not ordered:
        raise ValueError("no wait-queue tiers")
    below = [t for t in ordered if t <= delay_ms]
    return below[-1] if below else ordered[0]


def tier_at_least(tiers: Collection[int], delay_ms: float) -> int:
    """The smallest tier of at least ``delay_ms``, or the largest tier if all are below it."""
    ordered = sorted(tiers)
    if not ordered:
        raise ValueError("no wait-queue tiers")
    above = [t for t in ordered if t >= delay_ms]
    return above[0] if above else ordered[-1]


def backoff_tier(
    policy: RetryPolicy, tiers: Collection[int], attempt: int, rng: random.Random | None = None
) -> int:
    """The wait-queue tier for a retry after a failure of ``attempt`` (jittered if the policy
    says so)."""
    delay: float = nominal_delay_ms(policy, attempt)
    if policy.jitter:
        delay *= (rng or random).uniform(0.5, 1.5)
    return tier_at_most(tiers, delay)


def iso(moment: datetime) -> str:
    """A header timestamp: RFC 3339 in UTC with milliseconds and ``Z``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def safe_text(value: object) -> str:
    """``str(value)`` as text every wire takes: a lone surrogate (``os.fsdecode`` of a bad file
    name, say) shown as ``\\udcff``, which UTF-8 could not carry; a placeholder when its
    ``__str__`` raises (an exception's, say)."""
    try:
        text = str(value)
    except Exception:
        return f"<{type(value).__name__}: str() of it raised>"
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_text(error: BaseException) -> str:
    """``Class: text`` of an error, truncated to ``MAX_ERROR_TEXT`` characters."""
    text = f"{type(error).__name__}: {safe_text(error)}"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def retry_headers(
    original: Mapping[str, Any] | None,
    *,
    next_attempt: int,
    delay_ms: int,
    error: BaseException,
    now: datetime,
    exchange: str,
    routing_key: str,
    queue: str,
) -> dict[str, Any]:
    """The AMQP headers of a message retried through a wait queue that dead-letters it back to
    ``queue`` (see the module docstring)."""
    headers: dict[str, Any] = without_death_cycles(
        without_forged_deaths(dict(original) if original else {}), queue
    )
    stamp = iso(now)
    headers.setdefault(FIRST_FAILURE, stamp)
    headers.setdefault(ORIGINAL_EXCHANGE, exchange)
    headers.setdefault(ORIGINAL_ROUTING_KEY, routing_key)
    headers[ATTEMPT] = next_attempt
    headers[LAST_FAILURE] = stamp
    headers[LAST_ERROR] = error_text(error)
    headers[RETRY_DELAY] = delay_ms
    return headers
