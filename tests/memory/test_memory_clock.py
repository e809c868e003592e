"""The memory broker's clock: real time by default, ``advance`` for tests, timers that fire at
their own moment of virtual time, and the mmate delay cascade delivering on time under it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mmate._delays.cascade import LEVELS, DelayTopology, delay_seconds
from mmate._transport.base import Clock, Delivery, Properties
from mmate._transport.memory import MemoryBroker
from sides import drain


async def test_the_clock_runs_in_real_time_by_default(broker: MemoryBroker) -> None:
    clock = broker.clock
    assert isinstance(clock, Clock)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 0.5
    started = time.monotonic()
    await clock.sleep(0.02)
    assert time.monotonic() - started >= 0.015


async def test_advance_wakes_sleepers_in_order_at_their_time(broker: MemoryBroker) -> None:
    clock = broker.clock
    woke: list[tuple[str, float]] = []
    start = clock.time()

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, round(clock.time() - start, 1)))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3600), ("a", 1), ("b", 30))]
    await asyncio.sleep(0)
    await broker.advance(60)
    assert woke == [("a", 1.0), ("b", 30.0)]
    await broker.advance(3600)
    assert woke[-1] == ("c", 3600.0)
    await asyncio.gather(*tasks)
    assert clock.time() - start >= 3660 and clock.advanced_by > 3659
    with pytest.raises(ValueError):
        await broker.advance(-1)


async def _chain(broker: MemoryBroker, link: Any) -> Any:
    """q1 (TTL 1 s) dead-letters into q2 (TTL 2 s), which dead-letters into done."""
    ch = await link.channel(confirms=True)
    await ch.declare_queue("done", durable=False)
    await ch.declare_queue(
        "q2",
        arguments={
            "x-message-ttl": 2000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "done",
        },
    )
    await ch.declare_queue(
        "q1",
        arguments={
            "x-message-ttl": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "q2",
        },
    )
    return ch


async def test_advance_steps_through_every_expiry_on_the_way(
    broker: MemoryBroker, link: Any
) -> None:
    ch = await _chain(broker, link)
    start = broker.clock.now().replace(microsecond=0)
    await ch.publish(b"m", Properties(), exchange="", routing_key="q1")
    await broker.advance(2.9)
    assert broker.message_count("done") == 0  # 1 s + 2 s: not yet
    await broker.advance(0.2)
    (letter,) = await drain(ch, "done")
    first, second = sorted(letter.headers["x-death"], key=lambda d: d["time"])
    # each death happened at its own virtual moment, not at the end of the advance
    assert first["queue"] == "q1" and 0 <= (first["time"] - start).total_seconds() <= 2
    assert second["queue"] == "q2" and 2 <= (second["time"] - start).total_seconds() <= 4


async def test_expiry_needs_no_advance_and_no_consumer(broker: MemoryBroker, link: Any) -> None:
    ch = await link.channel(confirms=True)
    await ch.declare_queue("done", durable=False)
    await ch.declare_queue(
        "short",
        arguments={
            "x-message-ttl": 30,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "done",
        },
    )
    await ch.publish(b"m", Properties(), exchange="", routing_key="short")
    await asyncio.sleep(0.15)  # real time only
    assert broker.message_count("done") == 1


async def test_consumers_react_at_each_moment_of_an_advance(
    broker: MemoryBroker, link: Any
) -> None:
    """A retry loop through a wait queue (TTL 5 s) runs four times in 15 virtual seconds."""
    ch = await link.channel(confirms=True)
    await ch.declare_queue(
        "work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "wait"}
    )
    await ch.declare_queue(
        "wait",
        arguments={
            "x-message-ttl": 5000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "work",
        },
    )
    seen: list[float] = []
    start = broker.clock.time()
    tasks: set[asyncio.Task[None]] = set()

    def fail(delivery: Delivery) -> None:
        seen.append(round(broker.clock.time() - start))
        task = asyncio.create_task(ch.nack(delivery.delivery_tag, requeue=False))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await ch.consume("work", fail)
    await ch.publish(b"m", Properties(), exchange="", routing_key="work")
    await broker.advance(16)
    assert seen == [0, 5, 10, 15]


def _cascade_topology() -> DelayTopology:
    return DelayTopology("test.delay")


async def _declare_cascade(ch: Any, topology: DelayTopology) -> None:
    for name, kind, args in topology.exchanges():
        await ch.declare_exchange(name, kind, arguments=args)
    for name, args in topology.queues():
        await ch.declare_queue(name, arguments=args)
    for exchange, queue, pattern in topology.queue_bindings():
        await ch.bind_queue(queue, exchange, pattern)
    for source, destination, pattern in topology.exchange_bindings():
        await ch.bind_exchange(destination, source, pattern)


@pytest.mark.parametrize("seconds", [1, 5, 3600, 86_400 + 7, 30 * 86_400 + 1])
async def test_the_delay_cascade_delivers_on_time(
    broker: MemoryBroker, link: Any, seconds: int
) -> None:
    topology = _cascade_topology()
    ch = await link.channel(confirms=True)
    await _declare_cascade(ch, topology)
    exchange, key = topology.route(seconds, "orders", "order.created")
    await ch.publish(
        b"late",
        Properties(headers={"x-mmate-delay-exchange": "orders"}),
        exchange=exchange,
        routing_key=key,
    )
    started = time.monotonic()
    await broker.advance(seconds - 0.5)
    assert broker.message_count(topology.ready) == 0
    await broker.advance(1)
    (ready,) = await drain(ch, topology.ready)
    assert ready.body == b"late" and ready.headers["x-mmate-delay-exchange"] == "orders"
    levels = {death["queue"] for death in ready.headers["x-death"]}
    assert levels == {topology.level(bit) for bit in range(LEVELS) if seconds >> bit & 1}
    assert time.monotonic() - started < 2  # virtual time: milliseconds, not the delay


async def test_many_delays_arrive_in_due_order(broker: MemoryBroker, link: Any) -> None:
    topology = _cascade_topology()
    ch = await link.channel(confirms=True)
    await _declare_cascade(ch, topology)
    now = broker.clock.now()
    delays = [
        delay_seconds(schedule_at=now + timedelta(seconds=s), now=now)
        for s in (90, 3, 3600, 45, 7, 600)
    ]
    for seconds in delays:
        exchange, key = topology.route(seconds, "x", "k")
        await ch.publish(str(seconds).encode(), Properties(), exchange=exchange, routing_key=key)
    arrived: list[tuple[int, int]] = []
    start = broker.clock.time()

    def on_ready(delivery: Delivery) -> None:
        arrived.append((int(delivery.body), round(broker.clock.time() - start)))

    await ch.consume(topology.ready, on_ready, no_ack=True)
    await broker.advance(3601)
    assert arrived == [(s, s) for s in sorted(delays)]
