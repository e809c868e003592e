"""Prometheus metrics counted from real messages on the broker: exact numbers of published,
consumed, failed, retried and dead-lettered messages by type and queue, publish failures by class,
the connection state and reconnects, consumer lag, sampled queue depth, open connections and
channels, process memory; and the missing-dependency behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, wait_until
from failure_app import AppFactory, failure_app
from mmate import MessageContext
from mmate._observation.metrics import PrometheusMetrics, message_age
from pamqp.commands import Basic
from prometheus_client import CollectorRegistry
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply
from test_recovery import _kill_connections

pytestmark = pytest.mark.broker
__all__ = ["failure_app"]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_counters_equal_what_happened_to_real_messages(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=3, tiers=(100, 200))
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)

    def behaviour(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if message.customer_id.startswith("perm"):
            raise mmate.PermanentError("unknown product")
        if message.customer_id.startswith("flaky") and n == 1:
            raise mmate.TransientError("database busy")

    customers = [f"ok-{i}" for i in range(20)]
    customers += [f"perm-{i}" for i in range(5)] + [f"flaky-{i}" for i in range(5)]
    async with mmate.Client(BROKER_URL, service="fail-service", interceptors=[metrics]) as client:
        await client.declare(app.topology)
        handlers = app.handlers(behaviour)
        serving = await client.serve(handlers)
        publisher = app.publisher(client)
        for c in customers:
            await publisher.send_create_order_command(CreateOrderCommand(customer_id=c, amount=1))
        await raw.basic_publish(b"{not json", routing_key=app.queue)
        unknown = json.dumps({"id": "u-1", "type": "Nobody", "payload": {}}).encode()
        await raw.basic_publish(unknown, routing_key=app.queue, properties=Basic.Properties())
        with pytest.raises(mmate.UnroutableError):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id="lost", amount=1), routing_key="nowhere"
            )
        consumer = serving.consumers[0]
        await wait_until(lambda: consumer.handled == 25 and consumer.dead_lettered == 7)
        await serving.stop()
        state = value(
            registry,
            "mmate_connection_state",
            service="fail-service",
            mmate_connection_state="connected",
        )
        assert state == 1.0

    kind = {"message_type": "CreateOrderCommand"}
    sent = {**kind, "exchange": app.exchange}
    assert value(registry, "mmate_messages_published_total", **sent) == 30
    assert value(registry, "mmate_publish_duration_seconds_count", **sent) == 31
    assert value(registry, "mmate_publish_failures_total", **sent, error="UnroutableError") == 1
    queue = {"queue": app.queue}
    # 20 handled + 5 dead-lettered + 5 retried and then handled, and two poison messages
    assert value(registry, "mmate_messages_consumed_total", **queue, **kind) == 35
    assert value(registry, "mmate_messages_consumed_total", **queue, message_type="unknown") == 2
    assert value(registry, "mmate_handler_duration_seconds_count", **queue, **kind) == 35
    errors = "mmate_handler_errors_total"
    assert value(registry, errors, **queue, **kind, error="PermanentError") == 5
    assert value(registry, errors, **queue, **kind, error="TransientError") == 5
    assert value(registry, "mmate_messages_retried_total", **queue, **kind) == 5
    dead = "mmate_messages_dead_lettered_total"
    assert value(registry, dead, **queue, **kind, reason="permanent-error") == 5
    assert value(registry, dead, **queue, message_type="unknown", reason="invalid-json") == 1
    assert value(registry, dead, **queue, message_type="unknown", reason="unknown-type") == 1
    assert value(registry, "mmate_messages_rejected_total", **queue, **kind) == 0
    assert len(handlers.calls) == 35
    closed = value(
        registry, "mmate_connection_state", service="fail-service", mmate_connection_state="closed"
    )
    assert closed == 1.0


async def test_connection_state_and_reconnects_follow_a_lost_connection(
    failure_app: AppFactory,
) -> None:
    app = failure_app()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    service = f"metrics-{app.queue.split('.')[1]}"
    states: list[str] = []
    async with mmate.Client(BROKER_URL, service=service, interceptors=[metrics]) as client:
        client.on_state(lambda event: states.append(event.state))
        await client.declare(app.topology)
        assert value(registry, "mmate_reconnects_total", service=service) == 0
        assert _kill_connections(service) == 1
        await wait_until(lambda: "recovered" in states, timeout=30)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="after", amount=1)
        )
        assert value(registry, "mmate_reconnects_total", service=service) == 1
        recovered = value(
            registry, "mmate_connection_state", service=service, mmate_connection_state="recovered"
        )
        assert recovered == 1.0
    assert (
        value(
            registry,
            "mmate_messages_published_total",
            message_type="CreateOrderCommand",
            exchange=app.exchange,
        )
        == 1
    )


def test_two_instances_cannot_share_a_registry() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry)


def test_without_prometheus_client_it_raises_feature_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(mmate.FeatureNotAvailable, match=r"pip install 'mmate\[metrics\]'"):
        PrometheusMetrics()


def test_import_mmate_imports_neither_prometheus_nor_opentelemetry() -> None:
    code = (
        "import sys, mmate, mmate.metrics, mmate.tracing\n"
        "optional = ('prometheus_client', 'opentelemetry')\n"
        "loaded = [m for m in sys.modules if m.startswith(optional)]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_lag_depth_connections_channels_and_memory_from_a_real_queue(app: App) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, depth_interval=0.1)
    release = asyncio.Event()

    class Handlers(app.handlers):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            self.handled = 0

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            await release.wait()
            self.handled += 1

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            return OrderReply(order_id=message.order_id)

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            return None

    service = f"metrics-depth-{app.suffix}"
    queue = {"queue": app.order_queue}
    depth = "mmate_queue_depth"
    async with mmate.Client(
        BROKER_URL, service=service, interceptors=[metrics], publish_connections=2
    ) as client:
        await client.declare(app.order_service)
        assert value(registry, "mmate_connections_open", service=service) == 2
        publisher = app.publisher(client)
        for n in range(20):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{n}", amount=1)
            )
        before = value(registry, "mmate_channels_open", service=service)
        serving = await client.serve(Handlers(), queues=[app.order_queue], prefetch=1)
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert f"mmate:metrics:depth:{service}" in names
        handlers = serving.consumers[0]
        # one message is with the blocked handler, 19 wait in the queue
        await wait_until(lambda: registry.get_sample_value(depth, queue) == 19)
        assert value(registry, "mmate_channels_open", service=service) > before
        await asyncio.sleep(0.3)  # the messages age in the queue
        release.set()
        await wait_until(lambda: handlers.handled == 20)
        await wait_until(lambda: registry.get_sample_value(depth, queue) == 0)
        await serving.stop()
        lag = {**queue, "message_type": "CreateOrderCommand"}
        assert value(registry, "mmate_consumer_lag_seconds_count", **lag) == 20
        # the last one waited behind the others at least the 0.3 s sleep
        assert value(registry, "mmate_consumer_lag_seconds_bucket", **lag, le="0.1") < 20
        assert value(registry, "mmate_consumer_lag_seconds_sum", **lag) >= 0.3
        if os.path.exists("/proc/self/statm"):
            rss = value(registry, "mmate_process_resident_memory_bytes")
            assert 10e6 < rss < 10e9
    assert value(registry, "mmate_connections_open", service=service) == 0
    assert value(registry, "mmate_channels_open", service=service) == 0
    await asyncio.sleep(0)  # the cancelled sampler finishes
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert f"mmate:metrics:depth:{service}" not in names  # the sampler stopped with the client


def test_lag_from_untrusted_timestamps_is_clamped() -> None:
    now = datetime.now(UTC)
    assert message_age(now + timedelta(days=365), 3600.0) == 0.0  # from the future
    assert message_age(datetime(1990, 1, 1, tzinfo=UTC), 3600.0) == 3600.0  # absurdly old
    naive = (now - timedelta(seconds=10)).replace(tzinfo=None)  # naive: taken as UTC
    age = message_age(naive, 3600.0)
    assert age is not None and 9.0 < age < 60.0
    assert message_age(None, 3600.0) is None
    with pytest.raises(ValueError, match="positive"):
        PrometheusMetrics(CollectorRegistry(), depth_interval=0)
