"""Delays, the seed's scheduling names and recurring schedules type-check with generated
publishers."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import mmate
from generated.models import ProcessOrderCommand
from generated.storefront import StorefrontPublisher


async def delays(client: mmate.Client) -> None:
    publisher = StorefrontPublisher(client)
    command = ProcessOrderCommand(order_id="o-1")
    await publisher.send_process_order_command(command, delay=30)
    await publisher.send_process_order_command(command, delay=timedelta(hours=2))
    await publisher.send_process_order_command(command, schedule_at=datetime.now(UTC))
    await client.publish_with_delay(publisher.send_process_order_command, command, 5)
    await client.schedule_command(
        publisher.send_process_order_command,
        command,
        datetime.now(UTC) + timedelta(days=1),
        correlation_id="c-1",
    )


def schedules(client: mmate.Client) -> mmate.Scheduler:
    publisher = StorefrontPublisher(client)
    scheduler = mmate.Scheduler(client, misfire_grace=30)
    scheduler.add(
        "nightly",
        "0 3 * * mon-fri",
        publisher.send_process_order_command,
        lambda tick: ProcessOrderCommand(order_id=f"batch-{tick:%Y%m%d}"),
        tz=ZoneInfo("Europe/Oslo"),
        correlation_id="nightly",
    )
    return scheduler
