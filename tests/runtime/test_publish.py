"""Publishing on both backends: confirms, mandatory, nack, timeout, options as real properties,
pipelining, batches. What we publish is read back from the queue (``probe``) and checked with
plain ``json`` (docs/interop.md)."""

from __future__ import annotations

import asyncio
import json
import uuid

import mmate
import pytest
from backends import TestBackend
from conftest import message_count
from mmate import ExchangeDef, Publication, QueueDef, ServiceTopology
from mmate._transport.base import Channel
from sample_app import App, CreateOrderCommand, OrderCreatedEvent, Region


def event(n: int = 0, region: Region = Region.EU) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"ORDER-{n}",
        sequence=n,
        order_id=f"ORDER-{n}",
        customer_id="C-1",
        amount=n + 0.5,
        region=region,
    )


async def test_published_event_is_what_a_go_consumer_expects(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        await app.publisher(client).publish_order_created_event(event(7), correlation_id="corr-7")
    msg = await probe.get(app.audit_queue, no_ack=True)
    assert msg.exchange == app.events
    assert msg.routing_key == "order.eu.created"
    body = json.loads(msg.body)  # plain json, as any reader would
    assert set(body) == {"id", "type", "timestamp", "correlationId", "headers", "payload"}
    assert body["type"] == "OrderCreatedEvent" and body["correlationId"] == "corr-7"
    assert body["payload"]["aggregateId"] == "ORDER-7" and body["payload"]["sequence"] == 7
    props = msg.properties
    assert props.message_id == body["id"] and props.correlation_id == "corr-7"
    assert props.type == "OrderCreatedEvent" and props.app_id == "order-service"
    assert props.delivery_mode == 2 and props.content_type == "application/json"
    assert props.headers["x-message-type"] == "OrderCreatedEvent"
    assert props.headers["x-source"] == "mmate-py" and props.headers["x-schema-version"] == "1.0"
    assert props.headers == body["headers"]


async def test_unroutable_publish_raises_naming_exchange_and_routing_key(
    url: str, app: App
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.UnroutableError) as info:
            await app.publisher(client).publish_order_created_event(
                event(), routing_key="nobody.listens"
            )
        assert info.value.exchange == app.events and info.value.routing_key == "nobody.listens"
        assert app.events in str(info.value) and "nobody.listens" in str(info.value)
        # the channel is still fine
        await app.publisher(client).publish_order_created_event(event())


async def test_publish_to_missing_exchange_raises_and_the_channel_is_reopened(
    url: str, app: App
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.PublishError, match="NOT_FOUND"):
            await app.publisher(client).publish_order_created_event(
                event(), exchange=f"missing.{app.suffix}"
            )
        await app.publisher(client).publish_order_created_event(event())
        assert client._outbox.publisher._channel.reopened == 1


async def test_nack_raises(url: str, extra_entities: tuple[list[str], list[str]]) -> None:
    queues, exchanges = extra_entities
    s = uuid.uuid4().hex[:8]
    exchange, queue = f"t.{s}.nack", f"t.{s}.full"
    queues.append(queue)
    exchanges.append(exchange)
    from mmate import BindingDef

    topo = ServiceTopology(
        name="nack",
        exchanges=(ExchangeDef(exchange),),
        queues=(QueueDef(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}),),
        bindings=(BindingDef(exchange, queue, "#"),),
        publishes={},
        consumes={},
        messages={},
    )
    from sample_app import MESSAGES

    route = mmate.PublishRoute(MESSAGES["OrderCreatedEvent"], exchange, "k")
    # a nack is re-sent until the publish timeout: a short one keeps the test short
    async with mmate.Client(url, service="nack", publish_timeout=1.0) as client:
        await client.declare(topo)
        await client.publish(route, event(), "k", {})
        with pytest.raises(mmate.NackError, match="nacked"):
            await client.publish(route, event(), "k", {})


async def test_publish_timeout(url: str, app: App) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.PublishTimeout, match="no confirm within"):
            await app.publisher(client).publish_order_created_event(event(), timeout=0.000001)


async def test_ttl_and_priority_are_real_properties(
    url: str, app: App, probe: Channel, backend: TestBackend
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        await app.publisher(client).publish_order_created_event(
            event(1), ttl=30, priority=3, persistent=False, headers={"tenant": "a"}
        )
        await app.publisher(client).publish_order_created_event(event(2), ttl=0.05)
    msg = await probe.get(app.audit_queue, no_ack=True)
    p = msg.properties
    assert (p.expiration, p.priority, p.delivery_mode) == ("30000", 3, 1)
    assert p.headers["tenant"] == "a"
    await backend.wait(0.3)
    assert (
        await message_count(probe, app.audit_queue) == 0
    )  # the 50 ms message expired on the broker


async def test_a_publish_naming_amq_default_does_not_fail_the_default_exchange_ones_beside_it(
    url: str, app: App, probe: Channel
) -> None:
    """The broker refuses a publish to ``amq.default`` by name (404, no such exchange) and closes
    the shared channel over it, with an error naming ``amq.default``, which is also what it calls
    the default exchange: the publishes to ``""`` in flight beside it are sent again and arrive,
    only the one that named it fails."""
    n = 20
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        results = await asyncio.gather(
            publisher.publish_order_created_event(event(-1), exchange="amq.default"),
            *(
                publisher.publish_order_created_event(
                    event(i), exchange="", routing_key=app.audit_queue
                )
                for i in range(n)
            ),
            return_exceptions=True,
        )
    assert isinstance(results[0], mmate.PublishError) and "amq.default" in str(results[0])
    assert results[1:] == [None] * n, results[1:]
    assert await message_count(probe, app.audit_queue) == n


async def test_concurrent_publishes_are_all_confirmed(url: str, app: App, probe: Channel) -> None:
    """3000 publishes at once through a window of 500: every one confirmed and enqueued (how
    fast pipelining is, is measured by bench/, not asserted here)."""
    n = 3000
    async with mmate.Client(url, service="order-service", max_in_flight=500) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        await asyncio.gather(*(publisher.publish_order_created_event(event(i)) for i in range(n)))
    assert await message_count(probe, app.audit_queue) == n


async def test_publish_many_reports_exactly_which_failed(
    url: str, app: App, probe: Channel
) -> None:
    route = app.order_service.publishes["OrderCreatedEvent"]
    items = [Publication(route, event(i), "order.eu.created") for i in range(10)]
    items[3] = Publication(route, event(3), "unbound.key")
    items[8] = Publication(route, event(8), "", {"routing_key": "also.unbound"})
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.BatchPublishError) as info:
            await client.publish_many(items)
        failures = info.value.failures
        assert [f.index for f in failures] == [3, 8]
        assert all(isinstance(f.error, mmate.UnroutableError) for f in failures)
        assert info.value.total == 10
        await client.publish_many(items[:3])
    assert await message_count(probe, app.audit_queue) == 8 + 3


async def test_batch_transport_sends_on_exit(url: str, app: App, probe: Channel) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        async with client.batch() as batch:
            publisher = app.publisher(batch)
            for i in range(100):
                await publisher.publish_order_created_event(event(i, Region.US))
            for i in range(5):
                await publisher.send_create_order_command(
                    CreateOrderCommand(customer_id="c", amount=i)
                )
            assert await message_count(probe, app.audit_queue) == 0  # nothing sent before exit
        with pytest.raises(mmate.MmateError, match="cannot be sent in a batch"):
            from sample_app import GetOrderQuery

            await app.publisher(client.batch()).request_get_order_query(GetOrderQuery(order_id="o"))
    assert await message_count(probe, app.audit_queue) == 100
    assert await message_count(probe, app.order_queue) == 5


async def test_a_batch_reaches_the_queue_in_list_order(url: str, app: App, probe: Channel) -> None:
    n = 500
    route = app.order_service.publishes["OrderCreatedEvent"]
    async with mmate.Client(url, service="order-service", max_in_flight=50) as client:
        await client.declare(app.order_service)
        await client.publish_many(
            [Publication(route, event(i), "order.eu.created") for i in range(n)]
        )
    sequences = []
    for _ in range(n):
        msg = await probe.get(app.audit_queue, no_ack=True)
        sequences.append(json.loads(msg.body)["payload"]["sequence"])
    assert sequences == list(range(n))
