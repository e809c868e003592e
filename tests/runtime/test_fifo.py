"""FIFO queue (single active consumer): publish order, exactly one active consumer, takeover on
stop."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import mmate
from conftest import message_count, wait_until
from mmate import MessageContext
from mmate._transport.base import Channel
from sample_app import App, BankingRequest


def banking_handlers(app: App, name: str, log: list[tuple[str, int]]) -> object:
    class Banking(app.banking_handlers):
        async def handle_banking_request(
            self, message: BankingRequest, ctx: MessageContext
        ) -> None:
            log.append((name, message.sequence_no))

    return Banking()


async def test_fifo_order_single_active_consumer_and_takeover(
    url: str, app: App, probe: Channel
) -> None:
    n = 3000
    handled: list[tuple[str, int]] = []
    async with (
        mmate.Client(url, service="banking-service") as first,
        mmate.Client(url, service="banking-service") as second,
        mmate.Client(url, service="teller") as teller,
    ):
        await first.declare(app.banking_service)
        publisher = app.banking_publisher(teller)
        # publish in order (each publish confirmed before the next: a strict publish order)
        async with teller.batch() as batch:
            batch_publisher = app.banking_publisher(batch)
            for i in range(n):
                await batch_publisher.send_banking_request(
                    BankingRequest(sequence_no=i, amount=Decimal(i))
                )
        assert publisher is not None
        serving_a = await first.serve(banking_handlers(app, "a", handled))
        serving_b = await second.serve(banking_handlers(app, "b", handled))
        await wait_until(lambda: len(handled) >= n // 3, timeout=30)
        assert {name for name, _ in handled} == {"a"}  # b is a standby while a is active
        await serving_a.stop()
        await wait_until(lambda: len(handled) >= n, timeout=30)
        await asyncio.sleep(0.2)
        await serving_b.stop()
    a = [seq for name, seq in handled if name == "a"]
    b = [seq for name, seq in handled if name == "b"]
    assert len(handled) == n  # none lost, none twice
    assert a == list(range(len(a)))  # a got a prefix, in order
    assert b == list(range(len(a), n))  # b took over exactly where a stopped, in order
    assert len(b) > 0
    assert [seq for _, seq in handled] == list(range(n))
    assert await message_count(probe, app.fifo_queue) == 0
