"""An option that PublishOptions does not have."""

from generated.models import GetOrderQuery
from generated.storefront import StorefrontPublisher
from mmate import PublishTransport


async def ask(transport: PublishTransport) -> None:
    publisher = StorefrontPublisher(transport)
    await publisher.request_get_order_query(GetOrderQuery(order_id="o-1"), retries=3)  # E: Unexpected keyword argument "retries"
