"""Delayed messages survive a broker restart: they wait in durable quorum queues as persistent
messages, and are delivered after the broker comes back.

This test stops and starts the broker application (``rabbitmqctl stop_app`` / ``start_app``), so it
only runs where the broker is this machine's own (``rabbitmqctl`` available); the broker is started
again even when the test fails.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import aiormq
import mmate
import pytest
from conftest import BROKER_URL
from delay_support import Recorder, count, prefix_fixture, wait_for
from mmate._delays.cascade import LEVELS, DelayTopology
from sample_app import App, OrderCreatedEvent, Region

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs the local rabbitmqctl"),
]
__all__ = ["prefix_fixture"]

MESSAGES = 20
DELAY = 6  # seconds: long enough to be inside the cascade while the broker restarts


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def _in_cascade(prefix: str) -> int:
    """Messages in the cascade's queues, retried while the restarted broker elects its queues."""
    topo = DelayTopology(prefix)
    for _ in range(120):
        try:
            connection = await aiormq.connect(BROKER_URL)
        except (OSError, aiormq.exceptions.AMQPError):
            await asyncio.sleep(0.5)
            continue
        try:
            channel = await connection.channel()
            queues = [topo.level(level) for level in range(LEVELS)] + [topo.ready]
            return sum([await count(channel, queue) for queue in queues])
        except aiormq.exceptions.AMQPError:
            await asyncio.sleep(0.5)
        finally:
            await connection.close()
    raise AssertionError("the broker did not come back within a minute")


async def _in_cascade_once_recovered(prefix: str, expected: int, within: float = 180.0) -> int:
    """Messages in the cascade once the restarted broker has recovered its quorum queues: a queue
    whose log is still being replayed reports fewer messages than it holds (0 at first), so the
    count is read again until it reaches ``expected`` or ``within`` seconds pass; the last count
    is returned. How long that takes grows with the node's quorum logs: a few seconds on a fresh
    node, more than 30 s seen right after a whole test run (60 quorum queues on the node)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while (found := await _in_cascade(prefix)) != expected and loop.time() < began + within:
        await asyncio.sleep(0.5)
    print(
        f"\n[delay restart] the cascade counted {found} of {expected} after "
        f"{loop.time() - began:.1f} s of recovery"
    )
    return found


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"ORDER-{n}",
        order_id=f"ORDER-{n}",
        customer_id="C-1",
        amount=1.0,
        region=Region.EU,
    )


async def test_delayed_messages_survive_a_broker_restart(app: App, prefix: str) -> None:
    async with mmate.Client(
        BROKER_URL, service="delayer", delay_prefix=prefix, delay_relay=False
    ) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        for n in range(MESSAGES):
            await publisher.publish_order_created_event(event(n), delay=DELAY)
    assert await _in_cascade(prefix) == MESSAGES  # confirmed, and waiting in the cascade

    try:
        _ctl("stop_app")
    finally:
        _ctl("start_app")
    # nothing lost by the restart
    assert await _in_cascade_once_recovered(prefix, MESSAGES) == MESSAGES

    recorder = Recorder()
    async with mmate.Client(BROKER_URL, service="relay", delay_prefix=prefix) as relay:
        await relay.declare(app.order_service)
        await recorder.start(app.audit_queue)
        await relay.run_delay_relay()
        await wait_for(lambda: len(recorder.arrivals) >= MESSAGES, 60)
        await asyncio.sleep(0.5)  # a duplicate would show up here
        await recorder.close()
    ids = {a.message.header.properties.message_id for a in recorder.arrivals}
    assert len(ids) == MESSAGES
    assert len(recorder.arrivals) == MESSAGES
