"""What a received message carries never makes the copies the runtime publishes of it (retries,
dead letters) multiply or vanish: on RabbitMQ and on the in-memory broker, every message sent in
ends handled or once in the dead-letter queue, counted at the broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import mmate
import pytest
from conftest import message_count, wait_until
from delay_support import prefix_fixture
from failure_app import AppFactory, FailureApp, drain, failure_app
from mmate._transport.base import Channel, Properties
from mmate._wire.headers import DROPPED
from sample_app import CreateOrderCommand

__all__ = ["failure_app", "prefix_fixture"]  # fixtures, imported for pytest


def _envelope(mid: str) -> bytes:
    return (
        f'{{"id":"{mid}","type":"CreateOrderCommand","headers":{{}},'
        '"payload":{"customerId":"c","amount":"1"}}'
    ).encode()


def _fail(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
    if ctx.message_id.startswith("permanent"):
        raise mmate.PermanentError("refused")
    if ctx.message_id.startswith("transient") and ctx.attempt == 1:
        raise mmate.TransientError("not yet")


async def _settled(probe: Channel, app: FailureApp) -> None:
    for q in [app.queue, *app.wait_queues.values()]:
        assert await message_count(probe, q) == 0, q


async def test_a_cc_header_naming_the_origin_queue_never_multiplies_the_copies(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    """RabbitMQ delivers a ``CC`` header; a copy published with it would also be routed to the
    queues it names, the origin queue among them, for ever (a dead letter, a retry)."""
    app = failure_app(attempts=3, tiers=(50,))
    cases = {
        "poison": b"not json",
        "permanent": _envelope("permanent"),
        "transient": _envelope("transient"),
    }
    async with mmate.Client(url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers(_fail)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        for mid, body in cases.items():
            props = Properties(message_id=mid, delivery_mode=2, headers={"CC": [app.queue]})
            await probe.publish(body, props, exchange="", routing_key=app.queue)
        await wait_until(lambda: consumer.dead_lettered == 2 and consumer.handled == 1)
        await asyncio.sleep(0.5)  # a looping copy would show up in the counts meanwhile
        await serving.stop()
    assert (consumer.dead_lettered, consumer.handled, consumer.retried) == (2, 1, 1)
    assert sorted(c.attempt for c in handlers.calls) == [1, 1, 2]
    dead = await drain(probe, app.dlq)
    assert sorted(str(d.properties.message_id) for d in dead) == ["permanent", "poison"]
    for message in dead:
        headers: dict[str, Any] = dict(message.properties.headers or {})
        assert "CC" not in headers and "CC" in headers[DROPPED]
    await _settled(probe, app)


@pytest.mark.parametrize("reason", ["expired", "maxlen"])
async def test_a_message_that_expired_from_its_queue_before_is_retried_not_dropped(
    url: str, failure_app: AppFactory, probe: Channel, reason: str
) -> None:
    """A message replayed into its queue after it had expired (or overflowed) there carries an
    ``x-death`` entry for that queue; RabbitMQ drops a dead letter whose way back to a queue
    shows no rejection as a cycle, so a retry that kept the entry would vanish in the wait
    queue."""
    app = failure_app(attempts=3, tiers=(50,))
    death = {
        "count": 1,
        "reason": reason,
        "queue": app.queue,
        "time": datetime.now(UTC).replace(microsecond=0),
        "exchange": "",
        "routing-keys": [app.queue],
    }
    async with mmate.Client(url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers(_fail)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        props = Properties(message_id="transient", delivery_mode=2, headers={"x-death": [death]})
        await probe.publish(_envelope("transient"), props, exchange="", routing_key=app.queue)
        await wait_until(lambda: consumer.handled == 1, timeout=10)
        await serving.stop()
    assert consumer.retried == 1 and [c.attempt for c in handlers.calls] == [1, 2]
    assert await message_count(probe, app.dlq) == 0
    await _settled(probe, app)
