"""Transactional publishing on the broker: messages reach their queue only on commit, none after a
rollback, an exception in ``async with``, a lost connection or a killed process. Every check
counts the messages in the queue (passive declare) or reads them back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import aiormq.abc
import mmate
import pytest
from backends import requires
from conftest import message_count
from delay_support import prefix_fixture
from mmate._transport.base import Channel
from sample_app import App, GetOrderQuery, OrderCreatedEvent, Region

__all__ = ["prefix_fixture"]  # a fixture, imported for pytest

HERE = Path(__file__).resolve().parent


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"ORDER-{n}",
        sequence=n,
        order_id=f"ORDER-{n}",
        customer_id="C-1",
        amount=n,
        region=Region.EU,
    )


async def sync(tx: mmate.Transaction, queue: str) -> None:
    """A round trip on the transaction's own channel: the broker has processed every publish
    sent on it before, so a message count taken afterwards would show them if they were
    visible."""
    channel = tx._channel
    assert channel is not None
    await channel.declare_queue(queue, passive=True)


async def drain_ids(probe: Channel, queue: str) -> list[str]:
    ids: list[str] = []
    while True:
        msg = await probe.get(queue, no_ack=True)
        if msg is None:
            return ids
        ids.append(str(msg.properties.message_id))


async def test_messages_reach_the_queue_only_on_commit(url: str, app: App, probe: Channel) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        ids = [str(uuid.uuid4()) for _ in range(50)]
        async with client.begin_tx() as tx:
            publisher = app.publisher(tx)
            for n, message_id in enumerate(ids):
                await publisher.publish_order_created_event(event(n), message_id=message_id)
            await sync(tx, app.audit_queue)
            assert tx.pending == 50
            assert await message_count(probe, app.audit_queue) == 0
        assert tx.committed == 50 and tx.state == "closed"
        assert await drain_ids(probe, app.audit_queue) == ids  # all of them, in publish order


async def test_rollback_discards_and_the_transaction_goes_on(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        tx = client.begin_tx()
        publisher = app.publisher(tx)
        for n in range(20):
            await publisher.publish_order_created_event(event(n))
        await sync(tx, app.audit_queue)
        await tx.rollback()
        await sync(tx, app.audit_queue)
        assert await message_count(probe, app.audit_queue) == 0
        assert tx.rolled_back == 20 and tx.pending == 0

        # The same transaction object commits twice more; the rolled-back messages stay gone.
        for n in range(7):
            await publisher.publish_order_created_event(event(100 + n))
        await tx.commit()
        assert await message_count(probe, app.audit_queue) == 7
        for n in range(3):
            await publisher.publish_order_created_event(event(200 + n))
        await tx.commit()
        await tx.close()
        assert tx.committed == 10
        assert await message_count(probe, app.audit_queue) == 10


async def test_an_exception_in_the_block_rolls_back(url: str, app: App, probe: Channel) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        with pytest.raises(RuntimeError, match="payment refused"):
            async with client.begin_tx() as tx:
                for n in range(30):
                    await app.publisher(tx).publish_order_created_event(event(n))
                await sync(tx, app.audit_queue)
                raise RuntimeError("payment refused")
        assert tx.rolled_back == 30 and tx.committed == 0
        # A confirmed publish after it arrives, so the queue is readable and the count is real.
        await app.publisher(client).publish_order_created_event(event(999))
        assert await message_count(probe, app.audit_queue) == 1


async def test_a_lost_connection_loses_the_whole_transaction(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        tx = client.begin_tx()
        for n in range(25):
            await app.publisher(tx).publish_order_created_event(event(n))
        await sync(tx, app.audit_queue)
        conn = client.connection._conn  # this test's own connection only
        assert conn is not None
        await conn.close()
        with pytest.raises(mmate.TransactionError) as info:
            await tx.commit()
        assert info.value.outcome == "rolled-back"
        assert "25 uncommitted messages" in str(info.value)
        with pytest.raises(mmate.TransactionError):
            await app.publisher(tx).publish_order_created_event(event(99))  # never reopened
        await tx.close()
        assert await message_count(probe, app.audit_queue) == 0

        # The client reconnects; a new transaction works.
        async with client.begin_tx() as again:
            await app.publisher(again).publish_order_created_event(event(1))
        assert await message_count(probe, app.audit_queue) == 1


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import mmate
    from sample_app import OrderCreatedEvent, make_app

    async def main() -> None:
        url, suffix, alive = sys.argv[1], sys.argv[2], sys.argv[3]
        app = make_app(suffix)
        async with mmate.Client(url, service="tx-child") as client:
            channel = await client.connection.channel(confirms=False)
            await channel.declare_queue(alive, exclusive=True)   # vanishes with the connection
            tx = client.begin_tx()
            publisher = app.publisher(tx)
            def ev(n):
                return OrderCreatedEvent(order_id=f"O-{n}", customer_id="C", amount=n)
            for n in range(5):
                await publisher.publish_order_created_event(ev(n))
            await tx.commit()                                    # 5 committed
            for n in range(40):
                await publisher.publish_order_created_event(ev(100 + n))
            await tx._channel.declare_queue(alive, passive=True) # the broker has all 40
            print("ready", flush=True)
            await asyncio.Event().wait()                         # killed here, never commits

    asyncio.run(main())
    """
)


@requires("amqp_wire")  # the client under test is another process
async def test_a_process_killed_before_commit_publishes_nothing_of_it(
    url: str, app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
    alive = f"t.{app.suffix}.alive"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        url,
        app.suffix,
        alive,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"ready"
    finally:
        child.kill()
        await child.wait()
    # The broker has closed the child's connection once its exclusive queue is gone.
    conn = await aiormq.connect(url)
    try:
        for _ in range(1000):
            channel = await conn.channel()
            try:
                await channel.queue_declare(alive, passive=True)
            except aiormq.exceptions.ChannelLockedResource:
                await asyncio.sleep(0.02)  # still alive (exclusive to the child's connection)
                continue
            except aiormq.exceptions.ChannelNotFoundEntity:
                break
            raise AssertionError(f"{alive} is declared by someone else")
        else:
            raise AssertionError("the broker never noticed the killed process")
    finally:
        await conn.close()
    assert await message_count(raw, app.audit_queue) == 5  # the committed ones, none of the 40


async def test_unroutable_messages_are_returned_at_commit_and_the_rest_committed(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        tx = client.begin_tx()
        publisher = app.publisher(tx)
        for n in range(3):
            await publisher.publish_order_created_event(event(n))
        await publisher.publish_order_created_event(
            event(3), routing_key="nobody.listens", message_id="lost-one"
        )
        for n in range(4, 6):
            await publisher.publish_order_created_event(event(n))
        with pytest.raises(mmate.BatchPublishError) as info:
            await tx.commit()
        [failure] = info.value.failures
        assert (failure.index, failure.message_id) == (3, "lost-one")
        assert isinstance(failure.error, mmate.UnroutableError)
        assert failure.error.routing_key == "nobody.listens"
        assert info.value.total == 6 and tx.committed == 5
        assert await message_count(probe, app.audit_queue) == 5
        # The transaction is still usable after it.
        await publisher.publish_order_created_event(event(6))
        await tx.commit()
        await tx.close()
        assert await message_count(probe, app.audit_queue) == 6


async def test_a_publish_to_a_missing_exchange_loses_the_transaction(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.TransactionError) as info:
            async with client.begin_tx() as tx:
                publisher = app.publisher(tx)
                for n in range(4):
                    await publisher.publish_order_created_event(event(n))
                await publisher.publish_order_created_event(
                    event(4), exchange=f"t.{uuid.uuid4().hex}.missing"
                )
                await publisher.publish_order_created_event(event(5))
        assert info.value.outcome == "rolled-back"
        assert await message_count(probe, app.audit_queue) == 0


async def test_a_query_cannot_be_sent_in_a_transaction(url: str, app: App, probe: Channel) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        async with client.begin_tx() as tx:
            with pytest.raises(mmate.MmateError, match="cannot be sent in a transaction"):
                await app.publisher(tx).request_get_order_query(GetOrderQuery(order_id="O-1"))
        assert await message_count(probe, app.order_queue) == 0


async def test_a_closed_transaction_refuses_publishes(url: str, app: App) -> None:
    async with mmate.Client(url, service="tx-test") as client:
        await client.declare(app.order_service)
        async with client.begin_tx() as tx:
            pass
        with pytest.raises(mmate.MmateError, match="transaction is closed"):
            await app.publisher(tx).publish_order_created_event(event(1))


async def test_a_delayed_message_in_a_transaction_enters_the_delay_cascade_only_on_commit(
    url: str, app: App, probe: Channel, prefix: str
) -> None:
    async with mmate.Client(url, service="tx-test", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        async with client.begin_tx() as tx:
            await app.publisher(tx).publish_order_created_event(event(1), delay=1)
            await sync(tx, app.audit_queue)
            level = client.delays.topology.level(0)
            assert await message_count(probe, level) == 0  # not even in the cascade yet
            assert await message_count(probe, app.audit_queue) == 0
            await app.publisher(tx).publish_order_created_event(event(2))  # not delayed
        await publisher.publish_order_created_event(event(3))  # not in the transaction
        for _ in range(1000):  # the relay delivers it about a second later
            if await message_count(probe, app.audit_queue) == 3:
                break
            await asyncio.sleep(0.01)
        assert await message_count(probe, app.audit_queue) == 3


async def test_a_queue_that_refuses_a_message_makes_the_commit_partial_not_rolled_back(
    url: str, app: App, probe: Channel
) -> None:
    """RabbitMQ fails the commit (406 partial tx completion) when a full ``reject-publish``
    queue refuses a message, after delivering some of the messages to the other queues (from one
    to all of them, varying from run to run): reporting "rolled-back" would be false."""
    full = f"t.full.{uuid.uuid4().hex[:8]}"
    await probe.declare_queue(
        full, durable=False, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    try:
        async with mmate.Client(url, service="tx-test") as client:
            await client.declare(app.order_service)
            await probe.bind_queue(full, app.events, routing_key="order.eu.created")
            tx = client.begin_tx()
            publisher = app.publisher(tx)
            for n in range(3):
                await publisher.publish_order_created_event(event(n))
            with pytest.raises(mmate.TransactionError) as caught:
                await tx.commit()
            assert caught.value.outcome == "partial"
            assert "reject-publish" in str(caught.value)
            await tx.close()
        assert await message_count(probe, full) == 0
    finally:
        await probe.delete_queue(full)
