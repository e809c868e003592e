"""Dead letters: list them with the reasons they failed, and replay them to the queue they came
from (``list_dead_letters``, ``count_dead_letters``, ``replay``).

``source`` is a connected ``mmate.Client``, a ``Connection`` or a broker URL (then a connection of
its own is opened and closed again). Listing takes every message with ``basic.get`` without acking
and closes its channel, so nothing is lost or reordered; replay publishes each selected body byte
for byte with confirms and acks it in the dead-letter queue only after the confirm. The contract
in full (reasons, ordering on classic and quorum queues, the headers a replayed message keeps) is
docs/operations/dead-letters.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .._failures import deadletter, retry
from .._publishing.confirmed import ConfirmedPublisher, Outgoing
from .._topology.exists import Prober
from .._transport.base import Channel, Delivery, Properties
from .._transport.connection import Connection
from .._wire import envelope as codec
from .._wire.envelope import Encoded
from .._wire.headers import copied_properties, encodable
from ..client import Client
from ..errors import DecodeError, EntityNotFound, MmateError, PublishError, UnroutableError

log = logging.getLogger("mmate.dlq")

Source = Literal["mmate", "broker", "unknown"]
Broker = Client | Connection | str
"""Where the dead-letter queue is: a connected client, a connection, or a broker URL."""

REPLAYS = "x-mmate-replays"
"""How often a message was replayed from a dead-letter queue (an integer header)."""

_REMOVED_ON_REPLAY = (
    deadletter.REASON,
    deadletter.ERROR_CLASS,
    deadletter.ERROR_MESSAGE,
    deadletter.HANDLER,
    deadletter.ATTEMPTS,
    deadletter.FIRST_FAILURE,
    deadletter.LAST_FAILURE,
    deadletter.ORIGINAL_QUEUE,
    deadletter.ORIGINAL_EXPIRATION,
    retry.ATTEMPT,
    retry.RETRY_DELAY,
    retry.LAST_ERROR,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a dead-letter queue and why it is there."""

    position: int
    """0 for the head of the queue."""
    message_id: str
    type: str
    reason: str
    """``permanent-error``, ``retries-exhausted``, a poison reason, or the broker's ``rejected``,
    ``expired``, ``maxlen``, ``delivery_limit``; ``unknown`` when the message says nothing."""
    source: Source
    error_class: str | None
    error_message: str | None
    handler: str | None
    attempts: int | None
    """The runtime's attempt count, or the broker's ``x-death`` count."""
    original_queue: str | None
    original_exchange: str | None
    original_routing_key: str | None
    first_failure: str | None
    """RFC 3339, UTC."""
    last_failure: str | None
    size: int
    """Body bytes."""
    correlation_id: str | None
    headers: Mapping[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """Everything but the body and the raw headers, JSON-serializable."""
        return {
            "position": self.position,
            "messageId": self.message_id,
            "type": self.type,
            "reason": self.reason,
            "source": self.source,
            "errorClass": self.error_class,
            "errorMessage": self.error_message,
            "handler": self.handler,
            "attempts": self.attempts,
            "originalQueue": self.original_queue,
            "originalExchange": self.original_exchange,
            "originalRoutingKey": self.original_routing_key,
            "firstFailure": self.first_failure,
            "lastFailure": self.last_failure,
            "size": self.size,
            "correlationId": self.correlation_id,
        }


@dataclass(frozen=True, slots=True)
class Moved:
    message_id: str
    to: str


@dataclass(frozen=True, slots=True)
class Skipped:
    message_id: str
    position: int
    reason: str


@dataclass(slots=True)
class ReplayResult:
    """What ``replay`` did: ``moved`` in queue order, ``skipped`` (selected but left in the
    dead-letter queue, with the reason), ``not_found`` (requested ids that were not there)."""

    queue: str
    examined: int = 0
    moved: list[Moved] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    @property
    def moved_count(self) -> int:
        return len(self.moved)

    @property
    def complete(self) -> bool:
        """Every selected message was moved and every requested id was found."""
        return not self.skipped and not self.not_found


# -- reading ---------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return _iso(value)
    return str(value)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _envelope_field(body: bytes, name: str) -> str | None:
    try:
        data = codec.load_json(body)
    except DecodeError:
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def message_id_of(properties: Properties, body: bytes) -> str:
    """The id ``replay`` selects by (see the module docstring)."""
    headers = properties.headers or {}
    return (
        properties.message_id
        or _text(headers.get("x-message-id"))
        or _envelope_field(body, "id")
        or ""
    )


def describe(message: Delivery, position: int) -> DeadLetter:
    """A ``DeadLetter`` from a message read from a dead-letter queue."""
    properties = message.properties
    headers: Mapping[str, Any] = properties.headers or {}
    body = message.body
    deaths = retry.death_entries(headers)
    newest = deaths[0] if deaths else {}
    keys = newest.get("routing-keys")
    death_key = _text(keys[0]) if isinstance(keys, list | tuple) and keys else None
    death_times = [t for t in (d.get("time") for d in deaths) if isinstance(t, datetime)]
    ours = headers.get(deadletter.REASON) is not None
    source: Source = "mmate" if ours else "broker" if deaths else "unknown"
    if ours:
        reason = _text(headers.get(deadletter.REASON)) or "unknown"
        attempts = retry.count_of(headers.get(deadletter.ATTEMPTS))
    else:
        reason = _text(newest.get("reason")) or "unknown"
        attempts = retry.count_of(newest.get("count"))
    return DeadLetter(
        position=position,
        message_id=message_id_of(properties, body),
        type=(
            properties.type
            or _text(headers.get("x-message-type"))
            or _envelope_field(body, "type")
            or ""
        ),
        reason=reason,
        source=source,
        error_class=_text(headers.get(deadletter.ERROR_CLASS)),
        error_message=_text(headers.get(deadletter.ERROR_MESSAGE)),
        handler=_text(headers.get(deadletter.HANDLER)) or None,
        attempts=attempts,
        original_queue=_text(headers.get(deadletter.ORIGINAL_QUEUE)) or _text(newest.get("queue")),
        original_exchange=(
            _text(headers.get(deadletter.ORIGINAL_EXCHANGE))
            if headers.get(deadletter.ORIGINAL_EXCHANGE) is not None
            else _text(newest.get("exchange"))
        ),
        original_routing_key=_text(headers.get(deadletter.ORIGINAL_ROUTING_KEY)) or death_key,
        first_failure=(
            _text(headers.get(deadletter.FIRST_FAILURE))
            or (_iso(min(death_times)) if death_times else None)
        ),
        last_failure=(
            _text(headers.get(deadletter.LAST_FAILURE))
            or (_iso(max(death_times)) if death_times else None)
        ),
        size=len(body),
        correlation_id=properties.correlation_id,
        headers=dict(headers),
        body=body,
    )


# -- connections and queues ------------------------------------------------------------------------


@asynccontextmanager
async def _connected(source: Broker) -> AsyncIterator[Connection]:
    if isinstance(source, Client):
        yield source.connection
    elif isinstance(source, Connection):
        yield source
    elif isinstance(source, str):
        connection = Connection(source, service="mmate-dlq")
        await connection.open()
        try:
            yield connection
        finally:
            await connection.close()
    else:
        raise TypeError(f"expected a Client, a Connection or a URL, got {type(source).__name__}")


async def _depth(connection: Connection, queue: str) -> int:
    async with Prober(connection) as probe:
        info = await probe.queue(queue)
    if info is None:
        raise EntityNotFound(
            f"queue {queue!r} does not exist",
            entity=queue,
            broker_reply=f"404 NOT_FOUND - no queue '{queue}'",
        )
    return info.message_count


async def count_dead_letters(source: Broker, queue: str) -> int:
    """Messages ready in ``queue`` (``EntityNotFound`` if there is no such queue)."""
    async with _connected(source) as connection:
        return await _depth(connection, queue)


async def list_dead_letters(
    source: Broker, queue: str, *, limit: int | None = 100
) -> list[DeadLetter]:
    """Up to ``limit`` messages (None: all) from the head of ``queue``, in order, left in place.

    Raises ``EntityNotFound`` when the queue does not exist.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    async with _connected(source) as connection:
        depth = await _depth(connection, queue)
        wanted = depth if limit is None else min(limit, depth)
        letters: list[DeadLetter] = []
        if wanted == 0:
            return letters
        channel = await connection.channel(confirms=False)
        try:
            # Every message is taken, not only the first ``limit``: a quorum queue puts returned
            # messages at its back, so only returning all of them keeps the order.
            for position in range(depth):
                message = await channel.get(queue)
                if message is None:
                    break
                if position < wanted:
                    letters.append(describe(message, position))
        finally:
            # The broker puts every message not acked on it back in place.
            await channel.close()
        return letters


# -- replay ----------------------------------------------------------------------------------------


def replay_properties(properties: Properties) -> Properties:
    """The properties a replayed message is published with (see the module docstring)."""
    headers = dict(properties.headers or {})
    for name in _REMOVED_ON_REPLAY:
        headers.pop(name, None)
    headers[REPLAYS] = min((retry.count_of(headers.get(REPLAYS)) or 0) + 1, retry.MAX_ATTEMPT)
    return encodable(copied_properties(properties, headers))


async def replay(
    source: Broker,
    queue: str,
    *,
    message_ids: Collection[str] | None = None,
    to: str | None = None,
    timeout: float = 10.0,
    window: int = 100,
) -> ReplayResult:
    """Move dead letters back to their origin queue (all, or those with an id in
    ``message_ids``); see the module docstring. ``to`` replays into that queue instead of each
    message's origin. ``timeout`` bounds each confirm, ``window`` the publishes in flight.

    Raises ``EntityNotFound`` when ``queue`` does not exist; every per-message problem is in the
    result's ``skipped``.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    if isinstance(message_ids, str):
        raise TypeError("message_ids must be a collection of ids, not one string")
    wanted = None if message_ids is None else set(message_ids)
    result = ReplayResult(queue)
    if wanted is not None and not wanted:
        return result
    async with _connected(source) as connection:
        depth = await _depth(connection, queue)
        if depth == 0:
            result.not_found = sorted(wanted or ())
            return result
        reader = await connection.channel(confirms=False)
        writer = ConfirmedPublisher(
            connection, "dlq replay", action="replaying", max_in_flight=window, timeout=timeout
        )
        try:
            outcomes, found = await _move_selected(
                reader, writer, queue, depth, wanted, to, window, result
            )
        finally:
            await reader.close()
            await writer.close()
    for outcome in outcomes:
        if isinstance(outcome, Moved):
            result.moved.append(outcome)
        else:
            result.skipped.append(outcome)
    result.skipped.sort(key=lambda s: s.position)
    if wanted is not None:
        result.not_found = sorted(wanted - found)
    return result


def _target_of(
    message: Delivery, message_id: str, position: int, queue: str, to: str | None
) -> str | Skipped:
    """Where a dead letter goes back to, or why it cannot."""
    target = to or describe(message, position).original_queue
    if not target:
        reason = "its origin queue is unknown (no x-mmate-original-queue, no x-death)"
        return Skipped(message_id, position, f"{reason}; pass to=")
    if target == queue:
        return Skipped(message_id, position, f"its origin is {queue!r} itself")
    return target


async def _move_selected(
    reader: Channel,
    writer: ConfirmedPublisher,
    queue: str,
    depth: int,
    wanted: set[str] | None,
    to: str | None,
    window: int,
    result: ReplayResult,
) -> tuple[list[Moved | Skipped], set[str]]:
    """Read up to ``depth`` messages of ``queue`` and move those wanted, ``window`` at a time;
    returns the outcome of each move and the ids found."""
    found: set[str] = set()
    slots = asyncio.Semaphore(window)
    moves: list[asyncio.Task[Moved | Skipped]] = []
    try:
        for position in range(depth):
            message = await reader.get(queue)
            if message is None:
                break
            result.examined += 1
            message_id = message_id_of(message.properties, message.body)
            if wanted is not None and message_id not in wanted:
                continue
            found.add(message_id)
            target = _target_of(message, message_id, position, queue, to)
            if isinstance(target, Skipped):
                result.skipped.append(target)
                continue
            await slots.acquire()
            moves.append(
                asyncio.create_task(_move(writer, message, message_id, position, target, slots))
            )
        return list(await asyncio.gather(*moves)), found
    finally:
        for task in moves:
            task.cancel()


async def _move(
    writer: ConfirmedPublisher,
    message: Delivery,
    message_id: str,
    position: int,
    target: str,
    slots: asyncio.Semaphore,
) -> Moved | Skipped:
    """Publish one message to ``target`` and, once confirmed, ack it where it was read."""
    try:
        properties = replay_properties(message.properties)
        encoded = Encoded(
            message.body, properties, message_id, properties.correlation_id, properties.type or ""
        )
        try:
            await writer.send(Outgoing(encoded, "", target))
        except UnroutableError:
            return Skipped(message_id, position, f"queue {target!r} does not exist")
        except PublishError as exc:
            return Skipped(message_id, position, str(exc))
        try:
            await message.channel.ack(message.delivery_tag)
        except MmateError as exc:
            return Skipped(
                message_id,
                position,
                f"published to {target!r}, but the ack failed ({exc}): it is in both queues",
            )
        return Moved(message_id, target)
    finally:
        slots.release()
