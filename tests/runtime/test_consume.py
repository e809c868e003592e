"""Consuming and dispatch on the broker: counts, context, poison messages, handler failures,
auto-ack, graceful shutdown, channel recovery, Go-shaped messages reaching typed handlers."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from typing import Any

import mmate
import pytest
from conftest import go_body, go_fixture, inject, message_count, wait_until
from mmate import MessageContext
from mmate._transport.base import Channel, Properties
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply


def recording_handlers(app: App, *, fail_on: str | None = None, delay: float = 0.0) -> Any:
    class Recording(app.handlers):
        def __init__(self) -> None:
            self.events: list[tuple[OrderCreatedEvent, MessageContext]] = []
            self.commands: list[tuple[CreateOrderCommand, MessageContext]] = []
            self.queries: list[GetOrderQuery] = []
            self.finished = 0

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            if delay:
                await asyncio.sleep(delay)
            self.events.append((message, ctx))
            self.finished += 1

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            if fail_on and message.customer_id == fail_on:
                raise RuntimeError(f"cannot create an order for {fail_on}")
            self.commands.append((message, ctx))

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            self.queries.append(message)
            return OrderReply(order_id=message.order_id, status="open")

    return Recording()


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"O-{n}", sequence=n, order_id=f"O-{n}", customer_id="C", amount=1.0
    )


async def test_n_published_events_and_commands_are_n_handled(
    url: str, app: App, probe: Channel
) -> None:
    n = 500
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        serving = await client.serve(handlers)
        publisher = app.publisher(client)
        await asyncio.gather(
            *(publisher.publish_order_created_event(event(i)) for i in range(n)),
            *(
                publisher.send_create_order_command(
                    CreateOrderCommand(customer_id=f"c{i}", amount=i)
                )
                for i in range(n)
            ),
        )
        await wait_until(lambda: len(handlers.events) == n and len(handlers.commands) == n)
        await serving.stop()
        assert serving.handled == 2 * n and serving.failed == 0
    assert sorted(m.sequence for m, _ in handlers.events) == list(range(n))
    assert sorted(m.amount for m, _ in handlers.commands) == [Decimal(i) for i in range(n)]
    assert await message_count(probe, app.audit_queue) == 0
    assert await message_count(probe, app.order_queue) == 0


async def test_message_context(url: str, app: App) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        await client.serve(handlers)
        await app.publisher(client).publish_order_created_event(
            event(1), correlation_id="corr-1", headers={"tenant": "t"}
        )
        await wait_until(lambda: len(handlers.events) == 1)
    _, ctx = handlers.events[0]
    assert ctx.message_type == "OrderCreatedEvent" and ctx.correlation_id == "corr-1"
    assert ctx.headers["tenant"] == "t" and ctx.headers["x-message-kind"] == "event"
    assert ctx.redelivered is False and ctx.attempt == 1
    assert (ctx.queue, ctx.exchange, ctx.routing_key) == (
        app.audit_queue,
        app.events,
        "order.eu.created",
    )
    assert ctx.delivery_tag >= 1 and ctx.timestamp is not None
    assert len(ctx.message_id) == 36


async def test_follow_ups_keep_the_correlation_id(url: str, app: App) -> None:
    class Chaining(app.handlers):
        def __init__(self) -> None:
            self.seen: list[tuple[str, str | None]] = []

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            self.seen.append(("command", ctx.correlation_id))
            await ctx.publisher(app.publisher).publish_order_created_event(event(1))

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            self.seen.append(("event", ctx.correlation_id))

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            raise NotImplementedError

    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = Chaining()
        await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1), correlation_id="flow-1"
        )
        await wait_until(lambda: len(handlers.seen) == 2)
    assert handlers.seen == [("command", "flow-1"), ("event", "flow-1")]


async def test_poison_messages_are_dead_lettered_and_never_reach_a_handler(
    url: str, app: App, probe: Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="mmate")
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        serving = await client.serve(handlers)
        q = app.order_queue
        props = Properties(message_id="poison-1", delivery_mode=2)
        await inject(probe, b"{not json", routing_key=q, properties=props)
        unknown = {
            "id": "poison-2",
            "type": "OrderCreatedEvent",
            "payload": {"orderId": "o", "customerId": "c", "amount": 1},
        }
        await inject(
            probe, json.dumps(unknown).encode(), routing_key=q
        )  # valid type, but not handled on this queue
        invalid = {"id": "poison-3", "type": "CreateOrderCommand", "payload": {"customerId": ""}}
        await inject(probe, json.dumps(invalid).encode(), routing_key=q)
        no_type = {"id": "poison-4", "payload": {}}
        await inject(probe, json.dumps(no_type).encode(), routing_key=q)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="ok", amount=1)
        )
        await wait_until(lambda: len(handlers.commands) == 1)
        await wait_until(lambda: serving.failed == 4)
        await asyncio.sleep(0.1)
        assert await message_count(probe, f"{q}.dlq") == 4
        assert await message_count(probe, q) == 0
    assert handlers.events == [] and [m.customer_id for m, _ in handlers.commands] == ["ok"]
    for needle in (
        "poison-1",
        "poison-2",
        "poison-3",
        "poison-4",
        "not JSON",
        "no handler for type 'OrderCreatedEvent'",
        "fails validation",
        q,
    ):
        assert needle in caplog.text, needle


async def test_handler_exception_dead_letters_once_without_requeue_loop(
    url: str, app: App, probe: Channel, caplog: pytest.LogCaptureFixture
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app, fail_on="bad")
        serving = await client.serve(handlers)
        publisher = app.publisher(client)
        await publisher.send_create_order_command(CreateOrderCommand(customer_id="bad", amount=1))
        await publisher.send_create_order_command(CreateOrderCommand(customer_id="good", amount=2))
        await wait_until(lambda: serving.failed == 1 and serving.handled == 1)
        await asyncio.sleep(0.2)
        assert serving.failed == 1  # not redelivered
        dead = await probe.get(f"{app.order_queue}.dlq", no_ack=True)
        assert json.loads(dead.body)["payload"]["customerId"] == "bad"
        stamped = dead.properties.headers  # moved by the runtime, with the reason
        assert stamped["x-mmate-dead-letter-reason"] == "retries-exhausted"  # no retry policy
        assert stamped["x-mmate-error-class"] == "RuntimeError"
    assert "cannot create an order for bad" in caplog.text


async def test_auto_ack_is_opt_in_and_warns_once(
    url: str, app: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmate._consuming import consumer

    monkeypatch.setattr(consumer, "_auto_ack_warned", False)
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        await client.serve(handlers, auto_ack=True)
        await app.publisher(client).publish_order_created_event(event(1))
        await wait_until(lambda: len(handlers.events) == 1)
    assert caplog.text.count("auto-ack is on") == 1


async def test_graceful_stop_finishes_and_acks_in_flight_handlers(
    url: str, app: App, probe: Channel
) -> None:
    n, hold = 10, 0.5
    running = peak = 0
    finished: list[str] = []

    class Slow(app.handlers):
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(hold)
            finally:
                running -= 1
            finished.append(message.order_id)

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            return None

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            return OrderReply(order_id=message.order_id)

    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(Slow(), queues=[app.audit_queue])  # prefetch/concurrency 10
        publisher = app.publisher(client)
        await asyncio.gather(*(publisher.publish_order_created_event(event(i)) for i in range(n)))
        await wait_until(lambda: running == n, timeout=5)  # all ten in flight at once
        assert finished == []
        loop = asyncio.get_running_loop()
        began = loop.time()
        await serving.stop(timeout=10)
        took = loop.time() - began
        # Stop waited for the ten concurrent handlers: about one hold, far less than the ten
        # holds one at a time would take, and every one of them finished before it returned.
        assert sorted(finished) == sorted(f"O-{i}" for i in range(n))
        assert peak == n and running == 0
        assert took < hold * n / 2, took
    assert await message_count(probe, app.audit_queue) == 0  # all acked: none was requeued


async def test_stop_timeout_leaves_unfinished_messages_to_the_broker(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app, delay=5)
        serving = await client.serve(handlers, queues=[app.audit_queue])
        await app.publisher(client).publish_order_created_event(event(1))
        await asyncio.sleep(0.2)
        await serving.stop(timeout=0.2)
    await asyncio.sleep(0.2)
    assert await message_count(probe, app.audit_queue) == 1  # requeued, not lost


async def test_consumer_channel_closed_by_the_broker_is_reopened(url: str, app: App) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        serving = await client.serve(handlers, queues=[app.audit_queue])
        consumer = serving.consumers[0]
        old = consumer._loop.channel
        assert old is not None
        await old.ack(987654)  # unknown delivery tag: the broker closes the channel (406)
        await wait_until(
            lambda: consumer._loop.channel is not old and consumer.consuming, timeout=10
        )
        await app.publisher(client).publish_order_created_event(event(1))
        await wait_until(lambda: len(handlers.events) == 1)


async def test_serve_rejects_unimplemented_handlers(url: str, app: App) -> None:
    class Partial(app.handlers):
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            return None

    with pytest.raises(TypeError, match="handle_create_order_command"):
        Partial()  # HandlerBase is an ABC: the class cannot even be instantiated
    # serve() still refuses an instance whose class escaped the ABC check.
    Partial.__abstractmethods__ = frozenset()
    async with mmate.Client(url, service="order-service") as client:
        with pytest.raises(
            mmate.MmateError, match="does not implement handle_create_order_command"
        ):
            await client.serve(Partial())


async def test_go_event_and_command_reach_typed_handlers(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        await client.serve(handlers)
        for name, exchange, key in (
            ("event", app.events, "order.eu.created"),
            ("command", app.commands, "cmd.order-service.CreateOrderCommand"),
        ):
            fx = go_fixture(name)
            props = Properties(headers=fx["headers"], **fx["properties"])
            await inject(probe, go_body(fx), exchange=exchange, routing_key=key, properties=props)
        await wait_until(lambda: len(handlers.events) == 1 and len(handlers.commands) == 1)
    message, ctx = handlers.events[0]
    assert message.order_id == "ORDER-1" and message.amount == 99.99 and message.sequence == 1
    assert ctx.message_id == "c5090760-3f7e-45a6-a8bf-75a3ca89b21c" and ctx.correlation_id is None
    command, cctx = handlers.commands[0]
    assert command.customer_id == "CUST-456" and cctx.correlation_id == "corr-20261128173500"


async def test_consumer_cancelled_by_the_broker_consumes_again(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        serving = await client.serve(handlers, queues=[app.audit_queue])
        consumer = serving.consumers[0]
        old = consumer._loop.channel
        assert old is not None
        await probe.delete_queue(app.audit_queue)  # the broker cancels our consumer
        await wait_until(lambda: not old.is_open, timeout=10)
        await client.declare(app.order_service)  # the queue comes back (e.g. an operator fixed it)
        await wait_until(lambda: consumer._loop.channel is not old and consumer.consuming, 15)
        await app.publisher(client).publish_order_created_event(event(1))
        await wait_until(lambda: len(handlers.events) == 1)


async def test_n_events_published_as_a_batch_are_n_handled(url: str, app: App) -> None:
    n = 1000
    route = app.order_service.publishes["OrderCreatedEvent"]
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        handlers = recording_handlers(app)
        serving = await client.serve(handlers, queues=[app.audit_queue])
        await client.publish_many(
            [mmate.Publication(route, event(i), "order.eu.created") for i in range(n)]
        )
        await wait_until(lambda: len(handlers.events) == n)
        await asyncio.sleep(0.1)
        assert serving.handled == n and serving.failed == 0
    assert sorted(m.sequence for m, _ in handlers.events) == list(range(n))


async def test_serving_a_queue_that_does_not_exist_names_it(url: str, app: App) -> None:
    async with mmate.Client(url, service="order-service") as client:
        with pytest.raises(mmate.EntityNotFound, match=app.order_queue.replace(".", r"\.")):
            await client.serve(recording_handlers(app))
        await client.declare(app.order_service)  # the client is still usable
        serving = await client.serve(recording_handlers(app))
        assert len(serving.consumers) == 2


async def test_serving_wait_returns_after_stop(url: str, app: App) -> None:
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(recording_handlers(app))
        waiter = asyncio.create_task(serving.wait())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(serving.stop()))
        await asyncio.wait_for(waiter, 5)


async def test_an_ack_after_the_runtime_began_closing_its_channel_is_refused_not_sent(
    url: str, backend: Any
) -> None:
    """Between the runtime's own channel.close and the broker's close-ok the channel is no longer
    open: an ack of a handler finishing then (the consume loop closes the channel after the broker
    cancelled its consumer) raises ``ChannelClosed`` instead of reaching the broker, where an ack
    on a channel it has freed closes the whole connection (504 CHANNEL_ERROR) with every other
    channel on it."""
    import uuid

    from mmate._transport.backends import backend_for

    link = await backend_for(url).connect(
        url, name="ack-after-close", heartbeat=0, ssl_context=None, timeout=5
    )
    lost: list[str] = []
    link.on_lost(lost.append)
    queue = f"t.ack-after-close.{uuid.uuid4().hex[:8]}"
    try:
        channel = await link.channel(confirms=False)
        expires = {"x-expires": 60_000}  # gone a minute after the test, whatever happened
        await channel.declare_queue(queue, durable=False, arguments=expires)
        for _ in range(20):
            await channel.publish(
                b"x", Properties(), exchange="", routing_key=queue, mandatory=False
            )
        got: list[Any] = []
        await channel.qos(20)
        await channel.consume(queue, got.append)
        await wait_until(lambda: len(got) == 20, 5)
        closing = asyncio.create_task(channel.close())
        await asyncio.sleep(0)
        assert not channel.is_open
        for delivery in got:
            with pytest.raises(mmate.ChannelClosed):
                await channel.ack(delivery.delivery_tag)
        await closing
        other = await link.channel(confirms=False)  # the connection lives on
        assert (await other.declare_queue(queue, durable=False, arguments=expires)).message_count
        await other.delete_queue(queue)
        await asyncio.sleep(0.2)
        assert not lost and not link.is_closed
    finally:
        await link.close()
