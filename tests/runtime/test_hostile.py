"""Hostile input on the wire and in the broker, on the real broker: whatever a producer sends and
whatever an operator deletes, every delivery ends settled (handled, dead-lettered with a reason, or
back in its queue), the consumer keeps its slots and its connection, and nothing is lost.

The in-process fuzzing of the same decode-and-settle path is in ``test_hostile_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from typing import Any

import aiormq
import aiormq.abc
import mmate
import pytest
from broker_ctl import ctl
from conftest import BROKER_URL, message_count, wait_until
from delay_support import prefix_fixture
from failure_app import AppFactory, drain, failure_app
from mmate._failures import retry
from pamqp.commands import Basic
from sample_app import App, CreateOrderCommand
from test_delay_broker import event

pytestmark = pytest.mark.broker
__all__ = ["failure_app", "prefix_fixture"]


def _envelope(payload: Any, *, mid: str = "m-1", raw_payload: str | None = None) -> bytes:
    body = json.dumps(
        {"id": mid, "type": "CreateOrderCommand", "headers": {}, "payload": payload},
        separators=(",", ":"),
    )
    if raw_payload is not None:
        body = body.replace('"payload":null', f'"payload":{raw_payload}')
    return body.encode()


GOOD = {"customerId": "good", "amount": "1.5"}


async def _publish(
    raw: aiormq.abc.AbstractChannel, queue: str, body: bytes, mid: str, **headers: Any
) -> None:
    props = Basic.Properties(message_id=mid, delivery_mode=2, headers=headers or None)
    await raw.basic_publish(body, routing_key=queue, properties=props)


async def test_deeply_nested_bodies_beyond_the_prefetch_never_stall_the_consumer(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    """``[`` repeated 100,000 times, alone and as the payload of a valid envelope, more of them
    than the prefetch: each is dead-lettered as invalid JSON, and the valid message after them
    is handled."""
    app = failure_app(prefetch=4, concurrency=2)
    nested = b"[" * 100_000
    bodies = [nested if n % 2 else _envelope(None, raw_payload=nested.decode()) for n in range(12)]
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        for n, body in enumerate(bodies):
            await _publish(raw, app.queue, body, f"nested-{n}")
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="after", amount=1)
        )
        await wait_until(lambda: consumer.handled == 1 and consumer.dead_lettered == len(bodies))
        await serving.stop()
    assert [c.customer_id for c in handlers.calls] == ["after"]
    dead = await drain(raw, app.dlq)
    assert sorted(d.body for d in dead) == sorted(bodies)
    assert {d.header.properties.headers["x-mmate-dead-letter-reason"] for d in dead} == {
        "invalid-json"
    }
    assert await message_count(raw, app.queue) == 0


_HUGE_IN_HEADERS = _envelope(GOOD).replace(b'"headers":{}', b'"headers":{"h":[1e400]}')


def _amount(raw: str) -> bytes:
    return _envelope(None, raw_payload='{"customerId":"c","amount":' + raw + "}")


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("NaN", _amount("NaN"), "invalid-json"),
        ("Infinity", _amount("Infinity"), "invalid-json"),
        ("-Infinity", _amount("-Infinity"), "invalid-json"),
        ("1e400", _amount("1e400"), "invalid-json"),
        ("decimal of 400 digits", _amount("1" * 400 + ".5"), "invalid-json"),
        ("1e400 in a header", _HUGE_IN_HEADERS, "invalid-json"),
        ("huge integer", _amount("9" * 5000), "invalid-json"),
        ("byte-order mark", b"\xef\xbb\xbf" + _envelope(GOOD), "invalid-json"),
        ("lone surrogate", _envelope(None, raw_payload='{"customerId":"\\ud800"}'), "invalid-json"),
        ("trailing bytes", _envelope(GOOD) + b" x", "invalid-json"),
    ],
)  # fmt: skip
async def test_what_is_not_json_is_dead_lettered_as_invalid_json(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel, name: str, body: bytes, reason: str
) -> None:
    app = failure_app()
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        await _publish(raw, app.queue, body, name)
        await wait_until(lambda: consumer.dead_lettered == 1)
        await serving.stop()
    assert handlers.calls == []
    (dead,) = await drain(raw, app.dlq)
    assert dead.body == body
    assert dead.header.properties.headers["x-mmate-dead-letter-reason"] == reason


async def test_duplicate_keys_are_read_as_go_reads_them_the_last_one_wins(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app()
    body = _envelope(None, raw_payload='{"customerId":"first","customerId":"last","amount":1}')
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        await _publish(raw, app.queue, body, "dup")
        await wait_until(lambda: serving.consumers[0].handled == 1)
        await serving.stop()
    assert [c.customer_id for c in handlers.calls] == ["last"]


HOSTILE_ATTEMPTS: dict[str, dict[str, Any]] = {
    "float attempt 1e30": {"x-mmate-attempt": 1e30},
    "31-digit attempt": {"x-mmate-attempt": "1" * 31},
    "negative attempt": {"x-mmate-attempt": -5},
    "boolean attempt": {"x-mmate-attempt": True},
    "forged x-death count": {
        "x-death": [{"queue": "QUEUE", "reason": "rejected", "count": 2**63 - 1}]
    },
    "x-death garbage": {"x-death": [{"queue": 7, "reason": "rejected", "count": "many"}, "x"]},
}


@pytest.mark.parametrize("failing", ["transient", "permanent"])
async def test_forged_attempt_headers_never_break_the_dead_letter_path(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel, failing: str
) -> None:
    """Attempt numbers read from the wire are clamped: the message is retried or dead-lettered
    with mmate's reason headers, never rejected into the broker's dead-lettering without them."""

    def fail(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        if failing == "permanent":
            raise mmate.PermanentError("refused")
        raise mmate.TransientError("not now")

    app = failure_app(attempts=3, tiers=(50,))
    cases = {
        name: {
            k: ([{**v[0], "queue": app.queue}, *v[1:]] if k == "x-death" and v else v)
            for k, v in headers.items()
        }
        for name, headers in HOSTILE_ATTEMPTS.items()
    }
    cases["forged x-death count"]["x-death"][0]["queue"] = app.queue
    # No circuit breaker: a dozen transient failures in a row would pause the queue for 30 s.
    async with mmate.Client(BROKER_URL, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        serving = await client.serve(app.handlers(fail))
        consumer = serving.consumers[0]
        for name, headers in cases.items():
            await _publish(raw, app.queue, _envelope(GOOD, mid=name), name, **headers)
        await wait_until(lambda: consumer.dead_lettered == len(cases), timeout=20)
        await serving.stop()
    assert consumer.rejected == 0 and consumer.requeued == 0
    dead = {d.header.properties.message_id: d for d in await drain(raw, app.dlq)}
    assert dead.keys() == cases.keys()
    for name, message in dead.items():
        headers = message.header.properties.headers
        expected = "permanent-error" if failing == "permanent" else "retries-exhausted"
        assert headers["x-mmate-dead-letter-reason"] == expected, name
        assert 1 <= headers["x-mmate-attempts"] <= retry.MAX_ATTEMPT, name
    huge = dead["forged x-death count"].header.properties.headers
    assert huge["x-mmate-attempts"] == retry.MAX_ATTEMPT


async def test_when_decoding_and_dead_lettering_both_raise_the_message_waits_and_is_not_lost(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort of the consume loop: a decoder that raises something unexpected, and a
    dead-letter step that raises too. The messages go back to their queue after a growing
    pause (no busy loop of redeliveries), and once the fault is gone they are handled."""
    from mmate._failures import deadletter
    from mmate._wire import envelope

    tries: list[str] = []

    def broken_parse(body: bytes, properties: Any = None) -> Any:
        tries.append("parse")
        raise RuntimeError("a decoder bug")

    def broken_headers(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a dead-letter bug")

    app = failure_app(prefetch=4, concurrency=2)
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        publisher = app.publisher(client)
        for n in range(3):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c{n}", amount=1)
            )
        with monkeypatch.context() as patch:
            patch.setattr(envelope, "parse", broken_parse)
            patch.setattr(deadletter, "dead_letter_headers", broken_headers)
            serving = await client.serve(handlers)
            consumer = serving.consumers[0]
            await wait_until(lambda: consumer.requeued >= 3)
            await asyncio.sleep(2.0)
            delivered = len(tries)
        # Without the pause this would be thousands of deliveries in those two seconds.
        assert 3 <= delivered <= 30, delivered
        await wait_until(lambda: len(handlers.calls) == 3, timeout=60)
        await serving.stop()
    assert sorted(c.customer_id for c in handlers.calls) == ["c0", "c1", "c2"]
    assert consumer.dead_lettered == 0 and consumer.rejected == 0
    assert await message_count(raw, app.queue) == 0


async def test_a_deleted_dead_letter_queue_is_declared_again_and_gets_the_message(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        raise mmate.PermanentError("refused")

    app = failure_app()
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        serving = await client.serve(app.handlers(refuse))
        consumer = serving.consumers[0]
        await raw.queue_delete(app.dlq)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: consumer.dead_lettered == 1)
        await serving.stop()
    assert consumer.rejected == 0
    (dead,) = await drain(raw, app.dlq)
    assert dead.header.properties.headers["x-mmate-dead-letter-reason"] == "permanent-error"
    # the log says what happened: the target was missing, the topology declared again
    said = [r.getMessage() for r in caplog.records if r.name == "mmate.consumer"]
    assert any(
        "its target is missing" in m and "declaring the topology again" in m for m in said
    ), said
    assert not any("rejecting" in m for m in said), said


async def test_a_deleted_wait_queue_is_declared_again_and_the_retry_happens(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    def once(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        if n == 1:
            raise mmate.TransientError("not yet")

    app = failure_app(attempts=3, tiers=(100,))
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(once)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        await raw.queue_delete(app.wait_queues[100])
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: consumer.handled == 1)
        await serving.stop()
    assert consumer.retried == 1 and [c.attempt for c in handlers.calls] == [1, 2]


class _Raw(str):
    """A routing key whose bytes on the wire are not UTF-8 (pamqp encodes what ``encode``
    returns)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"cmd.fail.\xff\xfe"


def _properties_with(table: bytes | None = None, *, timestamp: int | None = None) -> Any:
    """AMQP properties whose encoding is written by hand: a header table of the given bytes, or a
    timestamp property of the given value."""

    class Hand(Basic.Properties):
        def marshal(self) -> bytes:
            if timestamp is not None:
                return (0x0040).to_bytes(2, "big") + struct.pack(">Q", timestamp)
            assert table is not None
            return (0x2000).to_bytes(2, "big") + struct.pack(">I", len(table)) + table

    return Hand()


def _nested_table(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = b"\x01k" + b"F" + struct.pack(">I", len(inner)) + inner
    return inner


HOSTILE_PROPERTIES = {
    "timestamp header beyond year 9999": _properties_with(
        b"\x01t" + b"T" + struct.pack(">Q", 2**62)
    ),
    "timestamp property beyond year 9999": _properties_with(timestamp=2**62),
    "header key not UTF-8": _properties_with(b"\x02\xff\xfe" + b"S" + struct.pack(">I", 1) + b"x"),
    "header table nested 3000 deep": _properties_with(_nested_table(3000)),
}


async def test_hostile_amqp_properties_are_dead_lettered_and_the_connection_survives(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    """RabbitMQ accepts these properties; decoding them fails in pamqp, which aiormq would treat
    as a fatal connection error, redelivering the message to every reconnect forever."""
    app = failure_app()
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        for properties in HOSTILE_PROPERTIES.values():
            await raw.basic_publish(_envelope(GOOD), routing_key=app.queue, properties=properties)
        await raw.basic_publish(
            _envelope(GOOD, mid="bad routing key"), exchange=app.exchange, routing_key=_Raw("x")
        )
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="after", amount=1)
        )
        await wait_until(
            lambda: consumer.dead_lettered == len(HOSTILE_PROPERTIES) and consumer.handled == 2
        )
        await serving.stop()
        assert client.connection.reconnects == 0
    assert sorted(c.customer_id for c in handlers.calls) == ["after", "good"]
    dead = await drain(raw, app.dlq)
    assert len(dead) == len(HOSTILE_PROPERTIES)
    for message in dead:
        assert message.body == _envelope(GOOD)
        headers = message.header.properties.headers
        assert headers["x-mmate-dead-letter-reason"] == "invalid-properties"
        assert "could not be decoded" in headers["x-mmate-error-message"]


async def test_concurrent_delayed_publishes_start_one_relay_and_close_leaves_no_task(
    app: App, prefix: str
) -> None:
    """Fifty delayed publishes at once start one consumer on the ready queue, and ``close``
    stops it: no task of the closed client keeps running."""
    before = asyncio.all_tasks()
    client = mmate.Client(BROKER_URL, service="delayer", delay_prefix=prefix)
    try:
        await client.connect()
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        await asyncio.gather(
            *(publisher.publish_order_created_event(event(n), delay=3600) for n in range(50))
        )
        channel = await client.connection.channel(confirms=False)
        ok = await channel.declare_queue(f"{prefix}.ready", passive=True)
        assert ok.consumer_count == 1
        await channel.close()

        class Idle(app.handlers):  # type: ignore[misc, valid-type]
            async def handle_create_order_command(self, m: Any, ctx: Any) -> None: ...
            async def handle_get_order_query(self, m: Any, ctx: Any) -> Any: ...
            async def handle_order_created_event(self, m: Any, ctx: Any) -> None: ...

        await client.serve(Idle())  # serving starts no second relay
        channel = await client.connection.channel(confirms=False)
        ok = await channel.declare_queue(f"{prefix}.ready", passive=True)
        assert ok.consumer_count == 1
        await channel.close()
    finally:
        await client.close()
    await asyncio.sleep(0.2)
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert left == [], [t.get_name() for t in left]


async def test_a_refused_vhost_error_gives_the_broker_s_reply_code_and_text() -> None:
    with pytest.raises(mmate.BrokerConnectionError) as info:
        async with mmate.Client(BROKER_URL + "no-such-vhost", service="x"):
            pass
    text = str(info.value)
    assert "530" in text and "NOT_ALLOWED" in text and "no-such-vhost not found" in text
    assert "guest:guest" not in text


async def test_a_user_without_permission_on_the_vhost_gets_the_broker_s_reply() -> None:
    name, password = f"mmate-noperm-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    await ctl("add_user", name, password)  # no permissions anywhere
    try:
        url = BROKER_URL.replace("guest:guest", f"{name}:{password}")
        with pytest.raises(mmate.BrokerConnectionError) as info:
            async with mmate.Client(url, service="x"):
                pass
        text = str(info.value)
        assert "530" in text and "NOT_ALLOWED" in text and "access to vhost '/' refused" in text
        assert name in text and password not in text
    finally:
        await ctl("delete_user", name)


def test_a_malformed_url_is_refused_when_the_client_is_created_with_its_port_shown() -> None:
    with pytest.raises(mmate.MmateError, match=r"invalid port 'notaport'") as info:
        mmate.Client("amqp://guest:secret@host:notaport/", service="x")
    assert "amqp://guest:****@host:notaport/" in str(info.value)
    assert "secret" not in str(info.value)


def _hand_properties(flags: int, fields: bytes) -> Any:
    class Hand(Basic.Properties):
        def marshal(self) -> bytes:
            return flags.to_bytes(2, "big") + fields

    return Hand()


def _short(text: str) -> bytes:
    return bytes([len(text)]) + text.encode()


async def test_a_cluster_id_never_blocks_the_moves(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    """RabbitMQ delivers a non-empty ``cluster_id``, which pamqp refuses to write (AMQP 0-9-1
    requires it empty): a move that copied it failed on every try, and the message waited in its
    queue, holding a slot, for ever. Now it is dead-lettered, or retried, once."""

    def once(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        if n == 1:
            raise mmate.TransientError("not yet")

    app = failure_app(attempts=3, tiers=(50,))
    # message_id (flag 0x0080), then cluster_id (0x0004), in the protocol's order
    properties = _hand_properties(0x0084, _short("cluster-id") + _short("c1"))
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(once)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        await raw.basic_publish(b"not json", routing_key=app.queue, properties=properties)
        await raw.basic_publish(_envelope(GOOD), routing_key=app.queue, properties=properties)
        await wait_until(lambda: consumer.dead_lettered == 1 and consumer.handled == 1)
        await serving.stop()
    assert consumer.requeued == 0 and consumer.retried == 1
    assert [c.attempt for c in handlers.calls] == [1, 2]
    dead = await drain(raw, app.dlq)
    assert [d.body for d in dead] == [b"not json"]
    assert dead[0].header.properties.headers["x-mmate-dead-letter-reason"] == "invalid-json"
    assert await message_count(raw, app.queue) == 0
