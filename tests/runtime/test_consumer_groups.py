"""Consumer groups on the broker: N AMQP consumers on one queue, each on its own channel with its
own prefetch, really receiving in parallel; spread over connections; set in the spec or at
``serve``; one active at a time on a single-active-consumer queue; stopping drains every one."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, message_count, wait_until
from mmate import MessageContext
from sample_app import App, BankingRequest, OrderCreatedEvent, make_app

pytestmark = pytest.mark.broker


class Gauge:
    """Counts handlers running at once (and the peak) and what finished."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.running = 0
        self.peak = 0
        self.started = 0
        self.finished: list[str] = []

    async def run(self, key: str) -> None:
        self.started += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.hold)
        finally:
            self.running -= 1
        self.finished.append(key)


def audit_routes(app: App, gauge: Gauge) -> Any:
    routes = app.routes()

    @routes.handle_order_created_event
    async def audit(message: OrderCreatedEvent, ctx: MessageContext) -> None:
        await gauge.run(message.order_id)

    return routes


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(order_id=f"O-{n}", customer_id="C", amount=1.0)


async def consumers_of(raw: aiormq.abc.AbstractChannel, queue: str) -> int:
    ok = await raw.queue_declare(queue, passive=True)
    return int(ok.consumer_count or 0)


async def publish_events(client: mmate.Client, app: App, numbers: range) -> None:
    publisher = app.publisher(client)
    await asyncio.gather(*(publisher.publish_order_created_event(event(i)) for i in numbers))


async def test_n_consumers_receive_in_parallel(app: App, raw: aiormq.abc.AbstractChannel) -> None:
    n = 12
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        # One consumer, prefetch 1, concurrency 1: one message at a time.
        single = Gauge(0.15)
        serving = await client.serve(
            audit_routes(app, single), queues=[app.audit_queue], prefetch=1, concurrency=1
        )
        await publish_events(client, app, range(n))
        await wait_until(lambda: len(single.finished) == n, timeout=20)
        await serving.stop()
        assert single.peak == 1
        # Four consumers with the same prefetch and concurrency each.
        group = Gauge(0.3)
        serving = await client.serve(
            audit_routes(app, group),
            queues=[app.audit_queue],
            prefetch=1,
            concurrency=1,
            consumers=4,
        )
        members = serving.groups[app.audit_queue]
        assert len(members) == 4 and await consumers_of(raw, app.audit_queue) == 4
        await publish_events(client, app, range(n, 3 * n))
        await wait_until(lambda: len(group.finished) == 2 * n, timeout=20)
        await serving.stop()
    assert 3 <= group.peak <= 4  # never more than consumers x concurrency
    assert sorted(group.finished) == sorted(f"O-{i}" for i in range(n, 3 * n))
    assert all(m.handled > 0 for m in members)  # every member received
    assert sum(m.handled for m in members) == 2 * n
    assert await message_count(raw, app.audit_queue) == 0


async def test_the_spec_sets_the_group_and_connections_spread_it(
    raw: aiormq.abc.AbstractChannel, extra_entities: tuple[list[str], list[str]]
) -> None:
    app = make_app(audit_consumers=3)
    extra_entities[0].extend(app.queues)
    extra_entities[1].extend(app.exchanges)
    gauge = Gauge(0.2)
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(
            audit_routes(app, gauge), queues=[app.audit_queue], connections=2, concurrency=1
        )
        members = serving.groups[app.audit_queue]
        assert len(members) == 3  # the queue's consumers: 3
        assert await consumers_of(raw, app.audit_queue) == 3
        connections = {id(m.connection) for m in members}
        assert len(connections) == 2 and client.connection in [m.connection for m in members]
        extra = serving.connections
        assert len(extra) == 1 and extra[0].is_open
        await publish_events(client, app, range(9))
        await wait_until(lambda: len(gauge.finished) == 9, timeout=20)
        await serving.stop()
        assert not extra[0].is_open  # the group's own connection closed with it
        assert client.connection.is_open
        assert gauge.peak >= 2
    assert await message_count(raw, app.audit_queue) == 0


async def test_stopping_the_group_drains_every_consumer_and_loses_nothing(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    total = 40
    gauge = Gauge(0.5)
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(
            audit_routes(app, gauge),
            queues=[app.audit_queue],
            prefetch=2,
            concurrency=2,
            consumers=4,
        )
        members = serving.groups[app.audit_queue]
        await publish_events(client, app, range(total))
        await wait_until(lambda: gauge.running == 8, timeout=10)  # 4 consumers x 2 in flight
        in_flight = gauge.started
        await serving.stop(timeout=10)
        # Every handler that had started finished, and was acked by its own consumer.
        assert gauge.running == 0 and len(gauge.finished) == gauge.started
        assert len(gauge.finished) >= in_flight
        assert all(m.handled > 0 for m in members)
        assert await consumers_of(raw, app.audit_queue) == 0
        left = await message_count(raw, app.audit_queue)
        assert left == total - len(gauge.finished)  # nothing lost, nothing left unacked
        # The rest is still there for the next consumer.
        rest = Gauge(0.0)
        serving = await client.serve(audit_routes(app, rest), queues=[app.audit_queue])
        await wait_until(lambda: len(rest.finished) == left, timeout=20)
        await serving.stop()
    assert sorted(gauge.finished + rest.finished) == sorted(f"O-{i}" for i in range(total))
    assert await message_count(raw, app.audit_queue) == 0


async def test_single_active_consumer_queue_has_one_active_member(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    seen: list[int] = []
    gauge = Gauge(0.02)

    class Banking(app.banking_handlers):
        async def handle_banking_request(
            self, message: BankingRequest, ctx: MessageContext
        ) -> None:
            seen.append(message.sequence_no)
            await gauge.run(str(message.sequence_no))

    n = 20
    async with mmate.Client(BROKER_URL, service="banking-service") as client:
        await client.declare(app.banking_service)
        serving = await client.serve(Banking(), consumers=3)
        members = serving.groups[app.fifo_queue]
        assert len(members) == 3 and await consumers_of(raw, app.fifo_queue) == 3
        publisher = app.banking_publisher(client)
        for i in range(n):
            await publisher.send_banking_request(BankingRequest(sequence_no=i, amount=Decimal(1)))
        await wait_until(lambda: serving.handled == n, timeout=20)
        active = [m for m in members if m.handled > 0]
        assert len(active) == 1 and active[0].handled == n  # the others stood by
        assert seen == list(range(n)) and gauge.peak == 1  # in order, one at a time
        # The active member goes away: one of the standbys takes over.
        await active[0].stop()
        for i in range(n, 2 * n):
            await publisher.send_banking_request(BankingRequest(sequence_no=i, amount=Decimal(1)))
        await wait_until(lambda: serving.handled == 2 * n, timeout=20)
        took_over = [m for m in members if m is not active[0] and m.handled > 0]
        assert len(took_over) == 1 and took_over[0].handled == n
        assert seen == list(range(2 * n)) and gauge.peak == 1
        await serving.stop()
    assert await message_count(raw, app.fifo_queue) == 0


async def test_a_group_of_none_is_refused(app: App, raw: aiormq.abc.AbstractChannel) -> None:
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        routes = audit_routes(app, Gauge(0))
        for bad in ({"consumers": 0}, {"connections": 0}):
            with pytest.raises(mmate.MmateError, match="at least 1"):
                await client.serve(routes, queues=[app.audit_queue], **bad)
        assert client.servings == [] and await consumers_of(raw, app.audit_queue) == 0
