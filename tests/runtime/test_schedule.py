"""Recurring schedules on both backends: two scheduler instances publish each tick exactly once,
with a deterministic message id; when the active instance stops, the other carries on without a
gap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiormq
import aiormq.abc
import mmate
import pytest
from backends import TestBackend
from conftest import message_count
from delay_support import Recorder, wait_for
from mmate._delays.scheduler import Scheduler, tick_id
from mmate._transport.base import Channel
from sample_app import App, OrderCreatedEvent, Region


def tick_event(tick: datetime) -> OrderCreatedEvent:
    stamp = int(tick.timestamp())
    return OrderCreatedEvent(
        aggregate_id="schedule",
        sequence=stamp,
        order_id=f"tick-{stamp}",
        customer_id="C-1",
        amount=1.0,
        region=Region.EU,
    )


@pytest.fixture
async def schedule_prefix(url: str, backend: TestBackend) -> AsyncIterator[str]:
    prefix = f"t.{uuid.uuid4().hex[:10]}.schedule"
    yield prefix
    if backend.memory:
        return  # the memory broker is dropped whole
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(f"{prefix}.ticks")
        with contextlib.suppress(Exception):
            await channel.queue_delete(f"{prefix}.ticks.last")
    finally:
        await conn.close()


def _ticks(recorder: Recorder) -> list[int]:
    return [json.loads(a.message.body)["payload"]["sequence"] for a in recorder.arrivals]


def _make(client: mmate.Client, app: App, prefix: str, expression: str = "@every 1s") -> Scheduler:
    scheduler = Scheduler(client, prefix=prefix)
    scheduler.add(
        "ticks", expression, app.publisher(client).publish_order_created_event, tick_event
    )
    return scheduler


@pytest.mark.parametrize("expression", ["@every 1s", "* * * * * *"])  # six fields: every second
async def test_two_instances_publish_each_tick_exactly_once(
    url: str, app: App, schedule_prefix: str, probe: Channel, expression: str
) -> None:
    recorder = Recorder()
    async with (
        mmate.Client(url, service="sched-a") as a,
        mmate.Client(url, service="sched-b") as b,
    ):
        await a.declare(app.order_service)
        await recorder.start(app.audit_queue, probe)
        first = _make(a, app, schedule_prefix, expression)
        second = _make(b, app, schedule_prefix, expression)
        async with first, second:
            await wait_for(lambda: len(set(_ticks(recorder))) >= 5, 15)
        await asyncio.sleep(0.5)  # a late duplicate would arrive meanwhile
        await recorder.close()
        published = [s.schedules["ticks"].published for s in (first, second)]
    ticks = _ticks(recorder)
    assert len(ticks) == len(set(ticks)) >= 5  # no tick twice
    assert sorted(ticks) == list(range(min(ticks), max(ticks) + 1))  # no tick missing
    assert sum(published) == len(ticks) and 0 in published  # one active instance published all
    for arrival in recorder.arrivals:
        tick = json.loads(arrival.message.body)["payload"]["sequence"]
        expected = tick_id("ticks", datetime.fromtimestamp(tick, UTC))
        assert arrival.message.properties.message_id == expected


async def test_when_the_active_instance_stops_the_other_takes_over_without_a_gap(
    url: str, app: App, schedule_prefix: str, probe: Channel
) -> None:
    recorder = Recorder()
    async with (
        mmate.Client(url, service="sched-a") as a,
        mmate.Client(url, service="sched-b") as b,
    ):
        await a.declare(app.order_service)
        await recorder.start(app.audit_queue, probe)
        first = _make(a, app, schedule_prefix)
        await first.start()  # consumes first: the active one
        second = _make(b, app, schedule_prefix)
        await second.start()
        await wait_for(lambda: len(set(_ticks(recorder))) >= 3, 15)
        await first.stop()
        handed_over = len(set(_ticks(recorder)))
        await wait_for(lambda: len(set(_ticks(recorder))) >= handed_over + 3, 15)
        await second.stop()
        await asyncio.sleep(0.5)
        await recorder.close()
    ticks = _ticks(recorder)
    assert sorted(set(ticks)) == list(range(min(ticks), max(ticks) + 1))  # no gap at handover
    assert len(ticks) == len(set(ticks))  # a clean stop publishes nothing twice
    assert first.schedules["ticks"].published >= 3 and second.schedules["ticks"].published >= 3


def test_tick_ids_are_deterministic_v4_shaped_uuids() -> None:
    tick = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    same = tick.astimezone(datetime.now().astimezone().tzinfo)
    assert tick_id("a", tick) == tick_id("a", same)
    assert tick_id("a", tick) != tick_id("b", tick)
    parsed = uuid.UUID(tick_id("a", tick))
    assert parsed.version == 4 and str(parsed) == tick_id("a", tick)


async def test_add_refuses_bad_schedules(url: str, app: App) -> None:
    client = mmate.Client(url, service="sched")
    scheduler = Scheduler(client)
    method = app.publisher(client).publish_order_created_event
    with pytest.raises(mmate.MmateError, match="minute field"):
        scheduler.add("x", "61 * * * *", method, tick_event)
    with pytest.raises(mmate.MmateError, match="message_id"):
        scheduler.add("x", "@hourly", method, tick_event, message_id="fixed")
    scheduler.add("x", "@hourly", method, tick_event)
    with pytest.raises(mmate.MmateError, match="already added"):
        scheduler.add("x", "@daily", method, tick_event)
    with pytest.raises(mmate.MmateError, match="no schedules"):
        await Scheduler(client).start()


async def test_a_failing_publish_is_retried_then_given_up_and_a_failing_factory_skips(
    url: str, app: App, schedule_prefix: str, probe: Channel
) -> None:
    def broken(tick: datetime) -> OrderCreatedEvent:
        raise RuntimeError("no data for this tick")

    async with mmate.Client(url, service="sched") as client:
        await client.declare(app.order_service)
        scheduler = Scheduler(client, prefix=schedule_prefix, misfire_grace=2.5)
        method = app.publisher(client).publish_order_created_event
        unroutable = scheduler.add("ticks", "@every 1s", method, tick_event, routing_key="nobody")
        failing = scheduler.add("broken", "@every 1s", method, broken)
        try:
            async with scheduler:
                await wait_for(lambda: unroutable.skipped >= 2 and failing.skipped >= 2, 20)
        finally:
            for queue in (f"{schedule_prefix}.broken", f"{schedule_prefix}.broken.last"):
                await probe.delete_queue(queue)
    assert unroutable.published == 0 and failing.published == 0
    assert await message_count(probe, app.audit_queue) == 0


async def test_forged_claims_and_a_forged_record_never_silence_the_schedule(
    url: str, app: App, schedule_prefix: str, probe: Channel
) -> None:
    """Anyone who may publish to a schedule's queues can forge a claim or a record. A claim for a
    far-future tick (published at once, it would have been recorded as the last tick and every
    real tick before it skipped, for good) or for a moment off the cron grid is dropped; a record
    of a future tick is ignored when a scheduler starts. The real ticks go on, each once."""
    from mmate._transport.base import Properties

    far = json.dumps({"schedule": "ticks", "tick": "9999-12-31T23:59:59+00:00"}).encode()
    recorder = Recorder()

    async def forge(queue: str, body: bytes) -> None:
        await probe.publish(body, Properties(), exchange="", routing_key=queue)

    async with mmate.Client(url, service="sched-a") as client:
        await client.declare(app.order_service)
        await recorder.start(app.audit_queue, probe)
        async with _make(client, app, schedule_prefix):
            await wait_for(lambda: len(set(_ticks(recorder))) >= 2, 15)
            off_grid = datetime.now(UTC).replace(microsecond=300_000).isoformat()
            await forge(f"{schedule_prefix}.ticks", far)
            await forge(
                f"{schedule_prefix}.ticks",
                json.dumps({"schedule": "ticks", "tick": off_grid}).encode(),
            )
            seen = len(set(_ticks(recorder)))
            await wait_for(lambda: len(set(_ticks(recorder))) >= seen + 3, 15)
        await forge(f"{schedule_prefix}.ticks.last", far)  # replaces the real record
        async with _make(client, app, schedule_prefix):
            seen = len(set(_ticks(recorder)))
            await wait_for(lambda: len(set(_ticks(recorder))) >= seen + 3, 15)
        await asyncio.sleep(0.5)
        await recorder.close()
    ticks = _ticks(recorder)
    assert len(ticks) == len(set(ticks))  # no tick twice
    assert max(ticks) < datetime(2100, 1, 1, tzinfo=UTC).timestamp()  # the forged one never
