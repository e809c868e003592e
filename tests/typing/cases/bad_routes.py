"""A registered handler whose message parameter or return type does not match its route."""

import mmate
from generated.models import (
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderReply,
    ProcessOrderCommand,
)
from generated.order_service import OrderServiceRoutes

routes = OrderServiceRoutes()


async def wrong_message(message: ProcessOrderCommand, ctx: mmate.MessageContext) -> None:
    return None


async def wrong_reply(message: GetOrderQuery, ctx: mmate.MessageContext) -> OrderCreatedEvent:
    return OrderCreatedEvent(order_id="o", customer_id="c", amount=1)


async def no_reply(message: GetOrderQuery, ctx: mmate.MessageContext) -> None:
    return None


def not_async(message: CreateOrderCommand, ctx: mmate.MessageContext) -> None:
    return None


async def one_argument(message: CreateOrderCommand) -> None:
    return None


class WrongHandle:
    async def handle(self, message: CreateOrderCommand, ctx: mmate.MessageContext) -> OrderReply:
        return OrderReply()


class NoHandle:
    async def run(self, message: GetOrderQuery, ctx: mmate.MessageContext) -> OrderReply:
        return OrderReply()


routes.handle_create_order_command(wrong_message)  # E: [arg-type]
routes.handle_get_order_query(wrong_reply)  # E: [arg-type]
routes.handle_get_order_query(no_reply)  # E: [arg-type]
routes.handle_create_order_command(not_async)  # E: [arg-type]
routes.handle_create_order_command(one_argument)  # E: [arg-type]
routes.handle_get_order_query_with(WrongHandle)  # E: [arg-type]
routes.handle_get_order_query_with(NoHandle)  # E: [arg-type]


@routes.handle_process_order_command  # E: [arg-type]
async def decorated_wrong(message: CreateOrderCommand, ctx: mmate.MessageContext) -> None:
    return None


async def serve_wrong(client: mmate.Client) -> None:
    await client.serve(object())  # E: [arg-type]
