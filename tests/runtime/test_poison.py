"""Poison messages, each published as raw bytes straight to the queue: dead-lettered with the
reason, body byte-identical, never handed to a handler, never retried or requeued, and the consumer
keeps handling good messages."""

from __future__ import annotations

import json

import mmate
from conftest import message_count, wait_until
from failure_app import AppFactory, drain, failure_app
from mmate._transport.base import Channel, Properties
from sample_app import CreateOrderCommand

__all__ = ["failure_app"]

LIMIT = 400


def _envelope(**fields: object) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


GOOD_PAYLOAD = {"customerId": "C-1", "amount": "1.5"}
POISON: dict[str, bytes] = {
    "invalid-json": b'{"id":"p1","type":"CreateOrderCommand","payload":',
    "not-utf8": b'{"id":"p2","type":"CreateOrderCommand","payload":{"customerId":"\xff\xfe"}}',
    "not-an-envelope": b'[{"type":"CreateOrderCommand"}]',
    "no-type": _envelope(id="p4", payload=GOOD_PAYLOAD),
    "unknown-type": _envelope(id="p5", type="RefundIssuedEvent", payload={}),
    "validation-failed": _envelope(id="p6", type="CreateOrderCommand", payload={"customerId": ""}),
    "oversized": _envelope(
        id="p7", type="CreateOrderCommand", payload={**GOOD_PAYLOAD, "note": "x" * LIMIT}
    ),
}


async def test_each_poison_kind_is_dead_lettered_with_its_reason_and_never_reaches_a_handler(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=3, tiers=(100,), immediate=2, max_message_bytes=LIMIT)
    utf16 = _envelope(id="p8", type="CreateOrderCommand", payload=GOOD_PAYLOAD)
    poison = {**POISON, "not-utf8 (utf-16)": utf16.decode().encode("utf-16")}
    assert len(POISON["oversized"]) > LIMIT
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        for kind, body in poison.items():
            props = Properties(message_id=f"poison {kind}", delivery_mode=2)
            await probe.publish(body, props, exchange="", routing_key=app.queue)
        good = CreateOrderCommand(customer_id="after the poison", amount=1)
        await app.publisher(client).send_create_order_command(good)
        consumer = serving.consumers[0]
        await wait_until(lambda: consumer.dead_lettered == len(poison) and consumer.handled == 1)
        await serving.stop()
    assert [c.customer_id for c in handlers.calls] == ["after the poison"]
    assert consumer.failed == len(poison) and consumer.retried == 0
    assert consumer.immediate_retries == 0 and consumer.rejected == 0
    dead = await drain(probe, app.dlq)
    by_id = {d.properties.message_id: d for d in dead}
    assert len(dead) == len(poison) == len(by_id)
    for kind, body in poison.items():
        message = by_id[f"poison {kind}"]
        assert message.body == body, kind
        headers = message.properties.headers
        assert headers["x-mmate-dead-letter-reason"] == kind.split(" ")[0], kind
        assert headers["x-mmate-error-class"] == "DecodeError"
        assert headers["x-mmate-handler"] == ""
        assert headers["x-mmate-attempts"] == 1
        assert headers["x-mmate-original-queue"] == app.queue
    reasons = {k: by_id[f"poison {k}"].properties.headers for k in poison}
    assert "exceeds the limit of 400 bytes" in reasons["oversized"]["x-mmate-error-message"]
    assert "not UTF-8" in reasons["not-utf8"]["x-mmate-error-message"]
    assert "RefundIssuedEvent" in reasons["unknown-type"]["x-mmate-error-message"]
    assert "customerId" in reasons["validation-failed"]["x-mmate-error-message"]
    assert await message_count(probe, app.queue) == 0
    assert await message_count(probe, app.wait_queues[100]) == 0


async def test_a_poison_message_without_a_dead_letter_route_is_rejected_not_looped(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    """A queue with ``dead_letter: false``: the broker discards what is rejected (the spec was
    warned about it); the consumer must not requeue it forever nor stop."""
    app = failure_app(retry=False)
    main = app.topology.queues[0]
    bare = mmate.QueueDef(main.name)
    app.topology = app.topology.__class__(
        name=app.topology.name,
        exchanges=app.topology.exchanges,
        queues=(bare,),
        bindings=app.topology.bindings,
        publishes=app.topology.publishes,
        consumes=app.topology.consumes,
        messages=app.topology.messages,
    )
    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        await probe.publish(
            POISON["invalid-json"], Properties(), exchange="", routing_key=app.queue
        )
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="ok", amount=1)
        )
        consumer = serving.consumers[0]
        await wait_until(lambda: consumer.rejected == 1 and consumer.handled == 1)
        await serving.stop()
    assert consumer.failed == 1
    assert await message_count(probe, app.queue) == 0
