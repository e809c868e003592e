"""A query handler returning something other than its reply model."""

from generated.models import CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, ProcessOrderCommand
from generated.order_service import OrderServiceHandlers
from mmate import MessageContext


class Orders(OrderServiceHandlers):
    async def handle_create_order_command(self, message: CreateOrderCommand, ctx: MessageContext) -> None:
        return None

    async def handle_process_order_command(self, message: ProcessOrderCommand, ctx: MessageContext) -> None:
        return None

    async def handle_get_order_query(self, message: GetOrderQuery, ctx: MessageContext) -> OrderCreatedEvent:  # E: Return type "Coroutine[Any, Any, OrderCreatedEvent]" of "handle_get_order_query" incompatible
        return OrderCreatedEvent(order_id="o", customer_id="c", amount=1)
