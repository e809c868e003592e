"""The service ``mmate run`` hosts in tests/hosting: inventory-service of the example system.

Each handled ``UpdateInventoryCommand`` appends ``<pid> <product_id>`` to the file named by
``HOSTING_LOG``, after sleeping ``HOSTING_DELAY`` seconds (default 0): the tests count lines.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

import mmate

from generated.inventory_service import InventoryServiceHandlers, InventoryServiceRoutes
from generated.models import UpdateInventoryCommand
from generated.order_service import OrderServicePublisher


class Inventory(InventoryServiceHandlers):
    def __init__(self, client: mmate.Client | None = None) -> None:
        self.client = client

    async def handle_update_inventory_command(
        self, message: UpdateInventoryCommand, ctx: mmate.MessageContext
    ) -> None:
        await asyncio.sleep(float(os.environ.get("HOSTING_DELAY", "0")))
        with open(os.environ["HOSTING_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {message.product_id}\n")


handlers = Inventory()
"""(a) a handler object."""


async def make() -> Inventory:
    """(b) a zero-argument factory (async)."""
    return Inventory()


app = mmate.App(Inventory, service="inventory-service", prefetch=50, concurrency=20)
"""(c) an App making its handler with the Client."""

started: list[str] = []


@app.on_startup
async def hello(client: mmate.Client) -> None:
    started.append(client.service)


def tick_message(tick: datetime) -> UpdateInventoryCommand:
    return UpdateInventoryCommand(product_id=f"tick-{tick:%H%M%S}", quantity=1)


scheduled = mmate.App(Inventory, service="inventory-service")
"""An App with a schedule publishing to the service itself every second."""
scheduled.schedule(
    "hosting-test-tick",
    "@every 1s",
    lambda client: OrderServicePublisher(client).send_update_inventory_command,
    tick_message,
)


def _event(text: str) -> None:
    """Append ``text`` to the file named by ``HOSTING_EVENTS`` (when set)."""
    if "HOSTING_EVENTS" in os.environ:
        with open(os.environ["HOSTING_EVENTS"], "a", encoding="utf-8") as events:
            events.write(text + "\n")


failing = mmate.App(Inventory, service="inventory-service")
"""An App whose startup hook raises."""


@failing.on_startup
async def warm_cache(client: mmate.Client) -> None:
    raise RuntimeError("cache unreachable")


class Recorded(Inventory):
    def __init__(self, client: mmate.Client) -> None:
        super().__init__(client)
        _event(f"handlers made, serving {len(client.servings)}")


def ordered() -> mmate.App:
    """A (sync) factory of an App recording when its hooks and handler maker run; its startup
    hook waits for the file ``HOSTING_GATE`` when that is set."""
    made = mmate.App(Recorded, service="inventory-service")

    @made.on_startup
    async def first(client: mmate.Client) -> None:
        _event(f"startup, connection {client.connection.state}")
        gate = os.environ.get("HOSTING_GATE")
        while gate and not os.path.exists(gate):
            await asyncio.sleep(0.05)

    @made.on_shutdown
    async def last(client: mmate.Client) -> None:
        _event(f"shutdown, serving {len(client.servings)}, connection {client.connection.state}")

    return made


routes = InventoryServiceRoutes()
"""(a) a ``<Service>Routes`` registry."""


@routes.handle_update_inventory_command
async def update(message: UpdateInventoryCommand, ctx: mmate.MessageContext) -> None:
    await Inventory().handle_update_inventory_command(message, ctx)
