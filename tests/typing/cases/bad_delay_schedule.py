"""Delay and schedule APIs reject a message that does not fit the publisher method."""

from datetime import UTC, datetime

import mmate
from generated.models import CreateOrderCommand, ProcessOrderCommand
from generated.storefront import StorefrontPublisher


async def wrong(client: mmate.Client, other: CreateOrderCommand) -> None:
    publisher = StorefrontPublisher(client)
    command = ProcessOrderCommand(order_id="o-1")
    await publisher.send_process_order_command(command, delay="5s")  # E: [arg-type]
    await client.publish_with_delay(publisher.send_process_order_command, other, 5)  # E: [misc]
    await client.schedule_command(publisher.send_process_order_command, command, 5)  # E: [arg-type]
    await client.schedule_command(publisher.send_process_order_command, command, datetime.now(UTC), colour=1)  # E: [call-arg]


def wrong_factory(client: mmate.Client) -> None:
    publisher = StorefrontPublisher(client)
    mmate.Scheduler(client).add("x", "@hourly", publisher.send_process_order_command, lambda tick: 5)  # E: [return-value]
