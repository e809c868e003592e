"""A memory alarm on a broker of the test's own (one throw-away node beside the machine's broker,
which is never touched): publishes fail with a ``PublishTimeout`` that says the broker is
blocking publishers and why, nothing confirmed is lost, and publishing resumes once the alarm
clears. Counted on the node itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiormq
import mmate
import pytest
from sample_app import App, make_app
from test_delay_broker import event

from tests.cluster.rabbit_cluster import RabbitCluster

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitCluster]:
    broker = RabbitCluster(1).start()
    try:
        yield broker
    finally:
        broker.stop()


async def _count(url: str, queue: str) -> int:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)
    finally:
        await connection.close()


async def test_a_memory_alarm_blocks_publishes_with_the_reason_and_loses_nothing(
    node: RabbitCluster,
) -> None:
    app: App = make_app()
    url = node.urls[0]
    async with mmate.Client(url, service="alarmed", publish_timeout=2.0) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        for n in range(20):
            await publisher.publish_order_created_event(event(n))
        node.ctl(0, "set_vm_memory_high_watermark", "0")
        try:
            with pytest.raises(mmate.PublishTimeout) as info:
                await publisher.publish_order_created_event(event(20))
            text = str(info.value)
            assert "the broker is blocking publishers" in text, text
            assert "memory" in text, text
            assert "it may have reached the broker" in text, text
        finally:
            node.ctl(0, "set_vm_memory_high_watermark", "0.4")
        # publishing resumes on the same connection once the alarm is gone
        for n in range(21, 31):
            await publisher.publish_order_created_event(event(n))
        assert client.connection.reconnects == 0
    # The 30 confirmed messages are all there; the timed-out one was written before the broker
    # stopped reading, so it may have arrived as well (at least once, never silently dropped
    # from the confirmed ones).
    count = await _count(url, app.audit_queue)
    for _ in range(50):  # the confirmed ones are there already; the late one may still come
        if count == 31:
            break
        await asyncio.sleep(0.1)
        count = await _count(url, app.audit_queue)
    assert count in (30, 31), count
