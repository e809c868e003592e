"""What a transaction costs next to confirmed publishing, and how fast the dead-letter tools run.

    python bench/tx_cost.py [--count 5000] [--runs 3]

Every figure publishes ``--count`` persistent messages (a small event, about 500 bytes) through
``mmate.Client`` into one durable classic queue on the broker of ``MMATE_URL`` (default
localhost), and reports messages per second (the median of ``--runs``):

* ``confirmed, one at a time``: ``await publish(...)`` for each message.
* ``confirmed, concurrent``: all publishes at once (``asyncio.gather``), pipelined confirms.
* ``tx, commit every K``: ``begin_tx()``, K publishes, ``commit()``, repeated.
* ``dlq list`` / ``dlq replay --all``: ``mmate.dlq`` over a queue holding ``--count`` messages.

The queue is purged between figures and deleted at the end. A record, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aiormq
import mmate
from mmate import MessageDef, Model, PublishOptions, PublishRoute
from mmate._operations import dlq

URL = os.environ.get("MMATE_URL", "amqp://guest:guest@127.0.0.1:5672/")


class OrderCreatedEvent(Model):
    order_id: str
    customer_id: str
    amount: float
    note: str


EVENT = MessageDef("OrderCreatedEvent", "event", OrderCreatedEvent, "1.0")


def message(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(order_id=f"O-{n}", customer_id="C-1", amount=n, note="x" * 200)


async def timed(run: Callable[[], Awaitable[None]], count: int) -> float:
    start = time.perf_counter()
    await run()
    return count / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    count: int = args.count
    queue = f"bench.{uuid.uuid4().hex[:8]}"
    origin = f"{queue}.origin"
    route = PublishRoute(EVENT, "", queue)
    options = PublishOptions()
    raw = await aiormq.connect(URL)
    channel = await raw.channel()
    await channel.queue_declare(queue, durable=True)
    await channel.queue_declare(origin, durable=True)
    results: dict[str, list[float]] = {}
    try:
        async with mmate.Client(URL, service="bench-tx") as client:

            async def one_at_a_time() -> None:
                for n in range(count):
                    await client.publish(route, message(n), queue, options)

            async def concurrent() -> None:
                await asyncio.gather(
                    *(client.publish(route, message(n), queue, options) for n in range(count))
                )

            def tx_every(k: int) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    async with client.begin_tx() as tx:
                        for n in range(count):
                            await tx.publish(route, message(n), queue, options)
                            if (n + 1) % k == 0:
                                await tx.commit()

                return run

            figures: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("confirmed, one at a time", one_at_a_time),
                ("confirmed, concurrent", concurrent),
                ("tx, commit every 1", tx_every(1)),
                ("tx, commit every 10", tx_every(10)),
                ("tx, commit every 100", tx_every(100)),
                ("tx, commit every 1000", tx_every(1000)),
            ]
            for _ in range(args.runs):
                for name, run in figures:
                    await channel.queue_purge(queue)
                    rate = await timed(run, count)
                    depth = (await channel.queue_declare(queue, passive=True)).message_count
                    assert depth == count, (name, depth)
                    results.setdefault(name, []).append(rate)
                # The queue now holds `count` messages: list them, then replay them all.
                await channel.queue_purge(origin)

                async def listing() -> None:
                    listed = await dlq.list_dead_letters(client, queue, limit=100)
                    assert len(listed) == 100

                async def replaying() -> None:
                    result = await dlq.replay(client, queue, to=origin)
                    assert result.moved_count == count

                results.setdefault("dlq list (limit 100)", []).append(await timed(listing, count))
                results.setdefault("dlq replay --all", []).append(await timed(replaying, count))
    finally:
        await channel.queue_delete(queue)
        await channel.queue_delete(origin)
        await raw.close()
    print(f"{count} messages, median of {args.runs} runs, {URL.split('@')[-1]}")
    for name, rates in results.items():
        print(f"  {name:28} {statistics.median(rates):>9,.0f} msg/s")


if __name__ == "__main__":
    asyncio.run(main())
