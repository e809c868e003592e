"""``mmate.testing.Harness`` on the example system of specs/ (generated/): typed records of what
was published (with its route), handled, retried and dead-lettered (with the reason), ``idle``
and ``advance``."""

from __future__ import annotations

from decimal import Decimal

import mmate
import pytest
from mmate._transport.memory import MemoryBroker
from mmate.testing import Harness, Published, Recorder

from generated import topology
from generated.models import (
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderLine,
    OrderReply,
    ProcessOrderCommand,
    Region,
)
from generated.order_service import OrderServicePublisher, OrderServiceRoutes
from generated.storefront import StorefrontPublisher


def command(customer: str = "C-1", region: Region = Region.EU) -> CreateOrderCommand:
    line = OrderLine(product_id="P-1", quantity=1, unit_price=Decimal("2.5"))
    return CreateOrderCommand(customer_id=customer, region=region, lines=[line])


def routes(failures: dict[str, BaseException] | None = None) -> OrderServiceRoutes:
    """Order-service handlers: a command publishes an event; ProcessOrderCommand raises the
    error given for its order id; the query echoes the id."""
    r = OrderServiceRoutes()
    fail = failures or {}

    @r.handle_create_order_command
    async def created(message: CreateOrderCommand, ctx: mmate.MessageContext) -> None:
        event = OrderCreatedEvent(
            order_id=f"O-{message.customer_id}",
            customer_id=message.customer_id,
            amount=2.5,
            region=message.region,
        )
        await ctx.publisher(OrderServicePublisher).publish_order_created_event(event)

    @r.handle_process_order_command
    async def process(message: ProcessOrderCommand, ctx: mmate.MessageContext) -> None:
        if message.order_id in fail:
            raise fail[message.order_id]

    @r.handle_get_order_query
    async def query(message: GetOrderQuery, ctx: mmate.MessageContext) -> OrderReply:
        return OrderReply(success=message.order_id != "missing")

    return r


async def test_published_is_typed_and_filtered_by_route() -> None:
    async with Harness(*topology.SERVICES.values()) as harness:
        await harness.serve(routes())
        storefront = harness.publisher(StorefrontPublisher)
        await storefront.send_create_order_command(command("A", Region.EU))
        await storefront.send_create_order_command(command("B", Region.US))
        await harness.idle()
        assert harness.handled(CreateOrderCommand) == [command("A"), command("B", Region.US)]
        events = harness.published(OrderCreatedEvent)
        assert [e.customer_id for e in events] == ["A", "B"]
        assert all(isinstance(e, OrderCreatedEvent) for e in events)
        us = harness.publications(OrderCreatedEvent, routing_key="order.us.created")
        assert [p.message.customer_id for p in us] == ["B"]
        assert isinstance(us[0], Published) and us[0].exchange == "mmate.events"
        assert us[0].kind == "publish" and us[0].message_type == "OrderCreatedEvent"
        assert harness.publications(OrderCreatedEvent, exchange="elsewhere") == []
        commands = harness.publications(CreateOrderCommand)
        assert [p.routing_key for p in commands] == ["cmd.order-service.CreateOrderCommand"] * 2
        # the event's correlation id is the command's message id (ctx.publisher)
        assert harness.publications(OrderCreatedEvent)[0].correlation_id == commands[0].message_id


async def test_a_publish_that_fails_is_not_recorded() -> None:
    # only the storefront's topology: nothing is bound for the commands it sends
    async with Harness(topology.STOREFRONT) as harness:
        with pytest.raises(mmate.UnroutableError):
            await harness.publisher(StorefrontPublisher).send_create_order_command(command())
        assert harness.publications(CreateOrderCommand) == []


async def test_a_query_reply_is_recorded_as_a_reply() -> None:
    async with Harness(*topology.SERVICES.values()) as harness:
        await harness.serve(routes())
        storefront = harness.publisher(StorefrontPublisher)
        reply = await storefront.request_get_order_query(GetOrderQuery(order_id="O-1"))
        assert isinstance(reply, OrderReply) and reply.success
        [published] = harness.publications(OrderReply)
        assert published.kind == "reply" and published.message == reply
        [query] = harness.handled(GetOrderQuery)
        assert query.order_id == "O-1" and query.reply_to == harness.client.reply_queue


async def test_retried_then_dead_lettered_with_the_reason_and_permanent_errors_at_once() -> None:
    failures: dict[str, BaseException] = {
        "flaky": mmate.TransientError("not yet"),
        "broken": mmate.PermanentError("never"),
    }
    async with Harness(*topology.SERVICES.values()) as harness:
        await harness.serve(routes(failures))
        storefront = harness.publisher(StorefrontPublisher)
        for order_id in ("flaky", "broken", "fine"):
            await storefront.send_process_order_command(ProcessOrderCommand(order_id=order_id))
        await harness.idle()
        assert [m.order_id for m in harness.handled(ProcessOrderCommand)] == ["fine"]
        [broken] = harness.dead_lettered(ProcessOrderCommand, reason="permanent-error")
        assert broken.message == ProcessOrderCommand(order_id="broken")
        assert isinstance(broken.error, mmate.PermanentError) and broken.attempt == 1
        assert [s.message for s in harness.retried(ProcessOrderCommand)] == [
            ProcessOrderCommand(order_id="flaky")
        ]  # the first attempt; the next waits for its backoff
        await harness.advance(60)
        retried = harness.retried(ProcessOrderCommand)
        assert [s.attempt for s in retried] == [1, 2, 3]
        assert {s.queue for s in retried} == {"order-service-queue"}
        exhausted = harness.dead_lettered(reason="retries-exhausted")
        assert [(s.message, s.attempt) for s in exhausted] == [
            (ProcessOrderCommand(order_id="flaky"), 4)
        ]
        assert len(harness.dead_lettered()) == 2
        # the broker holds both dead letters
        assert harness.broker.message_count("order-service-queue.dlq") == 2


async def test_advance_delivers_a_delayed_command_at_its_time() -> None:
    async with Harness(*topology.SERVICES.values()) as harness:
        await harness.serve(routes())
        storefront = harness.publisher(StorefrontPublisher)
        await storefront.send_process_order_command(ProcessOrderCommand(order_id="later"), delay=90)
        await harness.idle()
        assert harness.handled(ProcessOrderCommand) == []
        [delayed] = harness.publications(ProcessOrderCommand)
        assert delayed.routing_key == "cmd.order-service.ProcessOrderCommand"  # its destination
        await harness.advance(89)
        assert harness.handled(ProcessOrderCommand) == []
        await harness.advance(1)
        assert harness.handled(ProcessOrderCommand) == [ProcessOrderCommand(order_id="later")]


async def test_clients_share_the_broker_and_user_interceptors_run_too() -> None:
    seen: list[str] = []

    class Tap(mmate.Interceptor):
        def on_outcome(self, outcome: mmate.Outcome) -> None:
            seen.append(outcome.result)

    async with Harness(*topology.SERVICES.values(), interceptors=[Tap()]) as harness:
        storefront_client = await harness.add_client("storefront")
        await harness.serve(routes())
        await harness.publisher(
            StorefrontPublisher, client=storefront_client
        ).send_create_order_command(command())
        await harness.idle()
        assert seen == ["handled"]
        assert len(harness.handled(CreateOrderCommand)) == 1
        assert storefront_client.service == "storefront" and harness.client.service == "mmate-test"
        url = harness.broker.url
    assert (
        MemoryBroker.named(url.removeprefix("memory://")).queue_names() == []
    )  # closed: a new one
    MemoryBroker.named(url.removeprefix("memory://")).close()


async def test_unstarted_harness_says_so_and_recorder_is_a_plain_interceptor() -> None:
    harness = Harness()
    with pytest.raises(mmate.MmateError, match="not started"):
        harness.client  # noqa: B018
    harness.broker.close()
    assert isinstance(Recorder(), mmate.Interceptor)
