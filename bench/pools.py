"""Confirmed publish throughput through one connection against a pool of several.

    python bench/pools.py [--count 20000] [--rounds 3] [--shapes 1x1,4x1,2x2,4x2]

Each shape (``connections x channels per connection``, ``Client(publish_connections=...,
channels_per_connection=...)``) publishes ``--count`` generated ``OrderCreatedEvent`` envelopes
(persistent, confirms, ``mandatory``) to a scratch durable queue, 1,000 concurrent publishes at a
time with the default window of 1,000 unconfirmed; the shapes take turns, ``--rounds`` times, so
that the drift of a shared box spreads over all of them. Prints the median msg/s and client CPU
per message of each shape, and every message is counted in the queue. Figures only; nothing is
asserted about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "runtime")]  # this tree's runtime

import mmate  # noqa: E402
from workload import CHUNK, URL, WINDOW, Scratch, broker_version, machine, sample_events  # noqa: E402

from generated.models import OrderCreatedEvent  # noqa: E402
from generated.order_service import OrderServicePublisher  # noqa: E402


async def publish(
    scratch: Scratch, events: list[OrderCreatedEvent], connections: int, channels: int
) -> tuple[float, float]:
    """msg/s and client CPU microseconds per message of one run."""
    async with mmate.Client(
        URL,
        service="bench-pools",
        max_in_flight=WINDOW,
        publish_connections=connections,
        channels_per_connection=channels,
    ) as client:
        publisher = OrderServicePublisher(client)
        await publisher.publish_order_created_event(events[0], exchange=scratch.exchange)
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(events), CHUNK):
            await asyncio.gather(
                *(
                    publisher.publish_order_created_event(e, exchange=scratch.exchange)
                    for e in events[start : start + CHUNK]
                )
            )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return len(events) / elapsed, cpu / len(events) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="1x1,4x1,2x2,4x2")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
    events = sample_events(args.count)
    facts = machine()
    print(f"# {facts['cpu']}, Python {facts['python']}, {await broker_version()}")
    results: dict[tuple[int, ...], list[tuple[float, float]]] = {shape: [] for shape in shapes}
    for _ in range(args.rounds):
        for shape in shapes:
            scratch = Scratch.new(f"pools-{shape[0]}x{shape[1]}")
            await scratch.declare()
            try:
                results[shape].append(await publish(scratch, events, shape[0], shape[1]))
                counted = await scratch.count()
                if counted != len(events) + 1:
                    raise SystemExit(
                        f"{shape}: {counted} messages in the queue, not {len(events) + 1}"
                    )
            finally:
                await scratch.delete()
    print(
        f"{'shape':>6}  {'msg/s':>8}  {'CPU us/msg':>10}  "
        f"(median of {args.rounds}, {args.count} each)"
    )
    base = statistics.median(rate for rate, _ in results[shapes[0]])
    for shape, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"{f'{shape[0]}x{shape[1]}':>6}  {rate:8.0f}  {cpu:10.1f}  "
            f"({rate / base:.2f} times {shapes[0][0]}x{shapes[0][1]})"
        )


if __name__ == "__main__":
    asyncio.run(main())
