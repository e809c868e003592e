"""Declaring the topology on the broker: idempotent, precise 406 errors, passive verification."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import uuid

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL
from mmate import QueueDef, ServiceTopology
from sample_app import App, OrderCreatedEvent

pytestmark = pytest.mark.broker


async def test_declare_is_idempotent_and_creates_everything(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        await client.declare(app.order_service)
        await client.declare(app.order_service)
        await client.declare(app.banking_service)
    for queue in app.queues:
        await raw.queue_declare(queue, passive=True)
    for exchange in app.exchanges:
        await raw.exchange_declare(exchange, passive=True)


async def test_queue_with_other_arguments_raises_precondition_failed_and_client_stays_usable(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    await raw.queue_declare(app.order_queue, durable=True, arguments={"x-max-length": 5})
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        with pytest.raises(mmate.PreconditionFailed) as info:
            await client.declare(app.order_service)
        err = info.value
        assert err.entity == app.order_queue
        assert err.wanted["arguments"] == {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"{app.order_queue}.dlq",
        }
        assert "PRECONDITION_FAILED" in err.broker_reply
        assert app.order_queue in str(err) and "x-dead-letter-routing-key" in str(err)
        # the client is still usable: publishing goes through on its own channel
        await raw.exchange_declare(app.events, exchange_type="topic", durable=True)
        await raw.queue_bind(app.order_queue, app.events, routing_key="#")
        publisher = app.publisher(client)
        await publisher.publish_order_created_event(
            OrderCreatedEvent(order_id="o", customer_id="c", amount=1)
        )


async def test_exchange_with_other_type_raises_precondition_failed(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    await raw.exchange_declare(app.events, exchange_type="fanout", durable=True)
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        with pytest.raises(mmate.PreconditionFailed) as info:
            await client.declare(app.order_service)
    assert info.value.entity == app.events
    assert info.value.wanted["type"] == "topic"


async def test_passive_verifies_without_creating(app: App, raw: aiormq.abc.AbstractChannel) -> None:
    async with mmate.Client(BROKER_URL, service="order-service") as client:
        with pytest.raises(mmate.EntityNotFound) as info:
            await client.declare(app.order_service, passive=True)
        assert info.value.entity in app.exchanges + app.queues
        await client.declare(app.order_service)
        await client.declare(app.order_service, passive=True)


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def limited_user() -> tuple[str, str]:
    """A user that may read and write everything but configure nothing."""
    name, password = f"mmate-ro-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    try:
        _ctl("add_user", name, password)
        _ctl("set_permissions", "-p", "/", name, "^$", ".*", ".*")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"rabbitmqctl not usable: {exc}")
    yield name, password
    _ctl("delete_user", name)


async def test_passive_mode_works_without_configure_rights(
    app: App, limited_user: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name, password = limited_user
    async with mmate.Client(BROKER_URL, service="order-service") as admin:
        await admin.declare(app.order_service)
    limited_url = BROKER_URL.replace("guest:guest", f"{name}:{password}")
    async with mmate.Client(limited_url, service="order-service") as client:
        with pytest.raises(mmate.AccessRefused) as info:
            await client.declare(app.order_service)
        assert "passive=True" in str(info.value)
        assert password not in str(info.value)
        await client.declare(app.order_service, passive=True)
        publisher = app.publisher(client)
        await publisher.publish_order_created_event(
            OrderCreatedEvent(order_id="o", customer_id="c", amount=1)
        )
    assert password not in caplog.text  # not in any log line, at any level


async def test_exclusive_and_quorum_arguments(extra_entities: tuple[list[str], list[str]]) -> None:
    queues, _ = extra_entities
    name = f"t.{uuid.uuid4().hex[:8]}.quorum"
    queues.append(name)
    topo = ServiceTopology(
        name="q",
        exchanges=(),
        queues=(QueueDef(name, arguments={"x-queue-type": "quorum", "x-delivery-limit": 10}),),
        bindings=(),
        publishes={},
        consumes={},
        messages={},
    )
    async with mmate.Client(BROKER_URL, service="q") as client:
        await client.declare(topo)
        await client.declare(topo)
        await asyncio.sleep(0)
