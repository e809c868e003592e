"""A node of a 3-node RabbitMQ cluster dies (SIGKILL) under mmate clients (#18).

The cluster is this module's own (``rabbit_cluster.py``: own node names, ports, cookie and data
directories; the machine's broker is never touched), started once and stopped afterwards even
when a test fails. Its nodes run with ``dead_letter_worker_publisher_confirm_timeout`` at 5 s
(advanced.config; RabbitMQ's default is 180 s), the setting docs/cluster.md recommends for the
delay cascade.

Each test starts with all three nodes running (booting node 1 again if the test before killed it),
streams real messages, kills node 1 mid-stream, counts what arrived against what was confirmed and
prints its figures:

* under the clients: the publishing client's node dies, the queue leader lives elsewhere;
* under the leader: the queue leader's node dies, the client lives elsewhere;
* under both (the nack storm of #18 §1: a channel opened during the leader election);
* under the cascade: every delay-cascade leader's node dies with delayed messages waiting.

Run with ``make test-cluster`` (``-s`` shows the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiormq
import aiormq.abc
import mmate
import pytest
from mmate import MessageDef, Model, PublishRoute, QueueDef, ServiceTopology
from rabbit_cluster import RabbitCluster

pytestmark = pytest.mark.cluster

VICTIM = 0
"""The node every test kills (and boots again)."""
DLX_CONFIRM_TIMEOUT_MS = int(os.environ.get("MMATE_CLUSTER_DLX_CONFIRM_TIMEOUT_MS", "5000"))
"""0: RabbitMQ's default (180 s), to measure what the setting is worth (the cascade test then
waits up to 400 s)."""
ADVANCED = (
    f"[{{rabbit, [{{dead_letter_worker_publisher_confirm_timeout, {DLX_CONFIRM_TIMEOUT_MS}}}]}}].\n"
    if DLX_CONFIRM_TIMEOUT_MS
    else None
)
RECOVERY_BOUND = 5.0
"""Seconds within which publishing goes on after a node loss (measured: well under 2 s)."""
DELAY_LATENESS_BOUND = 15.0
"""Seconds a delayed message may arrive late when the cascade's leader node dies (docs)."""


class Tick(Model):
    n: int


TICK = MessageDef("Tick", "event", Tick, "1.0")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    nodes = RabbitCluster(3, advanced_config=ADVANCED)
    nodes.start()
    print(f"\n3-node cluster started in {nodes.started_in:.1f} s: {' '.join(nodes.urls)}")
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def revive(cluster: RabbitCluster) -> None:
    """Boot the victim again before the test if an earlier one killed it (whatever happened
    there), so every test starts with 3 nodes; the last kill needs no boot, ``stop`` ends it."""
    if not cluster.running(VICTIM):
        began = time.monotonic()
        cluster.restart(VICTIM)
        print(f"\nnode {VICTIM + 1} booted again in {time.monotonic() - began:.1f} s", end="")


def _on(cluster: RabbitCluster, index: int) -> list[str]:
    """Every URL, starting at node ``index`` (the client connects there first)."""
    urls = cluster.urls
    return urls[index:] + urls[:index]


def _queue(name: str) -> QueueDef:
    return QueueDef(name, arguments={"x-queue-type": "quorum"})


def _topology(*queues: QueueDef) -> ServiceTopology:
    return ServiceTopology(
        name="cluster-test",
        exchanges=(),
        queues=queues,
        bindings=(),
        publishes={},
        consumes={},
        messages={},
    )


async def _declare_led_by(cluster: RabbitCluster, index: int, queue: str) -> None:
    """Declare ``queue`` with its leader on node ``index`` (client-local from that node)."""
    async with mmate.Client(
        [cluster.urls[index]], service="placer", queue_leader_locator="client-local"
    ) as client:
        await client.declare(_topology(_queue(queue)))
    leader = await asyncio.to_thread(cluster.leader_of, queue)
    assert leader == cluster.nodes[index].name, f"{queue} is led by {leader}"


async def _drain(url: str, queue: str, expected: set[str], timeout: float = 60) -> dict[str, float]:
    """Consume ``queue`` until every id in ``expected`` arrived (or ``timeout``); returns
    message id -> arrival time (``time.monotonic``)."""
    arrived: dict[str, float] = {}
    done = asyncio.Event()
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel()
        await channel.basic_qos(prefetch_count=500)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            arrived.setdefault(str(message.header.properties.message_id), time.monotonic())
            await message.channel.basic_ack(message.delivery.delivery_tag)
            if expected <= arrived.keys():
                done.set()

        await channel.basic_consume(queue, on_message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    finally:
        await conn.close()
    return arrived


@dataclass
class Stream:
    """Publishers that publish confirmed messages one after the other until stopped."""

    client: mmate.Client
    route: PublishRoute
    confirmed: dict[str, float] = field(default_factory=dict)
    """message id -> when its confirm came."""
    failed: list[str] = field(default_factory=list)
    n: int = 0

    async def worker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.n += 1
            message = Tick(n=self.n)
            message_id = str(uuid.uuid4())
            try:
                await self.client.publish(
                    self.route, message, self.route.routing_key, {"message_id": message_id}
                )
            except mmate.PublishError as exc:
                self.failed.append(f"{type(exc).__name__}: {exc}")
                continue
            self.confirmed[message_id] = time.monotonic()

    def longest_gap(self, after: float) -> float:
        """The longest time without a confirm from ``after`` on."""
        times = sorted(t for t in self.confirmed.values() if t >= after)
        points = [after, *times]
        return max(b - a for a, b in itertools.pairwise(points)) if times else 1e9


SCENARIOS = {
    # name: (node of the publishing client, node of the queue leader)
    "clients": (VICTIM, 1),
    "leader": (1, VICTIM),
    "both": (VICTIM, VICTIM),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_node_loss_loses_no_confirmed_message(
    cluster: RabbitCluster, revive: None, scenario: str
) -> None:
    client_node, leader_node = SCENARIOS[scenario]
    queue = f"cluster.{scenario}.{uuid.uuid4().hex[:6]}"
    await _declare_led_by(cluster, leader_node, queue)
    route = PublishRoute(TICK, "", queue)
    client = mmate.Client(
        _on(cluster, client_node),
        service=f"cluster-{scenario}",
        url_order="ordered",
        publish_timeout=15,
        reconnect=mmate.ReconnectPolicy(initial_delay=0.05, max_delay=1.0),
    )
    async with client:
        stream = Stream(client, route)
        stop = asyncio.Event()
        workers = [asyncio.create_task(stream.worker(stop)) for _ in range(8)]
        await asyncio.sleep(3)
        before = len(stream.confirmed)
        killed_at = await asyncio.to_thread(cluster.kill, VICTIM)
        await asyncio.sleep(10)  # the node stays down while the stream goes on
        stop.set()
        await asyncio.gather(*workers)
        gap = stream.longest_gap(killed_at)
        reconnects, resent = client.connection.reconnects, client.resent
    survivor = cluster.urls[2]
    arrived = await _drain(survivor, queue, set(stream.confirmed))
    lost = set(stream.confirmed) - arrived.keys()
    print(
        f"\n[{scenario}] node {VICTIM + 1} killed: {len(stream.confirmed)} confirmed "
        f"({before} before the kill), {len(stream.failed)} failed, {len(lost)} confirmed but "
        f"lost, {len(arrived) - len(stream.confirmed)} extra arrived (sent again), longest "
        f"time without a confirm after the kill {gap:.2f} s, client reconnects {reconnects}, "
        f"publishes sent again {resent}"
    )
    assert not lost, f"{len(lost)} confirmed messages lost"
    assert not stream.failed, stream.failed[:3]
    assert gap < RECOVERY_BOUND
    assert len(stream.confirmed) > before  # it went on publishing through the outage


@pytest.fixture
async def cascade_prefix(cluster: RabbitCluster) -> AsyncIterator[str]:
    yield f"cluster.{uuid.uuid4().hex[:6]}.delay"


async def test_cascade_leader_loss_keeps_delays_on_time(
    cluster: RabbitCluster, revive: None, cascade_prefix: str
) -> None:
    destination = f"cluster.delayed.{uuid.uuid4().hex[:6]}"
    await _declare_led_by(cluster, 2, destination)
    # The worst case of #18 §3: every cascade leader on the node that dies.
    async with mmate.Client(
        [cluster.urls[VICTIM]],
        service="cascade-placer",
        delay_prefix=cascade_prefix,
        queue_leader_locator="client-local",
        delay_relay=False,
    ) as placer:
        await placer.delays.ensure()
    level0 = await asyncio.to_thread(cluster.leader_of, f"{cascade_prefix}.0")
    assert level0 == cluster.nodes[VICTIM].name
    route = PublishRoute(TICK, "", destination)
    due: dict[str, float] = {}
    async with mmate.Client(
        _on(cluster, 1),
        service="cascade-user",
        url_order="ordered",
        delay_prefix=cascade_prefix,
        publish_timeout=15,
    ) as client:
        for n in range(60):
            delay = 2 + n % 8  # 2..9 s
            message_id = str(uuid.uuid4())
            sent = time.monotonic()
            await client.publish(
                route, Tick(n=n), destination, {"message_id": message_id, "delay": delay}
            )
            due[message_id] = sent + delay
        killed_at = await asyncio.to_thread(cluster.kill, VICTIM)
        wait = 90 if DLX_CONFIRM_TIMEOUT_MS else 400
        arrived = await _drain(cluster.urls[2], destination, set(due), timeout=wait)
        relayed = client.delays.relayed
    lost = set(due) - arrived.keys()
    early = [i for i in arrived if i in due and arrived[i] < due[i]]
    late = sorted(arrived[i] - due[i] for i in arrived if i in due)
    print(
        f"\n[cascade] node {VICTIM + 1} (every cascade leader) killed "
        f"{killed_at - min(due.values()) + 2:.1f} s after the first delayed publish: "
        f"{len(arrived)} of {len(due)} delayed messages arrived, {len(early)} early, "
        f"lateness median {late[len(late) // 2]:.2f} s, max {late[-1]:.2f} s, relayed {relayed}"
        if late
        else f"\n[cascade] nothing arrived of {len(due)}"
    )
    assert not lost, f"{len(lost)} delayed messages did not arrive"
    assert not early
    assert late[-1] < DELAY_LATENESS_BOUND
