"""Publishing pools on the real broker: publishes spread over several connections and channels,
every one confirmed and counted in its queue; the channel timeout (nothing published for a
publish that got no channel); one pool connection killed on the broker recovers on its own and no
message is lost."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, message_count, wait_until
from delay_support import Recorder
from mmate._publishing.pool import PublisherPool
from sample_app import App, OrderCreatedEvent, Region
from test_recovery import _kill_connections

pytestmark = pytest.mark.broker


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id="pool",
        sequence=n,
        order_id=f"o-{n}",
        customer_id="C-1",
        amount=1.0,
        region=Region.EU,
    )


def _broker_connections(service: str) -> int:
    """Connections the broker has open for ``service`` (by the connection name we set)."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "client_properties", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return sum(f"{service} (mmate-py" in line for line in listing.splitlines())


def _pool(client: mmate.Client) -> PublisherPool:
    pool = client.publish_pool
    assert pool is not None
    return pool


async def test_publishes_spread_over_connections_and_channels_all_confirmed(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    service = f"pool-{uuid.uuid4().hex[:8]}"
    async with mmate.Client(
        BROKER_URL, service=service, publish_connections=3, channels_per_connection=2
    ) as client:
        await client.declare(app.order_service)
        assert len(client.connections) == 3
        assert await asyncio.to_thread(_broker_connections, service) == 3
        publisher = app.publisher(client)
        await asyncio.gather(*(publisher.publish_order_created_event(event(n)) for n in range(600)))
        pool = _pool(client)
        per_member = [member.confirmed for member in pool.members]
        names = {member.connection.name for member in pool.members}
        assert await message_count(raw, app.audit_queue) == 600
    assert sum(per_member) == 600
    assert all(n > 0 for n in per_member), per_member  # every channel of the pool was used
    assert len(names) == 3 and any(name.endswith("publish 3/3)") for name in names)
    assert await asyncio.to_thread(_broker_connections, service) == 0  # closed with the client


async def test_a_batch_keeps_its_order_on_one_channel_of_the_pool(app: App) -> None:
    recorder = Recorder()
    async with mmate.Client(
        BROKER_URL, service="pool-batch", publish_connections=2, channels_per_connection=2
    ) as client:
        await client.declare(app.order_service)
        await recorder.start(app.audit_queue)
        publisher = app.publisher(client)
        async with client.batch() as batch:
            for n in range(300):
                await app.publisher(batch).publish_order_created_event(event(n))
        await publisher.publish_order_created_event(event(300))
        assert client.publish_pool is not None
        await wait_until(lambda: len(recorder.arrivals) == 301)
        await recorder.close()
    order = [a.message.header.properties.message_id for a in recorder.arrivals]
    assert len(set(order)) == 301
    sequences = [json.loads(a.message.body)["payload"]["sequence"] for a in recorder.arrivals]
    assert sequences[:300] == list(range(300))


@pytest.mark.parametrize(("connections", "channels"), [(1, 1), (2, 1)])
async def test_no_channel_within_the_channel_timeout_publishes_nothing(
    app: App, raw: aiormq.abc.AbstractChannel, connections: int, channels: int
) -> None:
    # One unconfirmed publish per channel at a time, and 50 ms to get one: of 1,000 concurrent
    # publishes most cannot get a channel in time (each waits for the confirms of those before).
    async with mmate.Client(
        BROKER_URL,
        service="pool-timeout",
        publish_connections=connections,
        channels_per_connection=channels,
        max_in_flight=connections * channels,
        channel_timeout=0.05,
    ) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        opening = connections * channels  # open every channel first (concurrent: all are used)
        await asyncio.gather(
            *(publisher.publish_order_created_event(event(-1 - n)) for n in range(opening))
        )
        results = await asyncio.gather(
            *(publisher.publish_order_created_event(event(n)) for n in range(1000)),
            return_exceptions=True,
        )
        timeouts = [r for r in results if isinstance(r, mmate.ChannelTimeout)]
        others = [r for r in results if isinstance(r, BaseException) and r not in timeouts]
        assert not others, others[:3]
        assert timeouts, "every publish got a channel within 50 ms"
        text = str(timeouts[0])
        assert "channel within the channel timeout of 0.05 s" in text
        assert "slots for unconfirmed publishes were taken" in text
        assert "nothing was published" in text and app.events in text
        if connections > 1:
            assert "publish pool 2x1 channel" in text
        assert isinstance(timeouts[0], mmate.PublishTimeout)  # callers of PublishTimeout see it
        confirmed = 1000 - len(timeouts)
        assert confirmed > 0
        # exactly the confirmed ones reached the queue: a timed-out publish sent nothing
        queued = await message_count(raw, app.audit_queue)
        assert queued == confirmed + opening


async def test_one_pool_connection_killed_recovers_alone_and_nothing_is_lost(app: App) -> None:
    service = f"pool-kill-{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    async with mmate.Client(
        BROKER_URL,
        service=service,
        publish_connections=2,
        channels_per_connection=2,
        reconnect=mmate.ReconnectPolicy(initial_delay=0.2, max_delay=1.0),
    ) as client:
        await client.declare(app.order_service)
        await recorder.start(app.audit_queue)
        publisher = app.publisher(client)
        victim = client.connections[1]
        # Only our own connection: the name carries this test's service and the pool label.
        name_part = f"{service} (mmate-py, pid {os.getpid()}, publish 2/2)"
        kill = asyncio.create_task(asyncio.to_thread(_kill_connections, name_part))
        sent = 0
        waves_after_kill = 0
        while waves_after_kill < 10:
            await asyncio.gather(
                *(publisher.publish_order_created_event(event(sent + n)) for n in range(50))
            )
            sent += 50
            if kill.done():
                waves_after_kill += 1
        assert await kill == 1
        await wait_until(lambda: len(recorder.by_id()) == sent, timeout=20)
        await asyncio.sleep(0.3)  # a late duplicate (a re-send) would arrive meanwhile
        await recorder.close()
        assert victim.reconnects == 1
        assert client.connection.reconnects == 0  # the others were not touched
        pool = _pool(client)
        assert all(m.confirmed > 0 for m in pool.members if m.connection is victim)
    assert len(recorder.by_id()) == sent  # every message arrived (a re-send may duplicate one)
