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
from .exists import Prober
from .placement import NO_PLACEMENT, QueuePlacement
from .placement import declare_queue as declare_placed

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
    def __init__(self, connection: Connection, passive: bool, placement: QueuePlacement) -> None:
        self._connection = connection
        self._passive = passive
        self._placement = placement
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
        try:
            if self._passive:
                channel = await self.channel()
                await channel.declare_queue(queue.name, passive=True)
                return
            # A queue declared exactly as Go Mmate declares it gets no placement arguments.
            placement = NO_PLACEMENT if queue.go_compatible else self._placement
            await declare_placed(
                self.channel,
                queue.name,
                placement,
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
    placement: QueuePlacement = NO_PLACEMENT,
) -> None:
    """Declare exchanges, then queues, then bindings (in that order, so bindings find both ends);
    quorum queues with ``placement``'s arguments (``placement.py``)."""
    declarer = _Declarer(connection, passive, placement)
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
    connection: Connection,
    topology: ServiceTopology,
    *,
    passive: bool = False,
    placement: QueuePlacement = NO_PLACEMENT,
) -> None:
    """Declare (``passive``: verify) everything ``topology`` names. Safe to repeat."""
    await declare_entities(
        connection,
        exchanges=topology.exchanges,
        queues=topology.queues,
        bindings=topology.bindings,
        passive=passive,
        placement=placement,
    )
    log.info(
        "%s topology of %s: %d exchanges, %d queues, %d bindings",
        "verified" if passive else "declared",
        topology.name,
        len(topology.exchanges),
        len(topology.queues),
        len(topology.bindings),
    )


def _volatile_exchange(exchange: ExchangeDef) -> bool:
    return not exchange.durable or exchange.auto_delete


def _volatile_queue(queue: QueueDef) -> bool:
    return not queue.durable or queue.exclusive or queue.auto_delete


async def _durable_part_present(connection: Connection, topology: ServiceTopology) -> bool:
    """One passive check stands for the durable entities: the first durable queue (or exchange)
    still exists. A vhost deleted and created again, or a broker that lost its data, loses them
    all; a single deleted queue is noticed by its consumer (cancelled) and declared again there."""
    queue = next((q for q in topology.queues if not _volatile_queue(q)), None)
    exchange = next(
        (e for e in topology.exchanges if not _volatile_exchange(e) and not _predeclared(e.name)),
        None,
    )
    if queue is None and exchange is None:
        return True
    async with Prober(connection) as probe:
        if queue is not None:
            return await probe.queue(queue.name) is not None
        assert exchange is not None
        return await probe.exchange(exchange.name)


async def redeclare_after_reconnect(
    connection: Connection,
    topology: ServiceTopology,
    *,
    passive: bool = False,
    placement: QueuePlacement = NO_PLACEMENT,
) -> None:
    """After a reconnect, declare only what may be gone: non-durable, exclusive and auto-delete
    entities and their bindings. Durable entities survive a lost connection and a broker restart,
    so they are declared again only when one passive check finds them gone (then all of them).
    A passively verified topology is checked the same way."""
    if not await _durable_part_present(connection, topology):
        log.warning("the topology of %s is gone from the broker; declaring it again", topology.name)
        await declare_topology(connection, topology, passive=passive, placement=placement)
        return
    if passive:
        return
    exchanges = [e for e in topology.exchanges if _volatile_exchange(e)]
    queues = [q for q in topology.queues if _volatile_queue(q)]
    names = {e.name for e in exchanges} | {q.name for q in queues}
    bindings = [b for b in topology.bindings if b.queue in names or b.exchange in names]
    if exchanges or queues or bindings:
        await declare_entities(
            connection, exchanges=exchanges, queues=queues, bindings=bindings, placement=placement
        )
    log.info(
        "%s topology after reconnecting: %d volatile entities declared again, the durable ones "
        "are there",
        topology.name,
        len(exchanges) + len(queues),
    )
