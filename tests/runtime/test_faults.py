"""Fault injection on the real broker: a steady stream of confirmed messages keeps flowing through a
publisher and a consumer while the broker closes every connection (several times), restarts, or
kills the consumer's channel. After each fault: every message whose publish was confirmed is
handled at least once, nothing needs help to resume, and the time recovery took is reported.

Each test runs in a vhost of its own (created and deleted here), so ``close_all_connections`` only
hits this test's clients and deleting the vhost removes everything it declared. The restart test
stops the whole broker application; the vhost fixture starts it again even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import mmate
import pytest
from broker_ctl import ctl, vhost_fixture, vhost_url
from mmate import ConnectionEvent, MessageContext, ReconnectPolicy
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, make_app
from tcp_proxy import SilentCutProxy

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs the local rabbitmqctl"),
]

TOTAL = 4000
"""Messages in each test's stream."""
PACE = 4
"""Messages started per 10 ms tick: about 400 a second, so the stream lasts about 10 s and the
faults (each takes rabbitmqctl a second or two) land mid-stream."""
__all__ = ["vhost_fixture"]
POLICY = ReconnectPolicy(initial_delay=0.1, max_delay=1.0)
"""Short pauses, so a test does not wait out the production default's longer ones."""


@dataclass
class Stream:
    """Publishes ``TOTAL`` events at a steady pace through one client and counts what a second
    client's handler receives. A publish that raises is counted and published again (as an
    application would), so the stream always ends with every message confirmed."""

    publisher: mmate.Publisher
    confirmed: set[int] = field(default_factory=set)
    publish_failures: list[str] = field(default_factory=list)
    handled: Counter[int] = field(default_factory=Counter)
    handled_at: list[float] = field(default_factory=list)

    faults_done: asyncio.Event = field(default_factory=asyncio.Event)
    published: int = 0

    async def run(self) -> None:
        """At least ``TOTAL`` messages, and on until the test's faults are done (so a fault never
        lands after the stream ended on a slow box)."""
        tasks = []
        n = 0
        while n < TOTAL or not self.faults_done.is_set():
            tasks.append(asyncio.create_task(self._publish(n)))
            n += 1
            if n % PACE == 0:
                await asyncio.sleep(0.01)
        self.published = n
        await asyncio.gather(*tasks)

    async def _publish(self, n: int) -> None:
        event = OrderCreatedEvent(sequence=n, order_id=f"o-{n}", customer_id="c", amount=1)
        while True:
            try:
                await self.publisher.publish_order_created_event(event)  # type: ignore[attr-defined]
            except mmate.MmateError as exc:
                self.publish_failures.append(str(exc))
                await asyncio.sleep(0.1)
                continue
            self.confirmed.add(n)
            return

    def record(self, n: int) -> None:
        self.handled[n] += 1
        self.handled_at.append(time.monotonic())

    def handled_since(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first message handled after it."""
        later = [t for t in self.handled_at if t > moment]
        return min(later) - moment if later else None

    def lost(self) -> set[int]:
        """Confirmed but never handled."""
        return self.confirmed - set(self.handled)


def handlers_for(app: App, stream: Stream) -> mmate.HandlerBase:
    class Handlers(app.handlers):  # type: ignore[name-defined, misc]
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            stream.record(message.sequence)

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            return None

        async def handle_get_order_query(self, message: GetOrderQuery, ctx: MessageContext) -> None:
            return None

    handlers: mmate.HandlerBase = Handlers()
    return handlers


@dataclass
class Clients:
    app: App
    publisher: mmate.Client
    consumer: mmate.Client
    serving: mmate.Serving
    stream: Stream
    events: list[tuple[float, str, ConnectionEvent]]
    """(time.monotonic(), "publisher" or "consumer", event)"""

    def recovered_count(self) -> int:
        return sum(1 for _, _, e in self.events if e.state == "recovered")

    def downtimes(self, since: int) -> dict[str, float]:
        """Each client's downtime, from its ``recovered`` events after the first ``since``."""
        seen = [(who, e) for _, who, e in self.events if e.state == "recovered"][since:]
        return {who: e.downtime or 0.0 for who, e in seen}

    def consumer_lost_at(self) -> float:
        return max(t for t, who, e in self.events if who == "consumer" and e.state == "lost")


@contextlib.asynccontextmanager
async def clients(url: str, heartbeat: int = 30) -> AsyncIterator[Clients]:
    app = make_app()
    events: list[tuple[float, str, ConnectionEvent]] = []

    def watch(who: str) -> Callable[[ConnectionEvent], None]:
        return lambda event: events.append((time.monotonic(), who, event))

    timeout = 60.0  # longer than any outage here: a publish waits for the recovery
    async with (
        mmate.Client(
            url,
            service="faults-pub",
            reconnect=POLICY,
            publish_timeout=timeout,
            heartbeat=heartbeat,
        ) as pub,
        mmate.Client(url, service="faults-sub", reconnect=POLICY, heartbeat=heartbeat) as sub,
    ):
        pub.on_state(watch("publisher"))
        sub.on_state(watch("consumer"))
        await sub.declare(app.order_service)
        stream = Stream(app.publisher(pub))
        serving = await sub.serve(handlers_for(app, stream), queues=[app.audit_queue])
        yield Clients(app, pub, sub, serving, stream, events)


def report(what: str, figures: list[str]) -> None:
    print(f"\n[fault injection] {what}:\n  " + "\n  ".join(figures), flush=True)


async def finish(c: Clients, runner: asyncio.Task[None]) -> None:
    """Wait for the stream to be confirmed and handled, then check the counts."""
    c.stream.faults_done.set()
    await asyncio.wait_for(runner, 180)
    deadline = time.monotonic() + 60
    while c.stream.lost() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stream = c.stream
    assert len(stream.confirmed) == stream.published >= TOTAL
    assert not stream.lost(), f"{len(stream.lost())} confirmed messages never handled"
    assert not stream.publish_failures, stream.publish_failures[:3]


async def test_close_all_connections_several_times(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = vhost_url(vhost)
    figures = []
    async with clients(url) as c:
        runner = asyncio.create_task(c.stream.run())
        for round_ in range(1, 4):
            await _until(lambda r=round_: len(c.stream.confirmed) >= r * TOTAL // 4 - 600, 60)
            before = c.recovered_count()
            await ctl("close_all_connections", "-p", vhost, "fault injection")
            await _until(lambda b=before: c.recovered_count() >= b + 2, 60)  # both clients
            lost = c.consumer_lost_at()
            await _until(lambda t=lost: c.stream.handled_since(t) is not None, 60)
            downtime = c.downtimes(before)
            figures.append(
                f"#{round_}: publisher down {downtime['publisher']:.2f} s, consumer down "
                f"{downtime['consumer']:.2f} s, first message handled "
                f"{c.stream.handled_since(lost):.2f} s after the consumer's connection was lost"
            )
        await finish(c, runner)
        assert c.publisher.connection.reconnects == 3 and c.consumer.connection.reconnects == 3
        figures.append(_totals(c.stream, c.publisher))
    with capsys.disabled():
        report("close_all_connections x3", figures)


async def test_broker_stop_app_and_start_app(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = vhost_url(vhost)
    async with clients(url) as c:
        runner = asyncio.create_task(c.stream.run())
        await _until(lambda: len(c.stream.confirmed) >= TOTAL // 5, 60)
        fault = time.monotonic()
        try:
            await ctl("stop_app")
        finally:
            await ctl("start_app")
        started = time.monotonic()
        await _until(lambda: c.recovered_count() >= 2, 90)
        await _until(lambda: c.stream.handled_since(started) is not None, 60)
        downtime = c.downtimes(0)
        figures = [
            f"broker down for {started - fault:.2f} s (stop_app + start_app)",
            f"publisher down {downtime['publisher']:.2f} s, consumer down "
            f"{downtime['consumer']:.2f} s; first message handled "
            f"{c.stream.handled_since(started):.2f} s after start_app returned",
        ]
        await finish(c, runner)
        figures.append(_totals(c.stream, c.publisher))
    with capsys.disabled():
        report("stop_app / start_app", figures)


async def test_consumer_channel_killed_by_a_broker_error(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = vhost_url(vhost)
    figures = []
    async with clients(url) as c:
        consumer = c.serving.consumers[0]
        runner = asyncio.create_task(c.stream.run())
        for round_ in range(1, 4):
            await _until(lambda r=round_: len(c.stream.confirmed) >= r * TOTAL // 5, 60)
            channel = consumer._loop.channel
            assert channel is not None
            fault = time.monotonic()
            # A passive declare of a missing queue: the broker closes the channel (404).
            with pytest.raises(Exception, match="NOT_FOUND"):
                await channel.declare_queue(f"missing-{uuid.uuid4().hex}", passive=True)
            await _until(lambda ch=channel: consumer._loop.channel is not ch, 30)
            await _until(lambda f=fault: c.stream.handled_since(f) is not None, 30)
            figures.append(
                f"#{round_}: consuming again and first message handled "
                f"{c.stream.handled_since(fault):.2f} s after the channel was killed"
            )
        await finish(c, runner)
        assert c.consumer.connection.reconnects == 0  # only the channel was lost
        figures.append(_totals(c.stream, c.publisher))
    with capsys.disabled():
        report("consumer channel killed x3", figures)


def _totals(stream: Stream, publisher: mmate.Client) -> str:
    duplicates = sum(count - 1 for count in stream.handled.values())
    return (
        f"{stream.published} published, {len(stream.confirmed)} confirmed, "
        f"{len(stream.handled)} handled "
        f"({duplicates} redelivered twice or more), {len(stream.publish_failures)} publish "
        f"failures, {publisher.resent} publishes re-sent after a lost confirm"
    )


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {predicate}")
        await asyncio.sleep(0.01)


async def test_a_silent_network_cut(vhost: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing is closed, nothing arrives: only missed heartbeats tell (aiormq then fails what was
    pending with a stray ``CancelledError``). Both clients go through a proxy that is frozen."""
    proxy = SilentCutProxy()
    await proxy.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
    try:
        async with clients(url, heartbeat=1) as c:
            runner = asyncio.create_task(c.stream.run())
            await _until(lambda: len(c.stream.confirmed) >= TOTAL // 5, 60)
            cut = time.monotonic()
            assert proxy.freeze() == 2
            await _until(lambda: c.recovered_count() >= 2, 60)
            await _until(lambda: c.stream.handled_since(cut + 0.5) is not None, 60)
            downtime = c.downtimes(0)
            figures = [
                f"noticed after missed heartbeats (heartbeat 1 s): publisher down "
                f"{downtime['publisher']:.2f} s, consumer down {downtime['consumer']:.2f} s "
                f"after that; first message handled {c.stream.handled_since(cut + 0.5):.2f} s "
                "after the cut",
            ]
            await finish(c, runner)
            figures.append(_totals(c.stream, c.publisher))
    finally:
        await proxy.close()
    with capsys.disabled():
        report("silent network cut", figures)
