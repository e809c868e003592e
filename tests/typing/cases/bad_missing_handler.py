"""A handlers subclass that does not implement every message it consumes."""

from generated.models import UpdateInventoryCommand
from generated.payment_service import PaymentServiceHandlers
from mmate import MessageContext


class Payments(PaymentServiceHandlers):
    async def handle_update_inventory_command(self, message: UpdateInventoryCommand, ctx: MessageContext) -> None:
        return None


payments = Payments()  # E: Cannot instantiate abstract class "Payments" with abstract attribute "handle_process_payment_command"
