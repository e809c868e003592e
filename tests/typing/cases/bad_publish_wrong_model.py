"""Publishing a model through another message's publisher method."""

from generated.models import ProcessOrderCommand
from generated.storefront import StorefrontPublisher
from mmate import PublishTransport


async def send(transport: PublishTransport) -> None:
    publisher = StorefrontPublisher(transport)
    await publisher.send_create_order_command(ProcessOrderCommand(order_id="o-1"))  # E: [arg-type]
