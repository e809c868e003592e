"""Handlers registered per message type on the broker: functions (decorator and call), factories
making a handler per message, one service's types split over several objects, and the errors of
``serve`` when a consumed type has no handler or two."""

from __future__ import annotations

import asyncio
import json

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, message_count, wait_until
from mmate import MessageContext
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply

pytestmark = pytest.mark.broker


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(order_id=f"O-{n}", customer_id="C", amount=1.0)


async def test_functions_decorated_and_called_handle_every_message(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    routes = app.routes()
    events: list[str] = []
    commands: list[str] = []

    @routes.handle_order_created_event
    async def on_event(message: OrderCreatedEvent, ctx: MessageContext) -> None:
        assert ctx.queue == app.audit_queue
        events.append(message.order_id)

    async def on_command(message: CreateOrderCommand, ctx: MessageContext) -> None:
        commands.append(message.customer_id)

    async def on_query(message: GetOrderQuery, ctx: MessageContext) -> OrderReply:
        return OrderReply(order_id=message.order_id, status="from a function")

    assert routes.handle_create_order_command(on_command) is on_command
    routes.handle_get_order_query(on_query)
    assert routes.missing == []
    n = 20
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(routes)
        publisher = app.publisher(client)
        await asyncio.gather(*(publisher.publish_order_created_event(event(i)) for i in range(n)))
        await asyncio.gather(
            *(
                publisher.send_create_order_command(
                    CreateOrderCommand(customer_id=f"c{i}", amount=1)
                )
                for i in range(n)
            )
        )
        reply = await publisher.request_get_order_query(GetOrderQuery(order_id="O-7"))
        assert (reply.order_id, reply.status) == ("O-7", "from a function")
        await wait_until(lambda: len(events) == n and len(commands) == n)
        assert sorted(events) == sorted(f"O-{i}" for i in range(n))
        assert sorted(commands) == sorted(f"c{i}" for i in range(n))
        await serving.stop()
        assert serving.handled == 2 * n + 1 and serving.failed == 0
    assert await message_count(raw, app.audit_queue) == 0
    assert await message_count(raw, app.order_queue) == 0


async def test_a_factory_makes_one_handler_per_message(app: App) -> None:
    made: list[object] = []
    handled_by: list[int] = []

    class PerMessage:
        def __init__(self) -> None:
            made.append(self)
            self.calls = 0

        async def handle(self, message: OrderCreatedEvent, ctx: MessageContext) -> None:
            self.calls += 1
            handled_by.append(id(self))
            assert self.calls == 1  # a fresh object for every message

    class QueryHandler:
        async def handle(self, message: GetOrderQuery, ctx: MessageContext) -> OrderReply:
            return OrderReply(order_id=message.order_id, status="made")

    async def on_command(message: CreateOrderCommand, ctx: MessageContext) -> None:
        return None

    routes = app.routes()
    routes.handle_order_created_event_with(PerMessage)
    routes.handle_get_order_query_with(QueryHandler)
    routes.handle_create_order_command(on_command)
    n = 15
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        await client.serve(routes)
        publisher = app.publisher(client)
        await asyncio.gather(*(publisher.publish_order_created_event(event(i)) for i in range(n)))
        reply = await publisher.request_get_order_query(GetOrderQuery(order_id="O-1"))
        assert reply.status == "made"
        await wait_until(lambda: len(handled_by) == n)
    assert len(made) == n and len(set(handled_by)) == n


async def test_one_service_split_over_several_objects(app: App) -> None:
    class Writer:
        def __init__(self) -> None:
            self.commands: list[str] = []

        async def create(self, message: CreateOrderCommand, ctx: MessageContext) -> None:
            self.commands.append(message.customer_id)

    class Reader:
        async def get(self, message: GetOrderQuery, ctx: MessageContext) -> OrderReply:
            return OrderReply(order_id=message.order_id, status="read")

    class Auditor:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def audit(self, message: OrderCreatedEvent, ctx: MessageContext) -> None:
            self.seen.append(message.order_id)

    writer, reader, auditor = Writer(), Reader(), Auditor()
    commands_and_queries = app.routes()
    commands_and_queries.handle_create_order_command(writer.create)
    commands_and_queries.handle_get_order_query(reader.get)
    audit = app.routes()  # a second registry of the same service
    audit.handle_order_created_event(auditor.audit)
    assert commands_and_queries.missing == ["OrderCreatedEvent"]
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(commands_and_queries, audit)
        publisher = app.publisher(client)
        await publisher.send_create_order_command(CreateOrderCommand(customer_id="w", amount=1))
        await publisher.publish_order_created_event(event(1))
        assert (await publisher.request_get_order_query(GetOrderQuery(order_id="q"))).status == (
            "read"
        )
        await wait_until(lambda: writer.commands == ["w"] and auditor.seen == ["O-1"])
        assert sorted(serving.groups) == sorted([app.order_queue, app.audit_queue])


async def test_a_dead_letter_names_the_registered_function(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    routes = app.routes()

    async def refuse_orders(message: CreateOrderCommand, ctx: MessageContext) -> None:
        raise RuntimeError("no orders today")

    async def nothing(message: OrderCreatedEvent, ctx: MessageContext) -> None:
        return None

    async def query(message: GetOrderQuery, ctx: MessageContext) -> OrderReply:
        return OrderReply(order_id="x")

    routes.handle_create_order_command(refuse_orders)
    routes.handle_order_created_event(nothing)
    routes.handle_get_order_query(query)
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        serving = await client.serve(routes)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: serving.failed == 1)
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
    dead = await raw.basic_get(f"{app.order_queue}.dlq", no_ack=True)
    assert json.loads(dead.body)["payload"]["customerId"] == "c"
    headers = dead.header.properties.headers
    assert headers["x-mmate-handler"].endswith("refuse_orders")
    assert headers["x-mmate-error-class"] == "RuntimeError"


async def test_serve_names_the_types_nothing_handles_and_starts_nothing(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    routes = app.routes()

    async def on_event(message: OrderCreatedEvent, ctx: MessageContext) -> None:
        return None

    routes.handle_order_created_event(on_event)
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.MmateError) as raised:
            await client.serve(routes)
        text = str(raised.value)
        assert "CreateOrderCommand" in text and "GetOrderQuery" in text
        assert app.order_queue in text and "OrderCreatedEvent" not in text
        assert client.servings == []
        ok = await raw.queue_declare(app.audit_queue, passive=True)
        assert ok.consumer_count == 0
        # Only the queue whose types are all handled: fine.
        serving = await client.serve(routes, queues=[app.audit_queue])
        assert [c.queue for c in serving.consumers] == [app.audit_queue]


async def test_two_handlers_for_one_type_are_refused(app: App) -> None:
    async def one(message: OrderCreatedEvent, ctx: MessageContext) -> None:
        return None

    async def two(message: OrderCreatedEvent, ctx: MessageContext) -> None:
        return None

    routes = app.routes()
    routes.handle_order_created_event(one)
    with pytest.raises(mmate.MmateError, match="OrderCreatedEvent already has a handler"):
        routes.handle_order_created_event(two)
    other = app.routes()
    other.handle_order_created_event(two)
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        with pytest.raises(mmate.MmateError, match=r"OrderCreatedEvent has two handlers, .*one"):
            await client.serve(routes, other, queues=[app.audit_queue])
        with pytest.raises(mmate.MmateError, match="Routes registry"):
            await client.serve(object())  # type: ignore[arg-type]  # what mypy rejects, at runtime
