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


_in_flight = 0


class Gated(Inventory):
    """For tests/hosting/test_run_promises.py: appends ``start <product> <in flight>`` to
    ``HOSTING_EVENTS`` as a handler starts, then (except for scheduled ticks) waits for the file
    ``HOSTING_GATE`` when that is set and sleeps ``HOSTING_DELAY``; a product id starting with
    ``transient-`` raises ``TransientError``, ``permanent-`` ``PermanentError``; any other is
    logged as handled."""

    async def handle_update_inventory_command(
        self, message: UpdateInventoryCommand, ctx: mmate.MessageContext
    ) -> None:
        global _in_flight
        product = message.product_id
        _in_flight += 1
        try:
            _event(f"start {product} {_in_flight}")
            gate = os.environ.get("HOSTING_GATE")
            while gate and not product.startswith("tick-") and not os.path.exists(gate):
                await asyncio.sleep(0.02)
            await asyncio.sleep(float(os.environ.get("HOSTING_DELAY", "0")))
            if product.startswith("transient-"):
                raise mmate.TransientError(f"{product}: try again later")
            if product.startswith("permanent-"):
                raise mmate.PermanentError(f"{product}: never works")
            with open(os.environ["HOSTING_LOG"], "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} {product}\n")
        finally:
            _in_flight -= 1


gated = mmate.App(Gated, service="inventory-service", prefetch=50, concurrency=50)
"""An App of ``Gated`` handlers (prefetch and concurrency 50 unless configured otherwise)."""


def gated_tick(tick: datetime) -> UpdateInventoryCommand:
    """The message of a tick; records ``tick <epoch seconds of the tick>`` as it is made (that
    is, only when the tick is published)."""
    _event(f"tick {tick.timestamp()}")
    return UpdateInventoryCommand(product_id=f"tick-{tick.timestamp()}", quantity=1)


gated_scheduled = mmate.App(Gated, service="inventory-service", prefetch=50, concurrency=50)
"""``gated`` with a schedule publishing to the service itself every second."""
gated_scheduled.schedule(
    "hosting-gated-tick",
    "@every 1s",
    lambda client: OrderServicePublisher(client).send_update_inventory_command,
    gated_tick,
)
