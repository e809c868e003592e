"""Declare (or only verify) a service's topology: exchanges, queues with their arguments, bindings.

Declaring is idempotent: the same declaration again is a no-op on the broker. When an entity exists
with other settings the broker answers 406 PRECONDITION_FAILED and closes the channel;
``declare_topology`` raises ``PreconditionFailed`` naming the entity, what the spec wants and what
the broker said. Declarations run on a channel of their own, so the failure leaves the client and
its other channels usable.

``passive=True`` only checks that every exchange and queue exists (``passive`` declares need no
configure permission); bindings cannot be checked passively by AMQP and are skipped. A missing
entity raises ``EntityNotFound``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .._contract.topology import BindingDef, ExchangeDef, QueueDef, ServiceTopology
from .._transport.base import Channel
from .._transport.connection import Connection
from ..errors import AccessRefused, EntityNotFound, MmateError, PreconditionFailed, TopologyError

log = logging.getLogger("mmate.declare")


def _exchange_wanted(exchange: ExchangeDef) -> dict[str, Any]:
    return {"type": exchange.type, "durable": exchange.durable, "auto_delete": exchange.auto_delete}


def _queue_wanted(queue: QueueDef) -> dict[str, Any]:
    return {
        "durable": queue.durable,
        "exclusive": queue.exclusive,
        "auto_delete": queue.auto_delete,
        "arguments": dict(queue.arguments),
    }


def _predeclared(name: str) -> bool:
    return name == "" or name.startswith("amq.")


class _Declarer:
    def __init__(self, connection: Connection, passive: bool) -> None:
        self._connection = connection
        self._passive = passive
        self._channel: Channel | None = None

    async def channel(self) -> Channel:
        if self._channel is None or not self._channel.is_open:
            self._channel = await self._connection.channel(confirms=False)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    def _fail(self, exc: MmateError, what: str, name: str, wanted: Mapping[str, Any]) -> MmateError:
        reply = exc.broker_reply if isinstance(exc, TopologyError) else str(exc)
        if isinstance(exc, PreconditionFailed):
            return PreconditionFailed(
                f"{what} {name!r} exists with other settings. The spec wants {wanted}; the broker "
                f"said: {reply}. Delete it or change the spec (a queue is never changed in place)",
                entity=name,
                wanted=wanted,
                broker_reply=reply,
            )
        if isinstance(exc, EntityNotFound):
            return EntityNotFound(
                f"{what} {name!r} does not exist (verifying the topology); "
                f"the broker said: {reply}",
                entity=name,
                broker_reply=reply,
            )
        if isinstance(exc, AccessRefused):
            return AccessRefused(
                f"{what} {name!r}: access refused; the broker said: {reply}"
                + ("" if self._passive else " (without configure rights, use passive=True)"),
                entity=name,
                broker_reply=reply,
            )
        return exc

    async def exchange(self, exchange: ExchangeDef) -> None:
        if exchange.name == "":
            return
        passive = self._passive or _predeclared(exchange.name)
        channel = await self.channel()
        try:
            await channel.declare_exchange(
                exchange.name,
                exchange.type,
                passive=passive,
                durable=exchange.durable,
                auto_delete=exchange.auto_delete,
            )
        except MmateError as exc:
            raise self._fail(exc, "exchange", exchange.name, _exchange_wanted(exchange)) from exc

    async def queue(self, queue: QueueDef) -> None:
        channel = await self.channel()
        try:
            await channel.declare_queue(
                queue.name,
                passive=self._passive,
                durable=queue.durable,
                exclusive=queue.exclusive,
                auto_delete=queue.auto_delete,
                arguments=queue.arguments,
            )
        except MmateError as exc:
            raise self._fail(exc, "queue", queue.name, _queue_wanted(queue)) from exc

    async def binding(self, binding: BindingDef) -> None:
        if self._passive:
            return
        channel = await self.channel()
        await channel.bind_queue(
            binding.queue, binding.exchange, binding.routing_key, binding.arguments
        )


async def declare_entities(
    connection: Connection,
    *,
    exchanges: Iterable[ExchangeDef] = (),
    queues: Iterable[QueueDef] = (),
    bindings: Iterable[BindingDef] = (),
    passive: bool = False,
) -> None:
    """Declare exchanges, then queues, then bindings (in that order, so bindings find both ends)."""
    declarer = _Declarer(connection, passive)
    try:
        for exchange in exchanges:
            await declarer.exchange(exchange)
        for queue in queues:
            await declarer.queue(queue)
        for binding in bindings:
            await declarer.binding(binding)
    finally:
        await declarer.close()


async def declare_topology(
    connection: Connection, topology: ServiceTopology, *, passive: bool = False
) -> None:
    """Declare (``passive``: verify) everything ``topology`` names. Safe to repeat."""
    await declare_entities(
        connection,
        exchanges=topology.exchanges,
        queues=topology.queues,
        bindings=topology.bindings,
        passive=passive,
    )
    log.info(
        "%s topology of %s: %d exchanges, %d queues, %d bindings",
        "verified" if passive else "declared",
        topology.name,
        len(topology.exchanges),
        len(topology.queues),
        len(topology.bindings),
    )
