"""Delayed delivery without the plugin: the binary TTL cascade. ``DelayTopology`` (its 28 levels,
delivery exchange, ready and dead queues, or the plugin exchange), ``delay_seconds`` (a delay or
``schedule_at`` rounded up to whole seconds), ``bits`` / ``first_level`` (the routing key and the
level a message is published to), ``delayed`` (a message prepared for the cascade) and the
``x-mmate-delay-*`` header names. How the cascade works: docs/runtime/delays.md.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .._publishing.confirmed import Outgoing
from .._wire.envelope import Encoded
from .._wire.headers import copied_properties
from ..errors import MmateError

LEVELS = 28
MAX_DELAY_SECONDS = (1 << LEVELS) - 1
"""The longest delay the cascade serves: 2^28 - 1 s, about 8.5 years."""
PLUGIN_MAX_DELAY_MS = (1 << 32) - 1
"""The plugin keeps ``x-delay`` in 32 bits of milliseconds (about 49.7 days)."""
DEFAULT_PREFIX = "mmate.delay"

HEADER_EXCHANGE = "x-mmate-delay-exchange"
HEADER_ROUTING_KEY = "x-mmate-delay-routing-key"
HEADER_EXPIRATION = "x-mmate-delay-expiration"
HEADER_DUE = "x-mmate-delay-due"
"""When the message is due (RFC 3339, UTC): for logs and the dead queue, not used for routing."""
HEADER_FAILURE = "x-mmate-delay-failure"
"""Set on messages in the dead queue: why the relay could not deliver it."""

DelayMode = Literal["cascade", "plugin"]

_QUORUM: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def delay_seconds(
    delay: float | timedelta | None = None,
    schedule_at: datetime | None = None,
    *,
    now: datetime | None = None,
) -> int:
    """The delay in whole seconds, rounded up, for ``delay`` or ``schedule_at`` (exactly one).

    ``schedule_at`` must be timezone-aware; a time in the past means "now" (0). Raises
    ``MmateError`` for a negative delay, both or neither given, or more than ``MAX_DELAY_SECONDS``.
    """
    if (delay is None) == (schedule_at is None):
        raise MmateError("give exactly one of delay and schedule_at")
    if schedule_at is not None:
        if schedule_at.tzinfo is None or schedule_at.utcoffset() is None:
            raise MmateError(
                f"schedule_at must be timezone-aware (e.g. datetime.now(UTC)), got {schedule_at!r}"
            )
        seconds = (schedule_at - (now or datetime.now(UTC))).total_seconds()
        seconds = max(seconds, 0.0)
    else:
        assert delay is not None
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not seconds >= 0:  # also rejects NaN
            raise MmateError(f"delay must not be negative, got {delay!r}")
    if math.isinf(seconds):
        raise MmateError(f"delay {delay!r} is infinite")
    # Round up, but ignore float noise below a microsecond (0.1 + 0.2 s is not 1 s late).
    whole = math.ceil(seconds - 1e-6) if seconds > 1e-6 else 0
    if whole > MAX_DELAY_SECONDS:
        raise MmateError(
            f"a delay of {whole} s is longer than the cascade's maximum of {MAX_DELAY_SECONDS} s "
            "(about 8.5 years)"
        )
    return whole


def bits(seconds: int) -> str:
    """The 28 binary digits of ``seconds``, dot-separated, most significant first."""
    if not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise MmateError(f"delay {seconds} s is outside 0..{MAX_DELAY_SECONDS}")
    return ".".join(format(seconds, f"0{LEVELS}b"))


def first_level(seconds: int) -> int | None:
    """The level a delay is published to (its highest set bit), or None for 0 (delivery)."""
    return seconds.bit_length() - 1 if seconds > 0 else None


def _pattern(level: int, bit: str) -> str:
    """A topic pattern matching keys whose bit ``level`` is ``bit`` (any destination after)."""
    return "*." * (LEVELS - 1 - level) + bit + ".#"


def _destination_word(exchange: str, routing_key: str) -> str:
    """A readable tail for the routing key; the headers are what the relay uses."""
    text = f"{exchange or 'amq.default'}.{routing_key}" if routing_key else exchange
    # A routing key holds at most 255 bytes; the 28 bits and their dots take 56.
    return (text or "amq.default").encode()[:190].decode("utf-8", "ignore")


class DelayTopology:
    """The names and declarations of the cascade under one ``prefix``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix:
            raise MmateError("the delay prefix must not be empty")
        self.prefix = prefix
        self.delivery = f"{prefix}.delivery"
        self.ready = f"{prefix}.ready"
        self.dead = f"{prefix}.dead"
        self.plugin = f"{prefix}.plugin"
        self.entry_exchanges = frozenset(
            [self.level(level) for level in range(LEVELS)] + [self.delivery, self.plugin]
        )

    def level(self, level: int) -> str:
        """The exchange and the queue of ``level`` (same name; different AMQP namespaces)."""
        return f"{self.prefix}.{level}"

    def below(self, level: int) -> str:
        """Where level ``level`` hands on: the exchange one level down, or delivery."""
        return self.level(level - 1) if level > 0 else self.delivery

    def exchanges(self) -> list[tuple[str, Literal["topic"], dict[str, Any]]]:
        """(name, type, arguments) of every cascade exchange, highest level first."""
        out: list[tuple[str, Literal["topic"], dict[str, Any]]] = [
            (self.level(level), "topic", {}) for level in reversed(range(LEVELS))
        ]
        out.append((self.delivery, "topic", {}))
        return out

    def queues(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, arguments) of every cascade queue, each a durable quorum queue."""
        out: list[tuple[str, dict[str, Any]]] = []
        for level in reversed(range(LEVELS)):
            args = dict(_QUORUM)
            args["x-message-ttl"] = (1 << level) * 1000
            args["x-dead-letter-exchange"] = self.below(level)
            out.append((self.level(level), args))
        # A message the relay gives up on (only possible with a delivery limit, RabbitMQ 4's
        # default for quorum queues) goes to the dead queue, never nowhere.
        ready = dict(_QUORUM)
        ready["x-dead-letter-exchange"] = ""
        ready["x-dead-letter-routing-key"] = self.dead
        out.append((self.ready, ready))
        out.append((self.dead, {"x-queue-type": "quorum"}))
        return out

    def queue_bindings(self) -> list[tuple[str, str, str]]:
        """(exchange, queue, pattern) bindings."""
        out = [
            (self.level(level), self.level(level), _pattern(level, "1")) for level in range(LEVELS)
        ]
        out.append((self.delivery, self.ready, "#"))
        return out

    def exchange_bindings(self) -> list[tuple[str, str, str]]:
        """(source exchange, destination exchange, pattern): bit L = 0 goes one level down."""
        return [
            (self.level(level), self.below(level), _pattern(level, "0")) for level in range(LEVELS)
        ]

    def route(self, seconds: int, exchange: str, routing_key: str) -> tuple[str, str]:
        """(exchange, routing key) a message delayed ``seconds`` is published to."""
        key = f"{bits(seconds)}.{_destination_word(exchange, routing_key)}"
        level = first_level(seconds)
        return (self.delivery if level is None else self.level(level)), key


def delayed(
    out: Outgoing,
    seconds: int,
    topology: DelayTopology,
    mode: DelayMode = "cascade",
    *,
    now: datetime | None = None,
) -> Outgoing:
    """``out`` rewritten to enter the delay infrastructure (cascade or plugin exchange)."""
    props = out.encoded.properties
    headers: dict[str, Any] = dict(props.headers or {})
    headers[HEADER_EXCHANGE] = out.exchange
    headers[HEADER_ROUTING_KEY] = out.routing_key
    due = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    headers[HEADER_DUE] = due.isoformat(timespec="seconds").replace("+00:00", "Z")
    if props.expiration is not None:
        headers[HEADER_EXPIRATION] = props.expiration
    if mode == "plugin":
        ms = seconds * 1000
        if ms > PLUGIN_MAX_DELAY_MS:
            raise MmateError(
                f"a delay of {seconds} s is longer than the delayed-message plugin accepts "
                f"({PLUGIN_MAX_DELAY_MS // 1000} s); use delay_mode='cascade'"
            )
        headers["x-delay"] = ms
        exchange = topology.plugin
        key = _destination_word(out.exchange, out.routing_key)
    else:
        exchange, key = topology.route(seconds, out.exchange, out.routing_key)
    encoded = Encoded(
        out.encoded.body,
        copied_properties(props, headers),
        out.encoded.message_id,
        out.encoded.correlation_id,
        out.encoded.type,
    )
    return Outgoing(encoded, exchange, key)
