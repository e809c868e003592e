"""Dead-letter queues: ``target_of`` (where a queue's dead letters go: its own
``x-dead-letter-*`` arguments exactly as the broker would use them, else its
``dead_letter_queue``), ``dead_letter_headers`` (the ``x-mmate-*`` headers that say why; the
retry-only ones and a per-message ``expiration`` removed) and ``verify_routes`` (the passive
startup check that the dead-letter route and retry wait queues exist; only the exchange of a
route through an exchange can be checked). The headers and the rules: docs/runtime/failures.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._contract.topology import QueueDef
from .._topology.exists import Prober
from .._transport.connection import Connection
from ..errors import EntityNotFound
from . import retry

log = logging.getLogger("mmate.deadletter")

REASON = "x-mmate-dead-letter-reason"
ERROR_CLASS = "x-mmate-error-class"
ERROR_MESSAGE = "x-mmate-error-message"
HANDLER = "x-mmate-handler"
ATTEMPTS = "x-mmate-attempts"
ORIGINAL_QUEUE = "x-mmate-original-queue"
ORIGINAL_EXPIRATION = "x-mmate-original-expiration"
FIRST_FAILURE = retry.FIRST_FAILURE
LAST_FAILURE = retry.LAST_FAILURE
ORIGINAL_EXCHANGE = retry.ORIGINAL_EXCHANGE
ORIGINAL_ROUTING_KEY = retry.ORIGINAL_ROUTING_KEY

PERMANENT_ERROR = "permanent-error"
RETRIES_EXHAUSTED = "retries-exhausted"

_RETRY_ONLY = (retry.ATTEMPT, retry.RETRY_DELAY, retry.LAST_ERROR)


@dataclass(frozen=True, slots=True)
class Target:
    """Where dead letters of a queue are published."""

    exchange: str
    routing_key: str | None
    """None: the message's original routing key (a dead-letter exchange without a routing key)."""
    queue: str | None
    """The dead-letter queue when the route is the default exchange, else None (unknown)."""

    def describe(self) -> str:
        if self.queue is not None:
            return f"dead-letter queue {self.queue!r}"
        key = "its routing key" if self.routing_key is None else repr(self.routing_key)
        return f"dead-letter exchange {self.exchange!r} with {key}"


def target_of(queue: QueueDef | None) -> Target | None:
    """The dead-letter route of ``queue`` (see the module docstring)."""
    if queue is None:
        return None
    args = queue.arguments
    if "x-dead-letter-exchange" in args:
        exchange = str(args["x-dead-letter-exchange"])
        key = args.get("x-dead-letter-routing-key")
        routing_key = str(key) if key is not None else None
        dlq = routing_key if exchange == "" else None
        return Target(exchange, routing_key, dlq)
    if queue.dead_letter_queue:
        return Target("", queue.dead_letter_queue, queue.dead_letter_queue)
    return None


def dead_letter_headers(
    original: Mapping[str, Any] | None,
    *,
    reason: str,
    error: BaseException,
    handler: str,
    attempts: int,
    now: datetime,
    exchange: str,
    routing_key: str,
    queue: str,
    expiration: str | None = None,
) -> dict[str, Any]:
    """The AMQP headers of a dead-lettered message (see the module docstring)."""
    headers: dict[str, Any] = retry.without_forged_deaths(dict(original) if original else {})
    for name in _RETRY_ONLY:
        headers.pop(name, None)
    stamp = retry.iso(now)
    headers[REASON] = reason
    headers[ERROR_CLASS] = type(error).__name__
    text = retry.safe_text(error)
    if len(text) > retry.MAX_ERROR_TEXT:
        text = text[: retry.MAX_ERROR_TEXT - 3] + "..."
    headers[ERROR_MESSAGE] = text
    headers[HANDLER] = handler
    headers[ATTEMPTS] = attempts
    headers.setdefault(FIRST_FAILURE, stamp)
    headers[LAST_FAILURE] = stamp
    headers.setdefault(ORIGINAL_EXCHANGE, exchange)
    headers.setdefault(ORIGINAL_ROUTING_KEY, routing_key)
    headers[ORIGINAL_QUEUE] = queue
    if expiration:
        headers[ORIGINAL_EXPIRATION] = expiration
    return headers


async def verify_routes(connection: Connection, queue: QueueDef) -> None:
    """Check passively that the dead-letter route and wait queues of ``queue`` exist."""
    target = target_of(queue)
    if target is None:
        log.warning(
            "queue %s has no dead-letter route: messages that fail there are discarded", queue.name
        )
    checks: list[tuple[str, str, str]] = []  # (kind, name, why)
    if target is not None and target.queue is not None:
        checks.append(("queue", target.queue, "dead-letters to queue"))
    elif target is not None and target.exchange:
        checks.append(("exchange", target.exchange, "dead-letters to exchange"))
    for delay, wait in sorted(queue.wait_queues.items()):
        checks.append(("queue", wait, f"retries after {delay} ms through wait queue"))
    if not checks:
        return
    async with Prober(connection) as probe:
        for kind, name, why in checks:
            found = await (probe.queue(name) if kind == "queue" else probe.exchange(name))
            if not found:
                raise EntityNotFound(
                    f"queue {queue.name!r} {why} {name!r}, which does not exist: failed "
                    "messages would be lost. Declare the topology first (client.declare)",
                    entity=name,
                    broker_reply=f"404 NOT_FOUND - no {kind} '{name}'",
                )
