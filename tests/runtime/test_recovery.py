"""A lost connection is re-established: publishing, consuming and requests carry on afterwards."""

from __future__ import annotations

import asyncio
import subprocess

import mmate
import pytest
from conftest import BROKER_URL, wait_until
from mmate import MessageContext
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply

pytestmark = pytest.mark.broker


def _kill_connections(name_part: str) -> int:
    """Close (broker side) every connection whose name contains ``name_part``."""
    try:
        listing = subprocess.run(
            ["rabbitmqctl", "list_connections", "pid", "client_properties", "--no-table-headers"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"rabbitmqctl not usable: {exc}")
    killed = 0
    for line in listing.splitlines():
        if name_part in line:
            pid = line.split("\t", 1)[0].strip()
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "test: connection killed"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            killed += 1
    return killed


async def test_client_recovers_from_a_lost_connection(app: App) -> None:
    class Handlers(app.handlers):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            self.events: list[int] = []

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            self.events.append(message.sequence)

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            return None

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            return OrderReply(order_id=message.order_id)

    service = f"recovery-{app.suffix}"
    async with mmate.Client(BROKER_URL, service=service) as client:
        await client.declare(app.order_service)
        handlers = Handlers()
        await client.serve(handlers)
        publisher = app.publisher(client)
        await publisher.publish_order_created_event(
            OrderCreatedEvent(sequence=1, order_id="o", customer_id="c", amount=1)
        )
        assert (
            await publisher.request_get_order_query(GetOrderQuery(order_id="a"))
        ).order_id == "a"
        await wait_until(lambda: handlers.events == [1])

        assert await asyncio.to_thread(_kill_connections, service) == 1
        # the consumers notice first and reconnect (redeclaring the topology)
        await wait_until(lambda: client.connection.reconnects == 1, timeout=15)

        # the next publish may fail (it is the one that notices); a later one goes through
        for _ in range(50):
            try:
                await publisher.publish_order_created_event(
                    OrderCreatedEvent(sequence=2, order_id="o", customer_id="c", amount=1)
                )
                break
            except mmate.MmateError:
                await asyncio.sleep(0.1)
        await wait_until(lambda: 2 in handlers.events, timeout=15)  # consumers are back
        reply = await publisher.request_get_order_query(GetOrderQuery(order_id="b"), timeout=10)
        assert reply.order_id == "b"  # a new reply queue
        assert client.connection.reconnects == 1
