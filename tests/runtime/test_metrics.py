"""Prometheus metrics counted from real messages on the broker: exact numbers of published,
consumed, failed, retried and dead-lettered messages by type and queue, publish failures by class,
the connection state and reconnects; and the missing-dependency behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, wait_until
from failure_app import AppFactory, failure_app
from mmate import MessageContext
from mmate._observation.metrics import PrometheusMetrics
from pamqp.commands import Basic
from prometheus_client import CollectorRegistry
from sample_app import CreateOrderCommand
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
