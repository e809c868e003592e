"""Inspecting and replaying dead letters on the broker. A dead-letter queue is filled with messages
stamped by the runtime's own headers and with messages the broker dead-lettered itself (a reject,
an expired TTL); listing leaves every one in place and in order; replay moves exactly the
selected ones, byte for byte, and counts add up on both queues."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiormq
import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, _cleanup, message_count, wait_until
from failure_app import AppFactory, failure_app
from mmate import MessageContext, dlq
from mmate._failures.deadletter import dead_letter_headers
from pamqp.commands import Basic
from sample_app import CreateOrderCommand

pytestmark = pytest.mark.broker
__all__ = ["failure_app"]  # a fixture, imported for pytest


@dataclass
class Letters:
    """An origin queue, a TTL-0 origin queue, and their shared dead-letter queue."""

    origin: str
    expiring: str
    dlq: str
    ids: list[str]
    """Message ids in dead-letter order."""
    bodies: dict[str, bytes]

    @property
    def queues(self) -> list[str]:
        return [self.origin, self.expiring, self.dlq]


def body_of(message_id: str, n: int) -> bytes:
    envelope = {
        "id": message_id,
        "type": "CreateOrderCommand",
        "timestamp": "2026-11-28T17:34:07Z",
        "headers": {"x-message-type": "CreateOrderCommand"},
        "payload": {"customerId": f"C-{n}", "amount": n, "note": "ü"},
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def props(message_id: str, headers: dict[str, Any] | None = None) -> Basic.Properties:
    return Basic.Properties(
        message_id=message_id,
        message_type="CreateOrderCommand",
        content_type="application/json",
        correlation_id=f"corr-{message_id}",
        delivery_mode=2,
        headers={"x-message-type": "CreateOrderCommand", **(headers or {})},
    )


async def declare(channel: aiormq.abc.AbstractChannel, letters: Letters, dlq_type: str) -> None:
    dl = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": letters.dlq}
    await channel.queue_declare(
        letters.dlq,
        durable=True,
        arguments={"x-queue-type": dlq_type} if dlq_type == "quorum" else None,
    )
    await channel.queue_declare(letters.origin, durable=True, arguments=dl)
    await channel.queue_declare(
        letters.expiring, durable=True, arguments={**dl, "x-message-ttl": 0}
    )


async def fill(
    raw: aiormq.abc.AbstractChannel, letters: Letters, confirmed: aiormq.abc.AbstractChannel
) -> None:
    """Nine dead letters, in this order: ours, rejected, ours, expired, ours, rejected, expired,
    ours, ours. Each is in the DLQ before the next one is made."""
    plan = ["mmate", "rejected", "mmate", "expired", "mmate", "rejected", "expired", "mmate"]
    plan.append("mmate")
    for n, kind in enumerate(plan):
        message_id = f"{kind}-{n}-{uuid.uuid4().hex[:6]}"
        body = body_of(message_id, n)
        if kind == "mmate":
            headers = dead_letter_headers(
                {"x-message-type": "CreateOrderCommand"},
                reason="retries-exhausted" if n % 2 else "permanent-error",
                error=ConnectionError(f"payment service down ({n})"),
                handler="OrderHandlers.handle_create_order_command",
                attempts=3,
                now=datetime(2026, 11, 28, 10, n, tzinfo=UTC),
                exchange="mmate.commands",
                routing_key="cmd.order-service.CreateOrderCommand",
                queue=letters.origin,
            )
            await confirmed.basic_publish(
                body, routing_key=letters.dlq, properties=props(message_id, headers)
            )
        elif kind == "rejected":
            await confirmed.basic_publish(
                body, routing_key=letters.origin, properties=props(message_id)
            )
            got = await raw.basic_get(letters.origin, no_ack=False)
            assert got.header.properties.message_id == message_id
            assert got.delivery_tag is not None
            await raw.basic_nack(got.delivery_tag, requeue=False)
        else:
            await confirmed.basic_publish(
                body, routing_key=letters.expiring, properties=props(message_id)
            )
        letters.ids.append(message_id)
        letters.bodies[message_id] = body
        await until_count(confirmed, letters.dlq, len(letters.ids))


async def until_count(channel: aiormq.abc.AbstractChannel, queue: str, wanted: int) -> None:
    """Wait until ``queue`` holds ``wanted`` messages (the broker dead-letters asynchronously),
    then check it holds exactly that many."""
    for _ in range(2000):
        count = await message_count(channel, queue)
        if count >= wanted:
            break
        await asyncio.sleep(0.005)
    assert await message_count(channel, queue) == wanted


async def read_all(
    channel: aiormq.abc.AbstractChannel, queue: str
) -> list[aiormq.abc.DeliveredMessage]:
    """Take every message out of ``queue`` (acked), in order."""
    out = []
    while True:
        msg = await channel.basic_get(queue, no_ack=True)
        if isinstance(msg.delivery, Basic.GetEmpty):
            return out
        out.append(msg)


def ids_of(messages: list[aiormq.abc.DeliveredMessage]) -> list[str]:
    return [str(m.header.properties.message_id) for m in messages]


@pytest.fixture
async def broker() -> AsyncIterator[tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel]]:
    """A channel without and one with confirms, on one connection of the test's own."""
    conn = await aiormq.connect(BROKER_URL)
    try:
        yield await conn.channel(publisher_confirms=False), await conn.channel()
    finally:
        await conn.close()


async def make_letters(
    broker: tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel], dlq_type: str
) -> Letters:
    s = uuid.uuid4().hex[:10]
    letters = Letters(f"t.{s}.orders", f"t.{s}.expiring", f"t.{s}.orders.dlq", [], {})
    raw, confirmed = broker
    await declare(confirmed, letters, dlq_type)
    await fill(raw, letters, confirmed)
    return letters


@pytest.fixture(params=["classic", "quorum"])
async def letters(
    broker: tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Letters]:
    """The nine dead letters, in a classic and in a quorum dead-letter queue."""
    made = await make_letters(broker, request.param)
    yield made
    await _cleanup(made.queues, [])


@pytest.mark.parametrize("dlq_type", ["classic", "quorum"])
async def test_listing_shows_every_reason_and_leaves_the_queue_as_it_was(
    broker: tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel], dlq_type: str
) -> None:
    letters = await make_letters(broker, dlq_type)
    try:
        raw, _ = broker
        listed = await dlq.list_dead_letters(BROKER_URL, letters.dlq, limit=None)
        assert [d.message_id for d in listed] == letters.ids
        assert [d.position for d in listed] == list(range(9))
        again = await dlq.list_dead_letters(BROKER_URL, letters.dlq, limit=4)
        assert [d.message_id for d in again] == letters.ids[:4]
        assert await dlq.count_dead_letters(BROKER_URL, letters.dlq) == 9

        by_kind: dict[str, list[dlq.DeadLetter]] = {}
        for d in listed:
            by_kind.setdefault(d.message_id.split("-")[0], []).append(d)
        ours, rejected, expired = by_kind["mmate"], by_kind["rejected"], by_kind["expired"]
        assert len(ours) == 5 and len(rejected) == 2 and len(expired) == 2
        for d in ours:
            assert d.source == "mmate"
            assert d.reason in ("retries-exhausted", "permanent-error")
            assert d.error_class == "ConnectionError"
            assert d.error_message is not None and "payment service down" in d.error_message
            assert d.handler == "OrderHandlers.handle_create_order_command"
            assert d.attempts == 3
            assert (d.original_queue, d.original_exchange) == (letters.origin, "mmate.commands")
            assert d.original_routing_key == "cmd.order-service.CreateOrderCommand"
            assert d.first_failure is not None and d.first_failure.startswith("2026-11-28T10:")
            assert d.type == "CreateOrderCommand"
        for d in rejected:
            assert (d.source, d.reason, d.attempts) == ("broker", "rejected", 1)
            assert (d.original_queue, d.original_exchange) == (letters.origin, "")
            assert d.original_routing_key == letters.origin
            assert d.error_class is None and d.last_failure is not None
        for d in expired:
            assert (d.source, d.reason, d.original_queue) == ("broker", "expired", letters.expiring)
        for d in listed:
            assert d.size == len(letters.bodies[d.message_id])
            assert d.body == letters.bodies[d.message_id]
            assert d.correlation_id == f"corr-{d.message_id}"
            json.dumps(d.to_json())  # serializable

        # Nothing lost, nothing reordered: the queue holds the nine in their order.
        remaining = await read_all(raw, letters.dlq)
        assert ids_of(remaining) == letters.ids
        assert [m.body for m in remaining] == [letters.bodies[i] for i in letters.ids]
    finally:
        await _cleanup(letters.queues, [])


async def test_replay_by_id_moves_exactly_those_byte_for_byte(
    letters: Letters,
    broker: tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel],
) -> None:
    raw, confirmed = broker
    ours = [i for i in letters.ids if i.startswith("mmate")]
    rejected = [i for i in letters.ids if i.startswith("rejected")]
    chosen = {ours[1], ours[3], rejected[0]}
    async with mmate.Client(BROKER_URL, service="dlq-test") as client:
        result = await dlq.replay(client, letters.dlq, message_ids=chosen | {"not-there"})
    assert result.moved_count == 3 and result.examined == 9
    assert [m.message_id for m in result.moved] == [i for i in letters.ids if i in chosen]
    assert all(m.to == letters.origin for m in result.moved)
    assert result.skipped == [] and result.not_found == ["not-there"]
    # A quorum queue's message count in declare-ok may lag the confirm by a moment.
    await until_count(confirmed, letters.origin, 3)
    assert await message_count(confirmed, letters.dlq) == 6

    moved = await read_all(raw, letters.origin)
    assert ids_of(moved) == [i for i in letters.ids if i in chosen]
    for m in moved:
        message_id = str(m.header.properties.message_id)
        assert m.body == letters.bodies[message_id]
        headers = m.header.properties.headers or {}
        assert not [h for h in headers if h.startswith("x-death") or "-death-" in h]
        kept = {"x-mmate-replays", "x-mmate-original-exchange", "x-mmate-original-routing-key"}
        assert {h for h in headers if h.startswith("x-mmate-")} <= kept
        assert headers["x-mmate-replays"] == 1
        assert headers["x-message-type"] == "CreateOrderCommand"
        assert m.header.properties.correlation_id == f"corr-{message_id}"
        assert m.header.properties.delivery_mode == 2
    original = [m for m in moved if m.header.properties.message_id in ours]
    assert all(
        (m.header.properties.headers or {})["x-mmate-original-exchange"] == "mmate.commands"
        for m in original
    )
    # The others stay, in their order.
    assert ids_of(await read_all(raw, letters.dlq)) == [i for i in letters.ids if i not in chosen]


async def test_replay_all_moves_the_rest_and_a_message_that_dies_again_is_not_replayed_twice(
    letters: Letters,
    broker: tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel],
) -> None:
    raw, confirmed = broker
    first = await dlq.replay(BROKER_URL, letters.dlq, message_ids={letters.ids[0]})
    assert first.moved_count == 1
    result = await dlq.replay(BROKER_URL, letters.dlq)
    assert result.examined == 8 and result.moved_count == 8 and result.skipped == []
    expired = [i for i in letters.ids if i.startswith("expired")]
    assert {m.to for m in result.moved} == {letters.origin, letters.expiring}
    # The two expired ones went back to their TTL-0 queue and dead-lettered again at once: they
    # are in the DLQ once more (after the run), the other seven are in the origin queue.
    await until_count(confirmed, letters.origin, 7)
    await until_count(confirmed, letters.dlq, 2)
    assert sorted(ids_of(await read_all(raw, letters.dlq))) == sorted(expired)


async def test_messages_that_cannot_be_moved_stay_with_the_reason(
    broker: tuple[aiormq.abc.AbstractChannel, aiormq.abc.AbstractChannel],
    extra_entities: tuple[list[str], list[str]],
) -> None:
    raw, confirmed = broker
    s = uuid.uuid4().hex[:10]
    dead, target = f"t.{s}.dlq", f"t.{s}.target"
    extra_entities[0].extend([dead, target])
    await confirmed.queue_declare(dead, durable=True)
    await confirmed.queue_declare(target, durable=True)
    nowhere = dead_letter_headers(
        None,
        reason="permanent-error",
        error=ValueError("bad"),
        handler="H.m",
        attempts=1,
        now=datetime.now(UTC),
        exchange="",
        routing_key=f"t.{s}.gone",
        queue=f"t.{s}.gone",
    )
    await confirmed.basic_publish(b"no origin", routing_key=dead, properties=props("plain"))
    await confirmed.basic_publish(b"{}", routing_key=dead, properties=props("gone", nowhere))

    result = await dlq.replay(BROKER_URL, dead)
    assert result.moved_count == 0 and result.examined == 2 and not result.complete
    assert [(k.message_id, k.position) for k in result.skipped] == [("plain", 0), ("gone", 1)]
    assert "origin queue is unknown" in result.skipped[0].reason
    assert f"queue 't.{s}.gone' does not exist" in result.skipped[1].reason
    assert await message_count(confirmed, dead) == 2
    # A target that nacks (full, reject-publish): nothing is acked without a positive confirm.
    full = f"t.{s}.full"
    extra_entities[0].append(full)
    await confirmed.queue_declare(
        full, durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    # (A nack is tried again until the timeout runs out: the queue may drain meanwhile.)
    nacked = await dlq.replay(BROKER_URL, dead, to=full, timeout=1)
    assert nacked.moved_count == 0 and len(nacked.skipped) == 2
    assert all("nacked" in k.reason for k in nacked.skipped)
    assert await message_count(confirmed, dead) == 2
    # With an explicit target both move, in order.
    moved = await dlq.replay(BROKER_URL, dead, to=target)
    assert moved.moved_count == 2 and moved.complete
    assert await message_count(confirmed, dead) == 0
    assert ids_of(await read_all(raw, target)) == ["plain", "gone"]


async def test_a_missing_queue_is_a_clear_error() -> None:
    name = f"t.{uuid.uuid4().hex[:10]}.nope"
    with pytest.raises(mmate.EntityNotFound, match=f"queue '{name}' does not exist"):
        await dlq.list_dead_letters(BROKER_URL, name)
    with pytest.raises(mmate.EntityNotFound):
        await dlq.replay(BROKER_URL, name)
    with pytest.raises(TypeError, match="not one string"):
        await dlq.replay(BROKER_URL, name, message_ids="6f1c2c9e")


async def test_a_runtime_dead_letter_is_replayed_and_handled_as_a_first_attempt(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=2, tiers=(100,))
    fixed = False

    def until_fixed(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if not fixed:
            raise mmate.PermanentError(f"customer {message.customer_id} unknown")

    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(until_fixed)
        serving = await client.serve(handlers)
        publisher = app.publisher(client)
        for n in range(5):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{n}", amount=n)
            )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 5)
        [letter, *_] = listed = await dlq.list_dead_letters(client, app.dlq)
        assert len(listed) == 5
        assert (letter.reason, letter.error_class) == ("permanent-error", "PermanentError")
        assert letter.error_message == "customer c-0 unknown"
        assert letter.original_queue == app.queue and letter.attempts == 1
        assert letter.handler is not None and letter.handler.endswith("handle_create_order_command")

        fixed = True
        result = await dlq.replay(client, app.dlq)
        assert result.moved_count == 5
        await wait_until(lambda: len(handlers.handled) == 5)
        await serving.stop()
    assert [c.attempt for c in handlers.calls[5:]] == [1, 1, 1, 1, 1]
    assert sorted(c.customer_id for c in handlers.calls[5:]) == [f"c-{n}" for n in range(5)]
    assert await message_count(raw, app.dlq) == 0 and await message_count(raw, app.queue) == 0


async def test_a_retried_then_exhausted_message_is_listed_by_our_headers_not_its_x_death(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=2, tiers=(100,))
    healthy = False

    def down(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if not healthy:
            raise ConnectionError(f"payment down ({ctx.attempt})")

    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(down)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
        [letter] = await dlq.list_dead_letters(client, app.dlq)
        # It waited in the wait queue once (the broker's x-death says "expired" there), but our
        # headers say why it is in the DLQ and where it belongs.
        assert [str(d["reason"]) for d in letter.headers["x-death"]] == ["expired"]
        assert (letter.source, letter.reason, letter.attempts) == ("mmate", "retries-exhausted", 2)
        assert letter.original_queue == app.queue
        assert letter.error_message == "payment down (2)"

        healthy = True
        assert (await dlq.replay(client, app.dlq)).moved_count == 1
        await wait_until(lambda: len(handlers.handled) == 1)
        await serving.stop()
    assert [c.attempt for c in handlers.calls] == [1, 2, 1]  # the replay starts at attempt 1
    assert "x-death" not in handlers.calls[-1].headers
    assert handlers.calls[-1].headers["x-mmate-replays"] == 1
    assert await message_count(raw, app.dlq) == 0
