"""A handler override that takes another message type than the one it handles."""

from generated.inventory_service import InventoryServiceHandlers
from generated.models import ProcessPaymentCommand
from mmate import MessageContext


class Inventory(InventoryServiceHandlers):
    async def handle_update_inventory_command(self, message: ProcessPaymentCommand, ctx: MessageContext) -> None:  # E: [override]
        return None
