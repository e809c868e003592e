"""Dead-letter queues on the broker: a permanent failure lands in the DLQ once, body byte-identical,
stamped with why; routes through a dead-letter exchange; a missing DLQ or wait queue is a startup
error; when the move fails the message is nacked (the broker's dead-lettering keeps it), never
acked."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import mmate
import pytest
from conftest import inject, message_count, wait_until
from failure_app import AppFactory, FailureApp, drain, failure_app
from mmate import ExchangeDef, MessageContext, QueueDef
from mmate._transport.base import Channel, Properties
from sample_app import CreateOrderCommand

__all__ = ["failure_app"]


def _invalid_order(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
    raise mmate.new_permanent_error(f"order of {message.customer_id} is invalid", KeyError("sku"))


async def test_permanent_failure_lands_in_the_dlq_once_stamped_with_the_body_byte_identical(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=3, tiers=(100, 200), immediate=2)
    body = (
        b'{"id":"c5090760-3f7e-45a6-a8bf-75a3ca89b21c","type":"CreateOrderCommand",'
        b'"timestamp":"2026-11-28T17:34:07Z","headers":{"x-source":"mmate-go"},'
        b'"payload":{"targetService":"","customerId":"C-1","amount":"12.50"}}'
    )
    sent = datetime(2026, 11, 28, 17, 34, 7, tzinfo=UTC)
    props = Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id="c5090760-3f7e-45a6-a8bf-75a3ca89b21c",
        correlation_id="corr-1",
        type="CreateOrderCommand",
        app_id="go-service",
        timestamp=sent,
        expiration="600000",
        headers={"x-message-type": "CreateOrderCommand", "x-source": "mmate-go"},
    )
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(_invalid_order)
        serving = await client.serve(handlers)
        await inject(
            probe,
            body,
            exchange=app.exchange,
            routing_key="cmd.fail.CreateOrderCommand",
            properties=props,
        )
        consumer = serving.consumers[0]
        await wait_until(lambda: consumer.dead_lettered == 1)
        await serving.stop()
    assert len(handlers.calls) == 1  # permanent: no immediate retry, no broker retry
    assert consumer.retried == 0 and consumer.rejected == 0
    dead = await drain(probe, app.dlq)
    assert len(dead) == 1
    assert dead[0].body == body
    p = dead[0].properties
    assert (p.message_id, p.correlation_id, p.type, p.app_id) == (
        "c5090760-3f7e-45a6-a8bf-75a3ca89b21c",
        "corr-1",
        "CreateOrderCommand",
        "go-service",
    )
    assert p.content_type == "application/json" and p.delivery_mode == 2
    assert p.timestamp is not None and p.timestamp.replace(tzinfo=UTC) == sent
    assert p.expiration is None  # it would expire in the DLQ and be dropped
    h = p.headers
    assert h["x-source"] == "mmate-go"  # the original headers stay
    assert h["x-mmate-dead-letter-reason"] == "permanent-error"
    assert h["x-mmate-error-class"] == "PermanentError"
    assert h["x-mmate-error-message"] == "order of C-1 is invalid"
    assert h["x-mmate-handler"] == "OrderHandlers.handle_create_order_command"
    assert h["x-mmate-attempts"] == 1
    assert h["x-mmate-original-exchange"] == app.exchange
    assert h["x-mmate-original-routing-key"] == "cmd.fail.CreateOrderCommand"
    assert h["x-mmate-original-queue"] == app.queue
    assert h["x-mmate-original-expiration"] == "600000"
    first = datetime.fromisoformat(h["x-mmate-first-failure"])
    last = datetime.fromisoformat(h["x-mmate-last-failure"])
    assert first == last and abs(datetime.now(UTC) - last) < timedelta(minutes=5)
    assert "x-death" not in h  # moved by the runtime, not rejected
    assert await message_count(probe, app.queue) == 0


async def test_dead_letter_after_retries_keeps_the_first_failure_and_the_original_route(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=2, tiers=(100,))

    def down(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise mmate.TransientError(f"down {n}")

    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(down)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
        await serving.stop()
    first_failure = handlers.calls[1].headers["x-mmate-first-failure"]
    (dead,) = await drain(probe, app.dlq)
    h = dead.properties.headers
    assert h["x-mmate-first-failure"] == first_failure
    assert h["x-mmate-first-failure"] < h["x-mmate-last-failure"]
    assert h["x-mmate-attempts"] == 2 and h["x-mmate-error-message"] == "down 2"
    # the delivery of attempt 2 came from the default exchange; the stamp keeps the original
    assert handlers.calls[1].headers["x-mmate-original-exchange"] == app.exchange
    assert h["x-mmate-original-exchange"] == app.exchange
    deaths = handlers.calls[1].headers["x-death"]  # the broker's record of the wait
    assert [(str(d["queue"]), str(d["reason"])) for d in deaths] == [
        (app.wait_queues[100], "expired")
    ]


async def test_a_dead_letter_exchange_route_is_used_as_the_broker_would(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(retry=False)
    dlx, parked = f"{app.queue}.dlx", f"{app.queue}.parked"
    app.extra_exchanges.append(dlx)
    app.extra_queues.append(parked)
    main = app.topology.queues[0]
    rerouted = QueueDef(
        main.name,
        arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "failed.orders"},
        dead_letter_queue=None,
    )
    topology = app.topology.__class__(
        name=app.topology.name,
        exchanges=(*app.topology.exchanges, ExchangeDef(dlx)),
        queues=(rerouted, QueueDef(parked)),
        bindings=(
            *app.topology.bindings,
            mmate.BindingDef(dlx, parked, "failed.*"),
        ),
        publishes=app.topology.publishes,
        consumes=app.topology.consumes,
        messages=app.topology.messages,
    )
    app.topology = topology
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(topology)
        handlers = app.handlers(_invalid_order)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
        await serving.stop()
    (dead,) = await drain(probe, parked)
    assert dead.properties.headers["x-mmate-dead-letter-reason"] == "permanent-error"
    assert dead.routing_key == "failed.orders" and dead.exchange == dlx


async def test_a_missing_dead_letter_queue_or_wait_queue_is_a_startup_error(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=2, tiers=(100,))
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        await probe.delete_queue(app.dlq)
        with pytest.raises(mmate.EntityNotFound) as err:
            await client.serve(app.handlers())
        assert app.queue in str(err.value) and app.dlq in str(err.value)
        assert err.value.entity == app.dlq
        await client.declare(app.topology)
        await probe.delete_queue(app.wait_queues[100])
        with pytest.raises(mmate.EntityNotFound, match="wait queue") as err:
            await client.serve(app.handlers())
        assert err.value.entity == app.wait_queues[100]
        await client.declare(app.topology)
        serving = await client.serve(app.handlers())  # all there again
        await serving.stop()


async def _unbound_route(app: FailureApp, probe: Channel) -> tuple[str, QueueDef]:
    """An exchange with no binding, and the app's queue as a process would see it if it believed
    its dead letters went there (the move is then unroutable, also after a redeclare)."""
    lonely = f"t.{uuid.uuid4().hex[:10]}.lonely"
    app.extra_exchanges.append(lonely)
    await probe.declare_exchange(lonely, type="topic", durable=True)
    believed = QueueDef(
        app.topology.queues[0].name,
        arguments={"x-dead-letter-exchange": lonely, "x-dead-letter-routing-key": "nowhere"},
    )
    return lonely, believed


async def test_when_the_move_fails_the_message_stays_in_its_queue_until_it_can_be_moved(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    """The runtime believes the DLQ is reached through an exchange that has no binding, and the
    topology declared again does not bind it either: the move is unroutable twice, so the message
    is requeued (never acked, never rejected into the broker's dead-lettering) and delivered again
    after a pause; once the route exists, it is moved with our headers."""
    app = failure_app(retry=False)
    lonely, believed = await _unbound_route(app, probe)
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)  # the broker's queue: DLX "" -> app.dlq
        handlers = app.handlers(_invalid_order)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        consumer._queue_def = believed  # what this process thinks the route is
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: consumer.requeued >= 2)
        assert consumer.dead_lettered == 0 and consumer.rejected == 0
        assert await message_count(probe, app.dlq) == 0
        await probe.bind_queue(app.dlq, lonely, routing_key="nowhere")  # the route is back
        await wait_until(lambda: consumer.dead_lettered == 1, timeout=15)
        await serving.stop()
    assert len(handlers.calls) == consumer.requeued + 1  # handled again after each requeue
    (dead,) = await drain(probe, app.dlq)
    assert json.loads(dead.body)["payload"]["customerId"] == "c"
    headers = dead.properties.headers
    assert headers["x-mmate-dead-letter-reason"] == "permanent-error"
    assert "x-death" not in headers
    assert await message_count(probe, app.queue) == 0


async def test_messages_waiting_after_a_failed_move_go_back_as_soon_as_another_move_succeeds(
    url: str, failure_app: AppFactory, probe: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three messages whose moves failed wait out their pause (here 60 s) before going back to
    their queue; once the route is back, the next message's move succeeds and the three are
    requeued at once, handled again and moved, instead of sitting out the rest of the pause."""
    from mmate._consuming import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "MIN_REQUEUE_PAUSE", 60.0)
    monkeypatch.setattr(consumer_module, "MAX_REQUEUE_PAUSE", 60.0)
    app = failure_app(retry=False, concurrency=5, prefetch=10)
    lonely, believed = await _unbound_route(app, probe)
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(_invalid_order)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        consumer._queue_def = believed
        publisher = app.publisher(client)
        for n in range(3):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c{n}", amount=1)
            )
        await wait_until(lambda: consumer.requeued == 3)
        await probe.bind_queue(app.dlq, lonely, routing_key="nowhere")  # the route is back
        await publisher.send_create_order_command(CreateOrderCommand(customer_id="c3", amount=1))
        await wait_until(lambda: consumer.dead_lettered == 4, timeout=20)
        await serving.stop()
    assert consumer.requeued == 3 and consumer.rejected == 0
    dead = await drain(probe, app.dlq)
    assert sorted(json.loads(d.body)["payload"]["customerId"] for d in dead) == [
        "c0",
        "c1",
        "c2",
        "c3",
    ]
    assert await message_count(probe, app.queue) == 0


async def test_a_failed_query_is_answered_only_when_it_is_dead_lettered(
    url: str,
    failure_app: AppFactory,
) -> None:
    """A query is retried silently; its requester gets the error reply once it is dead-lettered."""
    from sample_app import make_app

    sample = make_app()
    base = sample.order_service
    order_q = sample.order_queue
    app = failure_app(attempts=2, tiers=(100,))
    app.extra_queues.extend(sample.queues)
    app.extra_exchanges.extend(sample.exchanges)
    waits = {100: f"{order_q}.wait.100"}
    app.extra_queues.extend(waits.values())
    retry_q = QueueDef(
        order_q,
        arguments=dict(base.queues[0].arguments),
        retry=app.topology.queues[0].retry,
        dead_letter_queue=f"{order_q}.dlq",
        wait_queues=waits,
    )
    wait_q = QueueDef(
        waits[100],
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": order_q,
        },
        role="wait",
    )
    topology = base.__class__(
        name=base.name,
        exchanges=base.exchanges,
        queues=(retry_q, base.queues[1], wait_q),
        bindings=tuple(b for b in base.bindings if b.queue == order_q),
        publishes=base.publishes,
        consumes={order_q: base.consumes[order_q]},
        messages=base.messages,
    )
    calls: list[int] = []

    class Failing(sample.handlers):  # type: ignore[misc, valid-type, name-defined]
        TOPOLOGY = topology

        async def handle_create_order_command(self, message: object, ctx: MessageContext) -> None:
            return None

        async def handle_get_order_query(self, message: object, ctx: MessageContext) -> None:
            calls.append(ctx.attempt)
            raise mmate.TransientError("orders database down")

        async def handle_order_created_event(self, message: object, ctx: MessageContext) -> None:
            return None

    from sample_app import GetOrderQuery

    async with mmate.Client(url, service="order-service") as client:
        await client.declare(topology)
        serving = await client.serve(Failing())
        with pytest.raises(mmate.RemoteError, match="orders database down"):
            await sample.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="o-1"), timeout=10
            )
        await serving.stop()
    assert calls == [1, 2]
    assert serving.consumers[0].dead_lettered == 1


async def test_auto_ack_queues_still_move_failures_to_the_dlq(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=2, tiers=(100,))
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(_invalid_order)
        serving = await client.serve(handlers, auto_ack=True)
        for i in range(5):
            await app.publisher(client).send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{i}", amount=i)
            )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 5)
        await serving.stop()
    dead = await drain(probe, app.dlq)
    assert len(dead) == 5
    assert {d.properties.headers["x-mmate-dead-letter-reason"] for d in dead} == {"permanent-error"}
