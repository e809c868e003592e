"""Delayed delivery through the real broker: timing within the issue's window (no earlier than
asked, less than 2 s after), counts of many mixed delays, the level a long delay waits in, the
relay's handling of unroutable destinations, durability flags, and plugin opt-in."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL
from delay_support import Recorder, count, prefix_fixture, wait_for
from mmate import Publication
from mmate._delays.cascade import HEADER_FAILURE, LEVELS, DelayTopology
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply, Region

pytestmark = pytest.mark.broker
__all__ = ["prefix_fixture"]  # the `prefix` fixture: a unique delay prefix, deleted afterwards

WINDOW = 2.0
"""The issue's requirement: delivered within two seconds after the asked time."""


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"ORDER-{n}",
        sequence=n,
        order_id=f"ORDER-{n}",
        customer_id="C-1",
        amount=1.0,
        region=Region.EU,
    )


async def test_each_delay_arrives_no_earlier_than_asked_and_within_two_seconds(
    app: App, prefix: str
) -> None:
    recorder = Recorder()
    async with mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        await client.run_delay_relay()  # declared before the clock starts
        await recorder.start(app.audit_queue)
        publisher = app.publisher(client)
        asked: dict[str, tuple[float, float]] = {}
        for n, delay in enumerate([1, 2, 3, 5, 0.4, 2.5]):
            mid = f"00000000-0000-4000-8000-{n:012d}"
            started = time.monotonic()
            await publisher.publish_order_created_event(event(n), delay=delay, message_id=mid)
            asked[mid] = (started, delay)
        await wait_for(lambda: len(recorder.arrivals) == len(asked), 15)
        await recorder.close()
    arrivals = recorder.by_id()
    assert arrivals.keys() == asked.keys()
    for mid, (started, delay) in asked.items():
        took = arrivals[mid].at - started
        assert delay <= took < delay + WINDOW, (delay, took)
        assert arrivals[mid].message.delivery.routing_key == "order.eu.created"


async def test_schedule_at_arrives_at_that_time_not_before(app: App, prefix: str) -> None:
    recorder = Recorder()
    async with mmate.Client(BROKER_URL, service="scheduler", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        await client.run_delay_relay()
        await recorder.start(app.audit_queue)
        at = datetime.now(UTC) + timedelta(seconds=2.3)
        await client.schedule_command(
            app.publisher(client).publish_order_created_event, event(1), at
        )
        await wait_for(lambda: len(recorder.arrivals) == 1, 10)
        arrived = datetime.now(UTC)
        await recorder.close()
    assert at <= arrived < at + timedelta(seconds=WINDOW)


async def test_many_mixed_delays_all_arrive_exactly_once(app: App, prefix: str) -> None:
    recorder = Recorder()
    total = 600
    async with mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        await recorder.start(app.audit_queue)
        publisher = app.publisher(client)
        delays = [(n % 5) + (n % 3) / 3 for n in range(total)]  # 0 s to 4.67 s, interleaved
        started = time.monotonic()
        await asyncio.gather(
            *(
                publisher.publish_order_created_event(event(n), delay=d)
                for n, d in enumerate(delays)
            )
        )
        await wait_for(lambda: len(recorder.arrivals) >= total, 30)
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive meanwhile
        await recorder.close()
        assert client.delays.relayed == total
    assert len(recorder.arrivals) == total
    sequences = sorted(json.loads(a.message.body)["payload"]["sequence"] for a in recorder.arrivals)
    assert sequences == list(range(total))
    assert min(a.at for a in recorder.arrivals) >= started


async def test_long_delay_waits_in_the_level_of_its_highest_bit_then_moves_down(
    app: App, raw: aiormq.abc.AbstractChannel, prefix: str
) -> None:
    topo = DelayTopology(prefix)
    async with mmate.Client(
        BROKER_URL, service="delayer", delay_prefix=prefix, delay_relay=False
    ) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        await publisher.publish_order_created_event(event(1), delay=2**20 + 5)
        await publisher.publish_order_created_event(event(2), delay=timedelta(days=365 * 8))
        await publisher.publish_order_created_event(event(3), delay=6)  # 110: levels 2, 1
        counts = {lv: await count(raw, topo.level(lv)) for lv in range(LEVELS)}
        assert counts[20] == 1 and counts[27] == 1 and counts[2] == 1
        assert sum(counts.values()) == 3
        # 6 s = 4 s in level 2, then 2 s in level 1, then the ready queue (no relay running).
        await wait_for_count(raw, topo.level(1), 1, timeout=6)
        assert await count(raw, topo.level(2)) == 0
        await wait_for_count(raw, topo.ready, 1, timeout=4)
        assert await count(raw, app.audit_queue) == 0  # nobody relays: it waits, not lost
        # A relay started anywhere delivers it.
        async with mmate.Client(BROKER_URL, service="relay", delay_prefix=prefix) as relay:
            await relay.run_delay_relay()
            await wait_for_count(raw, app.audit_queue, 1, timeout=5)
        assert await count(raw, topo.level(20)) == 1 and await count(raw, topo.level(27)) == 1


async def wait_for_count(
    channel: aiormq.abc.AbstractChannel, queue: str, wanted: int, timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await count(channel, queue) != wanted:
        if loop.time() > deadline:
            raise AssertionError(f"{queue} did not reach {wanted} messages within {timeout} s")
        await asyncio.sleep(0.05)


async def test_relayed_message_keeps_identity_and_restores_ttl_without_cascade_headers(
    app: App, prefix: str
) -> None:
    recorder = Recorder()
    async with mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        await recorder.start(app.audit_queue)
        await client.publish_with_delay(
            app.publisher(client).publish_order_created_event,
            event(4),
            2,
            ttl=1,  # shorter than the delay: it must not expire inside the cascade
            correlation_id="corr-4",
            headers={"x-tenant": "t1"},
        )
        await wait_for(lambda: len(recorder.arrivals) == 1, 10)
        await recorder.close()
    message = recorder.arrivals[0].message
    props = message.header.properties
    body = json.loads(message.body)
    assert props.message_id == body["id"] and props.correlation_id == "corr-4"
    assert props.expiration == "1000" and props.delivery_mode == 2
    assert (
        props.headers["x-tenant"] == "t1" and props.headers["x-message-type"] == "OrderCreatedEvent"
    )
    assert not [
        h for h in props.headers if h.startswith(("x-mmate-delay", "x-death", "x-first", "x-last"))
    ]
    assert message.delivery.exchange == app.events


async def test_unroutable_or_missing_destination_goes_to_the_dead_queue_with_the_reason(
    app: App, raw: aiormq.abc.AbstractChannel, prefix: str
) -> None:
    topo = DelayTopology(prefix)
    async with mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        # Accepted now (the cascade takes it); nothing is bound for this key when it is due.
        await publisher.publish_order_created_event(event(1), delay=1, routing_key="nobody.x")
        await publisher.publish_order_created_event(event(2), delay=1, exchange=f"{prefix}.gone")
        await wait_for(lambda: client.delays.dead_lettered >= 2, 6)  # counted after the confirm
    # At least once: the publish to the missing exchange closes the relay's publishing channel, and
    # a move in flight on it that lost its confirm is sent again, so a copy may arrive twice.
    reasons: dict[str, str] = {}
    while (got := await raw.basic_get(topo.dead, no_ack=True)).delivery_tag is not None:
        headers = got.header.properties.headers
        reason = headers[HEADER_FAILURE]
        reasons[str(got.header.properties.message_id)] = (
            reason.decode() if isinstance(reason, bytes) else str(reason)
        )
        assert headers["x-mmate-delay-exchange"] in (app.events, f"{prefix}.gone")
    assert len(reasons) == 2, reasons
    assert any("unroutable" in r for r in reasons.values()) and any(
        "404" in r or "not found" in r.lower() or "NOT_FOUND" in r for r in reasons.values()
    ), reasons


async def test_publish_many_and_batch_with_delays(app: App, prefix: str) -> None:
    recorder = Recorder()
    async with mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        await recorder.start(app.audit_queue)
        async with client.batch() as batch:
            publisher = app.publisher(batch)
            for n in range(20):
                await publisher.publish_order_created_event(event(n), delay=n % 3)
        await wait_for(lambda: len(recorder.arrivals) == 20, 10)
        await recorder.close()
    assert len(recorder.by_id()) == 20


def _rabbitmqctl(*args: str) -> list[list[str]]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


async def test_the_infrastructure_is_durable_quorum_and_messages_persistent(
    app: App, raw: aiormq.abc.AbstractChannel, prefix: str
) -> None:
    topo = DelayTopology(prefix)
    async with mmate.Client(
        BROKER_URL, service="delayer", delay_prefix=prefix, delay_relay=False
    ) as client:
        await client.declare(app.order_service)
        await app.publisher(client).publish_order_created_event(event(1), delay=3600)
        queues = {
            row[0]: row[1:]
            for row in _rabbitmqctl("list_queues", "name", "durable", "type", "arguments")
            if row[0].startswith(prefix + ".")
        }
        exchanges = {
            row[0]: row[1]
            for row in _rabbitmqctl("list_exchanges", "name", "durable")
            if row[0].startswith(prefix + ".")
        }
        got = await raw.basic_get(topo.level(11), no_ack=False)  # 3600 = 2048 + ...
        assert got.header.properties.delivery_mode == 2
        await raw.basic_nack(got.delivery.delivery_tag, requeue=True)
    assert len(queues) == LEVELS + 2 and len(exchanges) == LEVELS + 1
    for name, (durable, kind, arguments) in queues.items():
        assert durable == "true" and kind == "quorum", name
        if name not in (topo.ready, topo.dead):
            assert "at-least-once" in arguments and "reject-publish" in arguments, name
    assert set(exchanges.values()) == {"true"}


async def test_plugin_mode_without_the_plugin_fails_at_startup(prefix: str) -> None:
    client = mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix, delay_mode="plugin")
    with pytest.raises(mmate.FeatureNotAvailable, match="rabbitmq_delayed_message_exchange"):
        await client.connect()
    await client.close()


async def test_bad_delays_raise_before_anything_is_published(
    app: App, raw: aiormq.abc.AbstractChannel, prefix: str
) -> None:
    async with mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        with pytest.raises(mmate.MmateError, match="negative"):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id="C", amount=1), delay=-1
            )
        with pytest.raises(mmate.MmateError, match="timezone-aware"):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id="C", amount=1), schedule_at=datetime(2030, 1, 1)
            )
        assert await count(raw, app.order_queue) == 0


async def test_a_serving_client_relays_what_another_client_delayed(app: App, prefix: str) -> None:
    handled: list[tuple[int, float, bool]] = []

    class Orders(app.handlers):  # type: ignore[misc,name-defined]
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: mmate.MessageContext
        ) -> None:
            handled.append((message.sequence, time.monotonic(), "x-death" in ctx.headers))

        async def handle_create_order_command(self, message: object, ctx: object) -> None:
            pass

        async def handle_get_order_query(self, message: object, ctx: object) -> object:
            raise NotImplementedError

    async with (
        mmate.Client(BROKER_URL, service="order-service", delay_prefix=prefix) as server,
        mmate.Client(BROKER_URL, service="shop", delay_prefix=prefix, delay_relay=False) as shop,
    ):
        await server.declare(app.order_service)
        await server.serve(Orders())  # no cascade under this prefix yet: nothing declared
        assert not server.delays.relay_running
        started = time.monotonic()
        await app.publisher(shop).publish_order_created_event(event(9), delay=1)
        # The shop declared the cascade; the serving client finds it and relays.
        await wait_for(lambda: server.delays.relay_running, 10)
        await wait_for(lambda: len(handled) == 1, 10)
        # The relay counts after its confirm, which may come after the delivery.
        await wait_for(lambda: server.delays.relayed == 1, 5)
        assert not shop.delays.relay_running
    sequence, arrived, saw_death = handled[0]
    assert sequence == 9 and arrived - started >= 1 and not saw_death


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def limited_url() -> Iterator[str]:
    """A user that may read and write everything but configure nothing."""
    name, password = f"mmate-delay-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    _ctl("add_user", name, password)
    try:
        _ctl("set_permissions", "-p", "/", name, "^$", ".*", ".*")
        yield BROKER_URL.replace("guest:guest", f"{name}:{password}")
    finally:
        _ctl("delete_user", name)


async def test_without_configure_rights_serving_works_and_delays_use_an_existing_cascade(
    app: App, prefix: str, limited_url: str
) -> None:
    recorder = Recorder()
    handlers = _noop_handlers(app)
    async with mmate.Client(limited_url, service="limited", delay_prefix=prefix) as client:
        async with mmate.Client(BROKER_URL, service="admin", delay_relay=False) as admin:
            await admin.declare(app.order_service)
        # No cascade yet, and this user may not declare one: serving still works, without relay.
        await client.serve(handlers, queues=[app.order_queue])
        assert not client.delays.relay_running
        with pytest.raises(mmate.AccessRefused, match="may not declare it"):
            await app.publisher(client).publish_order_created_event(event(1), delay=1)
    async with mmate.Client(BROKER_URL, service="admin", delay_prefix=prefix) as admin:
        await admin.run_delay_relay()  # declares it
    async with mmate.Client(limited_url, service="limited", delay_prefix=prefix) as client:
        await recorder.start(app.audit_queue)
        await client.serve(handlers, queues=[app.order_queue])
        assert client.delays.relay_running  # verified the existing one passively
        await app.publisher(client).publish_order_created_event(event(2), delay=1)
        await wait_for(lambda: len(recorder.arrivals) == 1, 10)
        await recorder.close()
    assert json.loads(recorder.arrivals[0].message.body)["payload"]["sequence"] == 2


def _noop_handlers(app: App) -> Any:
    class Noop(app.handlers):  # type: ignore[misc,name-defined]
        async def handle_order_created_event(self, message: object, ctx: object) -> None:
            pass

        async def handle_create_order_command(self, message: object, ctx: object) -> None:
            pass

        async def handle_get_order_query(self, message: object, ctx: object) -> object:
            raise NotImplementedError

    return Noop()


async def test_a_delayed_query_is_answered_after_its_delay(app: App, prefix: str) -> None:
    class Responder(app.handlers):  # type: ignore[misc,name-defined]
        async def handle_order_created_event(self, message: object, ctx: object) -> None:
            pass

        async def handle_create_order_command(self, message: object, ctx: object) -> None:
            pass

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: mmate.MessageContext
        ) -> OrderReply:
            return OrderReply(order_id=message.order_id, status="found")

    async with mmate.Client(BROKER_URL, service="order-service", delay_prefix=prefix) as client:
        await client.declare(app.order_service)
        await client.serve(Responder())
        started = time.monotonic()
        reply = await app.publisher(client).request_get_order_query(
            GetOrderQuery(order_id="O-7"), delay=1, timeout=10
        )
        took = time.monotonic() - started
    assert reply.order_id == "O-7" and reply.status == "found"
    assert 1 <= took < 1 + WINDOW


async def test_plugin_mode_refuses_delayed_batches_before_sending_anything(app: App) -> None:
    client = mmate.Client(BROKER_URL, service="delayer", delay_mode="plugin")  # never connected
    route = app.order_service.publishes["OrderCreatedEvent"]
    publications = [
        Publication(route, event(1), "order.eu.created"),
        Publication(route, event(2), "order.eu.created", {"delay": 5}),
    ]
    with pytest.raises(mmate.FeatureNotAvailable, match="cascade"):
        await client.publish_many(publications)


async def test_a_ready_message_without_destination_headers_is_dead_lettered_not_dropped(
    prefix: str, raw: aiormq.abc.AbstractChannel
) -> None:
    topo = DelayTopology(prefix)
    async with mmate.Client(BROKER_URL, service="relay", delay_prefix=prefix) as client:
        await client.run_delay_relay()
        await raw.basic_publish(
            b"{}",
            exchange=topo.delivery,
            routing_key="0." * 27 + "0.somewhere",
            properties=aiormq.spec.Basic.Properties(message_id="m-1", delivery_mode=2),
        )
        await wait_for_count(raw, topo.dead, 1, timeout=5)
    got = await raw.basic_get(topo.dead, no_ack=True)
    assert got.header.properties.message_id == "m-1" and got.body == b"{}"
    reason = got.header.properties.headers[HEADER_FAILURE]
    assert b"no x-mmate-delay-exchange" in (
        reason if isinstance(reason, bytes) else reason.encode()
    )


def _kill_connections(name_part: str) -> int:
    """Close (broker side) the connections of this test's own client, found by its unique name."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    killed = 0
    for line in listing.splitlines():
        if name_part in line:
            pid = line.split("\t", 1)[0].strip()
            _ctl("close_connection", pid, "test: relay connection killed")
            killed += 1
    return killed


async def test_the_relay_survives_a_lost_connection_and_loses_nothing(
    app: App, prefix: str
) -> None:
    recorder = Recorder()
    relay_name = f"relay-{uuid.uuid4().hex[:8]}"
    async with (
        mmate.Client(BROKER_URL, service="shop", delay_prefix=prefix, delay_relay=False) as shop,
        mmate.Client(BROKER_URL, service=relay_name, delay_prefix=prefix) as relay,
    ):
        await shop.declare(app.order_service)
        await relay.run_delay_relay()
        await recorder.start(app.audit_queue)
        publisher = app.publisher(shop)
        await asyncio.gather(
            *(publisher.publish_order_created_event(event(n), delay=4) for n in range(50))
        )
        assert await asyncio.to_thread(_kill_connections, relay_name) == 1
        await wait_for(lambda: len(recorder.arrivals) >= 50, 20)
        await asyncio.sleep(0.5)
        await recorder.close()
        assert relay.connection.reconnects == 1 and relay.delays.relay_running
    # Nothing lost. If the kill hit the relay between a confirm and its ack (rabbitmqctl may take
    # seconds), that message comes again with the same id: at-least-once, as documented.
    ids: dict[int, set[str]] = {}
    for arrival in recorder.arrivals:
        sequence = json.loads(arrival.message.body)["payload"]["sequence"]
        ids.setdefault(sequence, set()).add(str(arrival.message.header.properties.message_id))
    assert sorted(ids) == list(range(50))
    assert all(len(mids) == 1 for mids in ids.values())


async def test_hostile_destination_headers_are_dead_lettered_and_spare_the_messages_beside_them(
    prefix: str, raw: aiormq.abc.AbstractChannel
) -> None:
    """Ready messages whose destination headers no publish could carry (a name over 255 bytes,
    ``amq.default`` by name, an expiration that is no TTL) go to the dead queue with the reason at
    once, without being tried: tried on the relay's shared channel, the broker closed it under the
    valid messages beside them (which were then dead-lettered with the hostile one's error, or
    sent twice) and the hostile ones came back for ever."""
    topo = DelayTopology(prefix)
    dest = f"{prefix}.dest"
    await raw.queue_declare(dest)
    hostile: dict[str, dict[str, Any]] = {
        "default-by-name": {"x-mmate-delay-exchange": "amq.default"},
        "long-key": {"x-mmate-delay-exchange": "", "x-mmate-delay-routing-key": "k" * 256},
        "ttl-abc": {"x-mmate-delay-expiration": "abc"},
        "ttl-negative": {"x-mmate-delay-expiration": "-5"},
        "ttl-huge": {"x-mmate-delay-expiration": "9" * 300},
        "ttl-endless": {"x-mmate-delay-expiration": "9" * 5000},  # beyond int()'s digit limit
    }
    base = {"x-mmate-delay-exchange": "", "x-mmate-delay-routing-key": dest}
    try:
        async with mmate.Client(BROKER_URL, service="relay", delay_prefix=prefix) as client:
            await client.delays.ensure()
            for mid, headers in hostile.items():
                await raw.basic_publish(
                    b"{}",
                    routing_key=topo.ready,
                    properties=aiormq.spec.Basic.Properties(
                        message_id=mid, delivery_mode=2, headers={**base, **headers}
                    ),
                )
            for n in range(50):
                await raw.basic_publish(
                    json.dumps({"n": n}).encode(),
                    routing_key=topo.ready,
                    properties=aiormq.spec.Basic.Properties(
                        message_id=f"valid-{n}", delivery_mode=2, headers=base
                    ),
                )
            await client.run_delay_relay()
            await wait_for(lambda: client.delays.relayed >= 50, 10)
            await wait_for(lambda: client.delays.dead_lettered >= len(hostile), 5)
        dead: dict[str, str] = {}
        while (got := await raw.basic_get(topo.dead, no_ack=True)).delivery_tag is not None:
            reason = got.header.properties.headers[HEADER_FAILURE]
            dead[str(got.header.properties.message_id)] = (
                reason.decode() if isinstance(reason, bytes) else str(reason)
            )
        delivered: set[str] = set()
        while (got := await raw.basic_get(dest, no_ack=True)).delivery_tag is not None:
            delivered.add(str(got.header.properties.message_id))
        assert sorted(dead) == sorted(hostile), dead  # no valid message among them
        assert "255" in dead["long-key"] and "amq.default" in dead["default-by-name"]
        assert all(
            "TTL" in dead[mid] for mid in ("ttl-abc", "ttl-negative", "ttl-huge", "ttl-endless")
        )
        assert delivered == {f"valid-{n}" for n in range(50)}
        assert await count(raw, topo.ready) == 0
    finally:
        await raw.queue_delete(dest)
