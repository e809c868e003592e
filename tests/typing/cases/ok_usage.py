"""Correct use of the generated package type-checks, and types are what they say."""

from decimal import Decimal
from typing import assert_type

from generated.models import (
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderLine,
    OrderReply,
    ProcessOrderCommand,
    Region,
)
from generated.order_service import OrderServiceHandlers, OrderServicePublisher
from generated.storefront import StorefrontPublisher
from mmate import MessageContext, PublishTransport


class Orders(OrderServiceHandlers):
    async def handle_create_order_command(
        self, message: CreateOrderCommand, ctx: MessageContext
    ) -> None:
        assert_type(message.lines, list[OrderLine])
        assert_type(message.region, Region)
        follow_up = ctx.publisher(OrderServicePublisher)
        event = OrderCreatedEvent(order_id="o-1", customer_id=message.customer_id, amount=1.5)
        await follow_up.publish_order_created_event(event, correlation_id="c-1", ttl=30)

    async def handle_process_order_command(
        self, message: ProcessOrderCommand, ctx: MessageContext
    ) -> None:
        assert_type(message.order_id, str)

    async def handle_get_order_query(self, message: GetOrderQuery, ctx: MessageContext) -> OrderReply:
        return OrderReply(order=None)


async def storefront(transport: PublishTransport) -> None:
    publisher = StorefrontPublisher(transport)
    line = OrderLine(product_id="SKU-1", quantity=2, unit_price=Decimal("9.95"))
    command = CreateOrderCommand(customer_id="c-1", region=Region.EU, lines=[line])
    await publisher.send_create_order_command(command, priority=5, headers={"x-tenant": "t"})
    reply = await publisher.request_get_order_query(GetOrderQuery(order_id="o-1"), timeout=5)
    assert_type(reply, OrderReply)
    assert_type(reply.order.amount if reply.order else None, Decimal | None)


handlers = Orders()
