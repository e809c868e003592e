"""The example system of specs/ running end to end on RabbitMQ, built on the generated package.

Six services, each with its own ``mmate.Client`` (as if they were separate processes):

* storefront sends ``CreateOrderCommand`` and ``ProcessOrderCommand`` and asks ``GetOrderQuery``;
* order-service handles them: it stores the order, publishes ``OrderCreatedEvent``, sends
  ``UpdateInventoryCommand`` per order line and a ``ProcessPaymentCommand``, answers the query;
* order-audit logs every ``OrderCreatedEvent``; inventory-service and payment-service handle
  their commands;
* banking-service publishes ``BankingRequest`` to its FIFO queue and handles them in publish order.

Exits 0 when every message was handled as expected within the timeout, 1 otherwise. The spec's queue
and exchange names are durable on purpose (they are the system's names); ``--cleanup`` deletes the
queues the demo declared afterwards (never the shared ``mmate.*`` exchanges). Run with ``make demo``
or ``python examples/demo.py [--url URL] [--orders N] [--timeout S] [--cleanup]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # the repository root holds generated/

import mmate

from generated import topology
from generated.banking_service import BankingServiceHandlers, BankingServicePublisher
from generated.inventory_service import InventoryServiceHandlers
from generated.models import (
    BankingOperation,
    BankingRequest,
    CreateOrderCommand,
    GetOrderQuery,
    Order,
    OrderCreatedEvent,
    OrderLine,
    OrderReply,
    ProcessOrderCommand,
    ProcessPaymentCommand,
    Region,
    UpdateInventoryCommand,
)
from generated.order_audit import OrderAuditHandlers
from generated.order_service import OrderServiceHandlers, OrderServicePublisher
from generated.payment_service import PaymentServiceHandlers
from generated.storefront import StorefrontPublisher

DEFAULT_URL = os.environ.get("MMATE_TEST_URL", "amqp://guest:guest@127.0.0.1:5672/")
RUN = uuid.uuid4().hex[:6]
"""Every message of this run carries a correlation id starting with ``demo-<RUN>``; messages left in
the durable queues by an earlier, interrupted run are handled (drained) but not counted."""
seen: Counter[str] = Counter()


def count(name: str, ctx: mmate.MessageContext) -> None:
    if (ctx.correlation_id or "").startswith(f"demo-{RUN}"):
        seen[name] += 1


def say(service: str, text: str) -> None:
    print(f"[{service:17}] {text}", flush=True)


class OrderService(OrderServiceHandlers):
    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    async def handle_create_order_command(
        self, message: CreateOrderCommand, ctx: mmate.MessageContext
    ) -> None:
        order_id = f"ORD-{RUN}-{len(self.orders) + 1}"
        amount = sum((line.unit_price * line.quantity for line in message.lines), Decimal(0))
        order = Order(
            order_id=order_id,
            customer_id=message.customer_id,
            region=message.region,
            lines=message.lines,
            amount=amount,
            created_at=datetime.now(UTC),
        )
        self.orders[order_id] = order
        say(
            "order-service",
            f"created {order_id} for {message.customer_id}: {amount} ({ctx.correlation_id})",
        )
        follow_up = ctx.publisher(OrderServicePublisher)  # keeps the correlation id
        await follow_up.publish_order_created_event(
            OrderCreatedEvent(
                aggregate_id=order_id,
                order_id=order_id,
                customer_id=message.customer_id,
                amount=float(amount),
                region=message.region,
            )
        )
        for line in message.lines:
            await follow_up.send_update_inventory_command(
                UpdateInventoryCommand(product_id=line.product_id, quantity=-line.quantity)
            )
        await follow_up.send_process_payment_command(
            ProcessPaymentCommand(order_id=order_id, amount=amount, payment_id=uuid.uuid4())
        )
        count("CreateOrderCommand", ctx)

    async def handle_process_order_command(
        self, message: ProcessOrderCommand, ctx: mmate.MessageContext
    ) -> None:
        say("order-service", f"processing {message.order_id}")
        count("ProcessOrderCommand", ctx)

    async def handle_get_order_query(
        self, message: GetOrderQuery, ctx: mmate.MessageContext
    ) -> OrderReply:
        count("GetOrderQuery", ctx)
        return OrderReply(order=self.orders.get(message.order_id))


class OrderAudit(OrderAuditHandlers):
    def __init__(self) -> None:
        self.order_ids: list[str] = []

    async def handle_order_created_event(
        self, message: OrderCreatedEvent, ctx: mmate.MessageContext
    ) -> None:
        say(
            "order-audit", f"{message.order_id} created in {message.region.value}, {message.amount}"
        )
        if message.order_id.startswith(f"ORD-{RUN}-"):
            self.order_ids.append(message.order_id)
        count("OrderCreatedEvent", ctx)


class Inventory(InventoryServiceHandlers):
    async def handle_update_inventory_command(
        self, message: UpdateInventoryCommand, ctx: mmate.MessageContext
    ) -> None:
        say("inventory-service", f"stock of {message.product_id} {message.quantity:+d}")
        count("UpdateInventoryCommand", ctx)


class Payment(PaymentServiceHandlers):
    async def handle_process_payment_command(
        self, message: ProcessPaymentCommand, ctx: mmate.MessageContext
    ) -> None:
        say(
            "payment-service", f"charged {message.amount} {message.currency} for {message.order_id}"
        )
        count("ProcessPaymentCommand", ctx)


class Banking(BankingServiceHandlers):
    def __init__(self) -> None:
        self.sequence: list[int] = []

    async def handle_banking_request(
        self, message: BankingRequest, ctx: mmate.MessageContext
    ) -> None:
        say("banking-service", f"#{message.sequence_no} {message.operation.value} {message.amount}")
        if message.request_id.startswith(f"{RUN}-"):
            self.sequence.append(message.sequence_no)
        count("BankingRequest", ctx)


async def wait_for(condition: object, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def run(url: str, orders: int, timeout: float, cleanup: bool) -> bool:
    order_service, audit, banking = OrderService(), OrderAudit(), Banking()
    services = ("order-service", "order-audit", "inventory-service", "payment-service")
    clients = {
        name: mmate.Client(url, service=name)
        for name in (*services, "banking-service", "storefront")
    }
    for client in clients.values():
        await client.connect()
    try:
        for service in topology.SERVICES.values():
            await clients["order-service"].declare(service)
        await clients["order-service"].serve(order_service)
        await clients["order-audit"].serve(audit)
        await clients["inventory-service"].serve(Inventory())
        await clients["payment-service"].serve(Payment())
        await clients["banking-service"].serve(banking)

        storefront = StorefrontPublisher(clients["storefront"])
        lines = [
            OrderLine(product_id="SKU-1", quantity=2, unit_price=Decimal("9.95")),
            OrderLine(product_id="SKU-2", quantity=1, unit_price=Decimal("24.50")),
        ]
        regions = list(Region)
        for n in range(orders):
            await storefront.send_create_order_command(
                CreateOrderCommand(
                    customer_id=f"CUST-{n}", region=regions[n % len(regions)], lines=lines
                ),
                correlation_id=f"demo-{RUN}-create-{n}",
            )
        if not await wait_for(lambda: len(audit.order_ids) >= orders, timeout):
            print("timed out waiting for the orders to be created", file=sys.stderr)
            return False
        for order_id in audit.order_ids:
            await storefront.send_process_order_command(
                ProcessOrderCommand(order_id=order_id),
                correlation_id=f"demo-{RUN}-process-{order_id}",
            )
            reply = await storefront.request_get_order_query(
                GetOrderQuery(order_id=order_id),
                timeout=timeout,
                correlation_id=f"demo-{RUN}-get-{order_id}",
            )
            if reply.order is None or reply.order.order_id != order_id:
                print(f"wrong reply for {order_id}: {reply}", file=sys.stderr)
                return False
            say("storefront", f"{order_id}: {len(reply.order.lines)} lines, {reply.order.amount}")
        missing = await storefront.request_get_order_query(
            GetOrderQuery(order_id="NO-SUCH-ORDER"), correlation_id=f"demo-{RUN}-get-missing"
        )
        say("storefront", f"NO-SUCH-ORDER: {missing.order}")

        transfers = 10
        async with clients["banking-service"].batch() as batch:
            batch_bank = BankingServicePublisher(batch)
            for seq in range(transfers):
                await batch_bank.send_banking_request(
                    BankingRequest(
                        operation=BankingOperation.TRANSFER,
                        from_account="ACC-1",
                        to_account="ACC-2",
                        amount=Decimal(seq + 1),
                        request_id=f"{RUN}-{seq}",
                        sequence_no=seq,
                    ),
                    correlation_id=f"demo-{RUN}-bank-{seq}",
                )

        expected = {
            "CreateOrderCommand": orders,
            "OrderCreatedEvent": orders,
            "UpdateInventoryCommand": orders * len(lines),
            "ProcessPaymentCommand": orders,
            "ProcessOrderCommand": orders,
            "GetOrderQuery": orders + 1,
            "BankingRequest": transfers,
        }
        done = await wait_for(lambda: all(seen[k] >= v for k, v in expected.items()), timeout)
        for name, want in expected.items():
            print(f"{name:24} expected {want:3}  handled {seen[name]:3}")
        in_order = banking.sequence == list(range(transfers))
        print(f"banking requests in publish order: {in_order}")
        return done and in_order and all(seen[k] == v for k, v in expected.items())
    finally:
        for client in clients.values():
            await client.close(timeout=5)
        if cleanup:
            await delete_queues(url)


async def delete_queues(url: str) -> None:
    import aiormq

    queues = {q.name for s in topology.SERVICES.values() for q in s.queues}
    connection = await aiormq.connect(url)
    try:
        for name in sorted(queues):
            channel = await connection.channel()
            await channel.queue_delete(name)
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "--cleanup", action="store_true", help="delete the demo's queues afterwards"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        ok = asyncio.run(
            asyncio.wait_for(
                run(args.url, args.orders, args.timeout, args.cleanup), args.timeout * 3
            )
        )
    except (TimeoutError, mmate.MmateError) as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("demo completed" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
