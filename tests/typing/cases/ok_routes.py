"""Handlers registered per message type: functions (decorator and call), bound methods of several
objects, and factories; each checked against the message and, for a query, its reply."""

import mmate
from generated.models import CreateOrderCommand, GetOrderQuery, OrderReply, ProcessOrderCommand
from generated.order_service import OrderServiceRoutes

routes = OrderServiceRoutes()


@routes.handle_create_order_command
async def create(message: CreateOrderCommand, ctx: mmate.MessageContext) -> None:
    print(message.customer_id, ctx.message_id)


async def any_model(message: mmate.Model, ctx: mmate.MessageContext) -> None:
    """Takes any model: a wider parameter is fine."""


class Reader:
    async def get(self, message: GetOrderQuery, ctx: mmate.MessageContext) -> OrderReply:
        return OrderReply()


class ProcessOne:
    """Made per message by its class (a factory without arguments)."""

    async def handle(self, message: ProcessOrderCommand, ctx: mmate.MessageContext) -> None:
        print(message.order_id)


routes.handle_get_order_query(Reader().get)
routes.handle_process_order_command_with(ProcessOne)
other = OrderServiceRoutes()
other.handle_process_order_command(any_model)


def reader_factory() -> Reader:
    return Reader()


class QueryHandler:
    async def handle(self, message: GetOrderQuery, ctx: mmate.MessageContext) -> OrderReply:
        return OrderReply()


other.handle_get_order_query_with(QueryHandler)
# the decorator returns the function unchanged, so it can still be called
same: mmate.HandlerFunc[CreateOrderCommand, None] = create


async def run(client: mmate.Client) -> mmate.Serving:
    return await client.serve(routes, other, consumers=3, connections=2)
