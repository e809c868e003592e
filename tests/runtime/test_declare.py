"""Declaring the topology on the broker: idempotent, precise 406 errors, passive verification."""

from __future__ import annotations

import logging
import subprocess
import uuid

import aiormq
import aiormq.abc
import aiormq.exceptions
import mmate
import pytest
from conftest import BROKER_URL
from mmate import HandlerRoute, QueueDef, ServiceTopology
from sample_app import App, OrderCreatedEvent, make_app

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


async def test_exclusive_and_quorum_arguments(
    extra_entities: tuple[list[str], list[str]], raw: aiormq.abc.AbstractChannel
) -> None:
    queues, _ = extra_entities
    tag = uuid.uuid4().hex[:8]
    quorum, exclusive = f"t.{tag}.quorum", f"t.{tag}.exclusive"
    queues.extend([quorum, exclusive])
    topo = ServiceTopology(
        name="q",
        exchanges=(),
        queues=(
            QueueDef(quorum, arguments={"x-queue-type": "quorum", "x-delivery-limit": 10}),
            QueueDef(exclusive, durable=False, exclusive=True),
        ),
        bindings=(),
        publishes={},
        consumes={},
        messages={},
    )
    async with mmate.Client(BROKER_URL, service="q") as client:
        await client.declare(topo)
        await client.declare(topo)  # idempotent, exclusive queue included (same connection)
        # The broker holds a quorum queue with that delivery limit: another type or another
        # limit is refused with 406, naming the argument.
        others = [
            ({"x-queue-type": "classic"}, "x-queue-type"),
            ({"x-queue-type": "quorum", "x-delivery-limit": 3}, "x-delivery-limit"),
        ]
        for other, argument in others:
            conn = await aiormq.connect(BROKER_URL)
            try:
                channel = await conn.channel()
                with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as refused:
                    await channel.queue_declare(quorum, durable=True, arguments=other)
                assert argument in str(refused.value)
            finally:
                await conn.close()
        # The exclusive queue belongs to this client's connection: another connection cannot
        # even look at it.
        with pytest.raises(aiormq.exceptions.ChannelLockedResource):
            await raw.queue_declare(exclusive, passive=True)
    # ...and it went with the connection that declared it.
    conn = await aiormq.connect(BROKER_URL)
    try:
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await (await conn.channel()).queue_declare(exclusive, passive=True)
    finally:
        await conn.close()


async def test_an_exclusive_queue_of_another_connection_is_resource_locked(
    extra_entities: tuple[list[str], list[str]],
) -> None:
    queues, exchanges = extra_entities
    name = f"t.{uuid.uuid4().hex[:8]}.exclusive"
    queues.append(name)
    app = make_app()
    queues.extend(app.queues)
    exchanges.extend(app.exchanges)
    message = app.order_service.messages["OrderCreatedEvent"]
    topo = ServiceTopology(
        name="owner",
        exchanges=(),
        queues=(QueueDef(name, durable=False, exclusive=True),),
        bindings=(),
        publishes={},
        consumes={name: {"OrderCreatedEvent": HandlerRoute(message, "handle_order_created_event")}},
        messages={"OrderCreatedEvent": message},
    )

    class Handlers(mmate.HandlerBase):
        TOPOLOGY = topo

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: mmate.MessageContext
        ) -> None:
            return None

    async with mmate.Client(BROKER_URL, service="owner") as owner:
        await owner.declare(topo)
        serving = await owner.serve(Handlers())
        async with mmate.Client(BROKER_URL, service="intruder") as intruder:
            with pytest.raises(mmate.ResourceLocked) as declared:
                await intruder.declare(topo)
            with pytest.raises(mmate.ResourceLocked) as consumed:
                await intruder.serve(Handlers())
            assert intruder.servings == []
            await intruder.declare(app.order_service)  # the intruder's client still works
        for error in (declared.value, consumed.value):
            assert name in str(error), str(error)
            assert "405" in str(error) and "RESOURCE_LOCKED" in error.broker_reply, str(error)
        assert serving.consumers[0].consuming  # the owner kept its queue and its consumer
        await serving.stop()
