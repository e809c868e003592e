"""The memory backend as the runtime sees it: URLs and the broker registry, the features record,
what it refuses to model, inspection for test harnesses, idleness, what a message can carry,
and links left behind by a closed event loop."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from mmate._transport.base import Backend, Channel, Delivery, Features, Link, Properties
from mmate._transport.memory import FEATURES, MemoryBroker, memory_backend
from mmate.errors import (
    BrokerConnectionError,
    ChannelClosed,
    EntityNotFound,
    FeatureNotAvailable,
    MmateError,
)
from sides import drain


async def _connect(broker: MemoryBroker, url: str | None = None) -> Any:
    return await broker.backend.connect(
        url or broker.url, name="t", heartbeat=0, ssl_context=None, timeout=1
    )


def test_features() -> None:
    assert (
        Features(
            name="memory",
            persistence=False,
            clustering=False,
            resource_alarms=False,
            network_faults=False,
            delayed_message_plugin=False,
            management_api=False,
            virtual_time=True,
            amqp_wire=False,
        )
        == FEATURES
    )


async def test_urls_name_brokers() -> None:
    default = MemoryBroker.default()
    assert default.url == "memory://" and memory_backend() is default.backend
    assert memory_backend("memory://") is default.backend
    named = memory_backend("memory://orders-test").broker
    assert named.url == "memory://orders-test"
    assert MemoryBroker.named("orders-test") is named  # created on first use, then shared
    fresh = MemoryBroker()
    assert fresh.url.startswith("memory://broker-") and fresh is not MemoryBroker()
    with pytest.raises(MmateError, match="exists"):
        MemoryBroker("orders-test")
    named.close()
    assert MemoryBroker.named("orders-test") is not named  # a new, empty one
    MemoryBroker.named("orders-test").close()
    for bad in ("memory://a/b", "memory://a?x=1", "memory://u:p@a", "amqp://a"):
        with pytest.raises(MmateError):
            memory_backend(bad)
    fresh.close()


async def test_the_backend_keeps_the_seams_protocols(broker: MemoryBroker) -> None:
    assert isinstance(broker.backend, Backend)
    assert broker.backend.features is FEATURES and broker.backend.clock is broker.clock
    link = await _connect(broker)
    assert isinstance(link, Link) and not link.is_closed
    channel = await link.channel(confirms=True)
    assert isinstance(channel, Channel) and channel.confirms and channel.is_open
    assert await link.blocked() is None
    await link.close()
    assert link.is_closed and not channel.is_open
    with pytest.raises(BrokerConnectionError):
        await link.channel(confirms=False)
    with pytest.raises(ChannelClosed) as caught:
        await channel.get("q")
    assert caught.value.reply_code == 0 and channel.close_reason is None


async def test_a_backend_serves_only_its_broker(broker: MemoryBroker) -> None:
    with pytest.raises(MmateError, match="memory_backend"):
        await _connect(broker, "memory://another")
    with pytest.raises(FeatureNotAvailable, match="TLS"):
        await broker.backend.connect(
            broker.url, name="t", heartbeat=0, ssl_context=ssl.create_default_context(), timeout=1
        )


async def test_what_it_does_not_model_is_refused_by_name(broker: MemoryBroker, link: Any) -> None:
    ch = await link.channel(confirms=True)
    with pytest.raises(FeatureNotAvailable, match="delayed-message plugin"):
        await ch.declare_exchange("d", "x-delayed-message", arguments={"x-delayed-type": "topic"})
    with pytest.raises(FeatureNotAvailable, match="stream"):
        await ch.declare_queue("s", arguments={"x-queue-type": "stream"})
    await ch.declare_queue("q", durable=False)
    with pytest.raises(FeatureNotAvailable, match="stream"):
        await ch.consume("q", lambda d: None, arguments={"x-stream-offset": "first"})
    with pytest.raises(FeatureNotAvailable, match="direct reply-to"):
        await ch.consume("amq.rabbitmq.reply-to", lambda d: None, no_ack=True)
    assert ch.is_open  # refusals of this kind are not broker errors


async def test_an_unknown_exchange_type_closes_the_link(broker: MemoryBroker, link: Any) -> None:
    lost: list[str] = []
    link.on_lost(lost.append)
    ch = await link.channel(confirms=True)
    with pytest.raises(BrokerConnectionError, match="503 COMMAND_INVALID - unknown exchange type"):
        await ch.declare_exchange("b", "bogus")  # type: ignore[arg-type]
    await broker.advance(0)
    assert link.is_closed and len(lost) == 1 and "unknown exchange type 'bogus'" in lost[0]


async def test_inspection(broker: MemoryBroker, link: Any) -> None:
    ch = await link.channel(confirms=True)
    await ch.declare_exchange("orders", "topic")
    await ch.declare_queue("q", arguments={"x-single-active-consumer": True})
    await ch.bind_queue("q", "orders", "order.#")
    for body in (b"1", b"2", b"3"):
        await ch.publish(
            body,
            Properties(headers={"n": body.decode()}),
            exchange="orders",
            routing_key="order.created",
        )
    held = await ch.get("q")
    view = broker.queue("q")
    assert [m.body for m in view.messages] == [b"2", b"3"] and view.message_count == 2
    assert [m.body for m in view.unacked] == [b"1"]
    assert (
        view.messages[0].headers == {"n": "2"} and view.messages[0].routing_key == "order.created"
    )
    view.messages[0].headers["n"] = "changed"  # type: ignore[index]
    assert broker.queue("q").messages[0].headers == {"n": "2"}  # a snapshot
    consumer = await link.channel(confirms=True)
    await consumer.qos(1)
    tag = await consumer.consume("q", lambda d: None)
    other = await consumer.consume("q", lambda d: None)
    await broker.advance(0)
    consumers = broker.queue("q").consumers
    assert [(c.tag, c.active, c.prefetch, c.unacked) for c in consumers] == [
        (tag, True, 1, 1),
        (other, False, 1, 0),
    ]
    assert [(b.source, b.destination, b.routing_key) for b in broker.bindings()] == [
        ("orders", "q", "order.#")
    ]
    assert {x.name for x in broker.exchanges()} >= {"orders", "amq.direct", "amq.topic"}
    assert broker.queue_names() == ["q"] and broker.has_exchange("") and broker.has_queue("q")
    del held


async def test_wait_idle(broker: MemoryBroker, link: Any) -> None:
    ch = await link.channel(confirms=True)
    await ch.declare_queue("q", durable=False)
    got: list[Delivery] = []
    await ch.consume("q", got.append)
    await ch.publish(b"m", Properties(), exchange="", routing_key="q")
    with pytest.raises(TimeoutError, match="queue 'q' has 1 unacknowledged"):
        await broker.wait_idle(timeout=0.05)
    task = asyncio.create_task(_ack_soon(ch, got))
    await broker.wait_idle(timeout=1)
    assert task.done() and broker.busy() == []


async def _ack_soon(ch: Any, got: list[Delivery]) -> None:
    await asyncio.sleep(0.01)
    await ch.ack(got[0].delivery_tag)


async def test_a_message_is_copied_as_it_would_cross_the_wire(
    broker: MemoryBroker, link: Any
) -> None:
    ch = await link.channel(confirms=True)
    await ch.declare_queue("q", durable=False)
    headers: dict[str, Any] = {
        "list": [1, {"a": [1, 2]}],
        "at": datetime(2024, 1, 1, 12, 0, 0, 999),
        "zoned": datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        "raw": bytearray(b"x"),
    }
    await ch.publish(
        b"m",
        Properties(headers=headers, timestamp=datetime(2024, 1, 1, 0, 0, 0, 5)),
        exchange="",
        routing_key="q",
    )
    headers["list"].append("later")  # the publisher's dict is not the queue's
    await ch.publish(b"n", Properties(), exchange="", routing_key="q")
    first, second = await drain(ch, "q")
    assert first.headers == {
        "list": [1, {"a": [1, 2]}],
        "at": datetime(2024, 1, 1, 12, tzinfo=UTC),
        "zoned": datetime(2024, 1, 1, 12, tzinfo=UTC),
        "raw": bytearray(b"x"),
    }
    assert first.properties.timestamp == datetime(2024, 1, 1, tzinfo=UTC)
    assert second.headers == {}
    with pytest.raises(MmateError, match="cannot travel in an AMQP field table"):
        await ch.publish(b"m", Properties(headers={"s": {1, 2}}), exchange="", routing_key="q")
    with pytest.raises(MmateError, match="AMQP allows at most 255"):
        await ch.publish(b"m", Properties(), exchange="", routing_key="k" * 256)
    assert ch.is_open  # client-side refusals: nothing reached the broker


async def test_each_delivery_is_its_own_copy(broker: MemoryBroker, link: Any) -> None:
    ch = await link.channel(confirms=True)
    await ch.declare_exchange("fan", "fanout", durable=False)
    for name in ("a", "b"):
        await ch.declare_queue(name, durable=False)
        await ch.bind_queue(name, "fan")
    await ch.publish(b"m", Properties(headers={"h": [1]}), exchange="fan", routing_key="")
    first = await ch.get("a")
    first.properties.headers["h"].append(2)  # type: ignore[index]
    await ch.nack(first.delivery_tag, requeue=True)
    again, other = await ch.get("a", no_ack=True), await ch.get("b", no_ack=True)
    assert again.headers == {"h": [1]} == other.headers


def test_links_of_a_closed_event_loop_give_their_messages_back() -> None:
    broker = MemoryBroker()
    try:

        async def leave_unacked() -> None:
            link = await _connect(broker)
            ch = await link.channel(confirms=True)
            await ch.declare_queue("q", durable=False)
            await ch.publish(b"m", Properties(), exchange="", routing_key="q")
            assert await ch.get("q") is not None  # never settled; the loop then closes

        async def later() -> list[bool]:
            link = await _connect(broker)  # connecting reaps the dead link
            ch = await link.channel(confirms=True)
            return [d.redelivered for d in await drain(ch, "q")]

        asyncio.run(leave_unacked())
        assert asyncio.run(later()) == [True]
    finally:
        broker.close()


async def test_reset_and_close(broker: MemoryBroker, link: Any) -> None:
    lost: list[str] = []
    link.on_lost(lost.append)
    ch = await link.channel(confirms=True)
    await ch.declare_queue("q", durable=False)
    broker.reset()
    await broker.advance(0)
    assert link.is_closed and lost == [f"{broker.url}: the memory broker was reset"]
    assert broker.queue_names() == [] and broker.has_exchange("amq.topic")
    fresh = await _connect(broker)
    ch = await fresh.channel(confirms=True)
    with pytest.raises(EntityNotFound):
        await ch.declare_queue("q", passive=True)


async def test_queue_expiry(broker: MemoryBroker, link: Any) -> None:
    ch = await link.channel(confirms=True)
    await ch.declare_queue("unused", durable=False, arguments={"x-expires": 10_000})
    await broker.advance(9)
    await ch.declare_queue("unused", passive=True)  # a declaration counts as use
    await broker.advance(9)
    assert broker.has_queue("unused")
    tag = await ch.consume("unused", lambda d: None)
    await broker.advance(60)
    assert broker.has_queue("unused")  # never while it has a consumer
    await ch.cancel(tag)
    await broker.advance(10.1)
    assert not broker.has_queue("unused")
