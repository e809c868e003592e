"""Running on several nodes (#18), what can be shown on one broker: a nacked publish is sent again
until the broker takes it, connections start at a random URL, quorum queues get a leader locator
(and keep working when they exist without one), ``serve`` declares no delay cascade, and a
reconnect declares only what may be gone. The node-loss tests are in tests/cluster/."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
import uuid
from collections.abc import AsyncIterator

import aiormq
import mmate
import pytest
from conftest import BROKER_URL, wait_until
from mmate import BindingDef, ExchangeDef, QueueDef, ServiceTopology
from mmate._transport.connection import Connection
from mmate._transport.memory import MemoryBroker
from sample_app import MESSAGES, OrderCreatedEvent, make_app

ROUTE = mmate.PublishRoute(MESSAGES["OrderCreatedEvent"], "", "")


def event(n: int = 1) -> OrderCreatedEvent:
    return OrderCreatedEvent(sequence=n, order_id=f"o{n}", customer_id="c", amount=1)


def full_queue_topology(name: str) -> tuple[ServiceTopology, mmate.PublishRoute]:
    """An exchange bound to a queue that holds one message and nacks the next publish."""
    exchange, queue = f"{name}.x", f"{name}.full"
    topo = ServiceTopology(
        name="nack",
        exchanges=(ExchangeDef(exchange),),
        queues=(QueueDef(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}),),
        bindings=(BindingDef(exchange, queue, "#"),),
        publishes={},
        consumes={},
        messages={},
    )
    return topo, mmate.PublishRoute(MESSAGES["OrderCreatedEvent"], exchange, "k")


@pytest.fixture
async def memory() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker()
    yield broker
    broker.close()


# -- a nack is the broker refusing the message now: send it again ------------------------------


async def test_a_nacked_publish_is_sent_again_until_the_broker_takes_it(
    memory: MemoryBroker,
) -> None:
    topo, route = full_queue_topology("t")
    queue = topo.queues[0].name
    async with mmate.Client(memory.url, service="nack") as client:
        await client.declare(topo)
        await client.publish(route, event(1), "k", {})
        pending = asyncio.create_task(client.publish(route, event(2), "k", {"timeout": 10}))
        await asyncio.sleep(0.5)
        assert not pending.done()  # nacked, and sent again, and nacked...
        assert client.resent == 1
        channel = await client.connection.channel(confirms=False)
        first = await channel.get(queue, no_ack=True)  # room for one
        assert first is not None
        await asyncio.wait_for(pending, 5)  # ...until the queue took it
        second = await channel.get(queue, no_ack=True)
        assert second is not None and json.loads(second.body)["payload"]["sequence"] == 2
        assert await channel.get(queue, no_ack=True) is None  # exactly once
        await channel.close()


async def test_a_nack_that_lasts_the_whole_timeout_raises_nack_error(
    memory: MemoryBroker,
) -> None:
    topo, route = full_queue_topology("t")
    async with mmate.Client(memory.url, service="nack") as client:
        await client.declare(topo)
        await client.publish(route, event(1), "k", {})
        started = time.monotonic()
        with pytest.raises(mmate.NackError, match=r"nacked it on exchange 't\.x'"):
            await client.publish(route, event(2), "k", {"timeout": 0.6})
        assert time.monotonic() - started >= 0.6
        assert memory.message_count(topo.queues[0].name) == 1


# -- connections spread over the URLs ---------------------------------------------------------


def test_connections_start_at_a_random_url_unless_ordered() -> None:
    urls = [f"amqp://guest:guest@127.0.0.1:{port}/" for port in (5701, 5702, 5703)]
    starts = {Connection(urls, service="s").url for _ in range(60)}
    assert len(starts) == 3  # (1 - 3 * (2/3)^60: never fails in practice)
    ordered = {Connection(urls, service="s", url_order="ordered").url for _ in range(20)}
    assert ordered == {"amqp://guest:****@127.0.0.1:5701/"}
    with pytest.raises(mmate.MmateError, match="url_order must be"):
        mmate.Client(urls, service="s", url_order="sideways")  # type: ignore[arg-type]


def test_placement_settings_are_checked_when_the_client_is_made() -> None:
    with pytest.raises(mmate.MmateError, match="queue_leader_locator"):
        mmate.Client("memory://", service="s", queue_leader_locator="random")  # type: ignore[arg-type]
    with pytest.raises(mmate.MmateError, match="quorum_initial_group_size"):
        mmate.Client("memory://", service="s", quorum_initial_group_size=0)


# -- quorum queues get a leader locator --------------------------------------------------------


def quorum_topology(name: str, *, go_compatible: bool = False) -> ServiceTopology:
    return ServiceTopology(
        name="placed",
        exchanges=(),
        queues=(
            QueueDef(f"{name}.q", arguments={"x-queue-type": "quorum"}),
            QueueDef(f"{name}.classic", arguments={"x-queue-type": "classic"}),
            QueueDef(
                f"{name}.go",
                arguments={"x-queue-type": "quorum"},
                go_compatible=go_compatible,
            ),
        ),
        bindings=(),
        publishes={},
        consumes={},
        messages={},
    )


async def test_quorum_queues_are_declared_with_a_leader_locator(memory: MemoryBroker) -> None:
    topo = quorum_topology("p", go_compatible=True)
    async with mmate.Client(memory.url, service="placed", quorum_initial_group_size=3) as client:
        await client.declare(topo)
        await client.run_delay_relay()
    quorum = memory.queue("p.q").arguments
    assert quorum["x-queue-leader-locator"] == "balanced"
    assert quorum["x-quorum-initial-group-size"] == 3
    assert "x-queue-leader-locator" not in memory.queue("p.classic").arguments
    assert "x-queue-leader-locator" not in memory.queue("p.go").arguments  # exactly as Go does
    cascade = [q for q in memory.queues() if q.name.startswith("mmate.delay.")]
    assert len(cascade) == 30
    assert all(q.arguments["x-queue-leader-locator"] == "balanced" for q in cascade)


async def test_a_queue_that_exists_without_the_locator_is_kept_as_it_is(
    memory: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topo = quorum_topology("old")
    async with mmate.Client(memory.url, service="old", queue_leader_locator=None) as client:
        await client.declare(topo)
    caplog.set_level(logging.INFO, "mmate.declare")
    async with mmate.Client(memory.url, service="new") as client:
        await client.declare(topo)  # 406 on the locator: declared again without it
        await client.declare(topo)
    assert "x-queue-leader-locator" not in memory.queue("old.q").arguments
    assert "exists with x-queue-leader-locator=none" in caplog.text
    # Placed otherwise by another client: used as it is, too.
    async with mmate.Client(memory.url, service="local", queue_leader_locator="client-local") as c:
        await c.declare(quorum_topology("local"))
    async with mmate.Client(memory.url, service="new", quorum_initial_group_size=2) as client:
        await client.declare(quorum_topology("local"))
    assert memory.queue("local.q").arguments["x-queue-leader-locator"] == "client-local"
    assert "x-quorum-initial-group-size" not in memory.queue("local.q").arguments
    # A difference in the spec's own arguments still fails, naming it.
    changed = ServiceTopology(
        name="placed",
        exchanges=(),
        queues=(QueueDef("old.q", arguments={"x-queue-type": "quorum", "x-max-length": 5}),),
        bindings=(),
        publishes={},
        consumes={},
        messages={},
    )
    async with mmate.Client(memory.url, service="new") as client:
        with pytest.raises(mmate.PreconditionFailed, match="x-max-length"):
            await client.declare(changed)


def _leader_locators(vhost: str = "/") -> dict[str, str]:
    out = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_queues",
            "-p",
            vhost,
            "name",
            "arguments",
            "--formatter",
            "json",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    found: dict[str, str] = {}
    for row in json.loads(out):
        arguments = row["arguments"]
        # [[key, type, value], ...] (RabbitMQ 3.10) or {key: value}
        pairs = (
            arguments.items() if isinstance(arguments, dict) else [(a[0], a[-1]) for a in arguments]
        )
        for key, value in pairs:
            if key == "x-queue-leader-locator":
                found[row["name"]] = value
    return found


@pytest.mark.broker
async def test_the_broker_takes_the_locator_and_the_fallback(
    extra_entities: tuple[list[str], list[str]],
) -> None:
    queues, _ = extra_entities
    name = f"t.{uuid.uuid4().hex[:8]}"
    topo = quorum_topology(name)
    queues.extend(q.name for q in topo.queues)
    conn = await aiormq.connect(BROKER_URL)
    try:
        channel = await conn.channel()
        await channel.queue_declare(
            f"{name}.go", durable=True, arguments={"x-queue-type": "quorum"}
        )
    finally:
        await conn.close()
    async with mmate.Client(BROKER_URL, service="placed") as client:
        await client.declare(topo)  # .go exists without the locator: kept as it is
    locators = await asyncio.to_thread(_leader_locators)
    assert locators.get(f"{name}.q") == "balanced"
    assert f"{name}.go" not in locators and f"{name}.classic" not in locators


@pytest.mark.broker
async def test_the_broker_takes_the_locator_values_docs_cluster_names() -> None:
    """docs/cluster.md's table of ``x-queue-leader-locator`` values, the RabbitMQ 3.x column:
    mmate's two values and the older ``random`` / ``least-leaders`` are taken, the classic
    queues' ``min-masters`` is refused (4.x takes it as ``balanced``; not installed here)."""
    conn = await aiormq.connect(BROKER_URL)
    taken: dict[str, bool] = {}
    try:
        version = str(conn.server_properties.get("version", ""))
        for value in ("client-local", "balanced", "random", "least-leaders", "min-masters"):
            name = f"t.{uuid.uuid4().hex[:8]}.locator"
            channel = await conn.channel()
            try:
                await channel.queue_declare(
                    name,
                    durable=True,
                    arguments={"x-queue-type": "quorum", "x-queue-leader-locator": value},
                )
            except aiormq.exceptions.ChannelPreconditionFailed:
                taken[value] = False
            else:
                taken[value] = True
                await channel.queue_delete(name)
    finally:
        await conn.close()
    expected = {"client-local": True, "balanced": True, "random": True, "least-leaders": True}
    if version.startswith("3."):
        expected["min-masters"] = False
    else:
        taken.pop("min-masters")
    assert taken == expected, version


# -- serve declares no cascade; a reconnect declares only what may be gone ----------------------


async def test_serve_declares_no_cascade_and_relays_once_one_exists(memory: MemoryBroker) -> None:
    app = make_app()

    class Noop(app.handlers):  # type: ignore[misc,name-defined]
        async def handle_order_created_event(self, message: object, ctx: object) -> None:
            pass

        async def handle_create_order_command(self, message: object, ctx: object) -> None:
            pass

        async def handle_get_order_query(self, message: object, ctx: object) -> object:
            raise NotImplementedError

    async with (
        mmate.Client(memory.url, service="order-service") as server,
        mmate.Client(memory.url, service="shop", delay_relay=False) as shop,
    ):
        await server.declare(app.order_service)
        await server.serve(Noop())
        assert not memory.has_queue("mmate.delay.ready") and not server.delays.relay_running
        await app.publisher(shop).publish_order_created_event(event(), delay=1)
        assert memory.has_queue("mmate.delay.ready")  # the shop declared it
        await wait_until(lambda: server.delays.relay_running, timeout=10)  # the server found it
    assert not any(t.get_name().startswith("mmate:delay-watch") for t in asyncio.all_tasks())


def _with_exclusive(app_topology: ServiceTopology, name: str) -> ServiceTopology:
    """The app's topology plus an exclusive queue bound to its events exchange (gone with the
    connection, so a reconnect must declare it again)."""
    exchange = app_topology.exchanges[0].name
    return ServiceTopology(
        name=app_topology.name,
        exchanges=app_topology.exchanges,
        queues=(*app_topology.queues, QueueDef(name, durable=False, exclusive=True)),
        bindings=(*app_topology.bindings, BindingDef(exchange, name, "#")),
        publishes=app_topology.publishes,
        consumes=app_topology.consumes,
        messages=app_topology.messages,
    )


@pytest.mark.broker
async def test_a_reconnect_declares_only_what_may_be_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from test_recovery import FAST, _kill_connections

    app = make_app()
    exclusive = f"t.{app.suffix}.mine"
    topology = _with_exclusive(app.order_service, exclusive)
    service = f"reconnect-{app.suffix}"
    caplog.set_level(logging.INFO, "mmate.declare")
    try:
        async with mmate.Client(BROKER_URL, service=service, reconnect=FAST) as client:
            await client.declare(topology)
            assert await asyncio.to_thread(_kill_connections, service) == 1
            await wait_until(lambda: client.connection.reconnects == 1, timeout=30)
            assert "1 volatile entities declared again, the durable ones are there" in caplog.text
            assert caplog.text.count(f"declared topology of {topology.name}") == 1  # the first
            channel = await client.connection.channel(confirms=False)
            info = await channel.declare_queue(exclusive, passive=True)  # back, and bound:
            await app.publisher(client).publish_order_created_event(event())
            assert info.name == exclusive
            await asyncio.sleep(0.2)
            assert (await channel.declare_queue(exclusive, passive=True)).message_count == 1
            # A durable queue deleted meanwhile: the check finds it gone, all is declared again.
            await channel.delete_queue(app.order_queue)
            await channel.close()
            assert await asyncio.to_thread(_kill_connections, service) == 1
            await wait_until(lambda: client.connection.reconnects == 2, timeout=30)
            assert "is gone from the broker; declaring it again" in caplog.text
            channel = await client.connection.channel(confirms=False)
            await channel.declare_queue(app.order_queue, passive=True)
            await channel.close()
    finally:
        conn = await aiormq.connect(BROKER_URL)
        try:
            for queue in app.queues:
                ch = await conn.channel()
                await ch.queue_delete(queue)
            for exchange in app.exchanges:
                ch = await conn.channel()
                await ch.exchange_delete(exchange)
        finally:
            await conn.close()
