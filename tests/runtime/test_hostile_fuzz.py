"""Fuzzing the decode-and-settle path: whatever the body and the headers of a delivery, decoding
raises nothing but ``DecodeError``, the attempt number stays in range, and the headers that record
why a message failed always encode again; a compressed body under any ``content_encoding`` decodes
within its limit or is named poison. In-process with hypothesis for the bulk; a sample of the
same kind of input goes through the real broker at the end, counted."""

from __future__ import annotations

import contextlib
import json
import random
import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, message_count, wait_until
from failure_app import AppFactory, drain, failure_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmate import DecodeError
from mmate._contract.topology import Compression
from mmate._failures import deadletter, poison, retry
from mmate._transport.aiormq.properties import to_pamqp
from mmate._transport.base import Properties
from mmate._wire import compression
from mmate._wire import envelope as codec
from mmate._wire.headers import encodable
from pamqp import encode
from pamqp.commands import Basic
from sample_app import MESSAGES, CreateOrderCommand

__all__ = ["failure_app"]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
header_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=2, max_value=10**6, min_value=-(10**6)
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)
header_keys = st.sampled_from(
    ["x-mmate-attempt", "x-death", "x-mmate-first-failure", "x-first-death-queue", "x-source"]
) | st.text(max_size=140)
header_tables = st.dictionaries(header_keys, header_values, max_size=6)
deaths = st.lists(
    st.dictionaries(
        st.sampled_from(["queue", "reason", "count", "time", "exchange", "routing-keys"]),
        header_values,
    ),
    max_size=4,
)


def _envelope_like(payload: Any, kind: Any, extra: dict[str, Any]) -> bytes:
    data = {"id": "m", "type": kind, "payload": payload, **extra}
    return json.dumps(data).encode()


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error_only(body: bytes) -> None:
    try:
        codec.decode(body, MESSAGES)
    except DecodeError as exc:
        assert poison.decode_reason(exc) in poison.POISON_REASONS or "validation" in str(exc)


@FUZZ
@given(
    json_values,
    st.sampled_from(["CreateOrderCommand", "OrderCreatedEvent", "GetOrderQuery", "Nope", ""])
    | json_values,
    st.dictionaries(
        st.sampled_from(["headers", "timestamp", "correlationId", "replyTo"]), json_values
    ),
)
def test_random_json_envelopes_decode_or_raise_decode_error_only(
    payload: Any, kind: Any, extra: dict[str, Any]
) -> None:
    body = _envelope_like(payload, kind, extra)
    try:
        envelope, _model = codec.decode(body, MESSAGES)
    except DecodeError:
        return
    codec.reply_address(envelope, None)  # never raises on what it accepted


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=400))
def test_bytes_spliced_into_a_valid_envelope(noise: bytes, at: int) -> None:
    body = _envelope_like({"customerId": "c", "amount": 1}, "CreateOrderCommand", {})
    at = min(at, len(body))
    mutated = body[:at] + noise + body[at:]
    with contextlib.suppress(DecodeError):
        codec.decode(mutated, MESSAGES)
    poison.check_body(mutated, 100, "q")  # never raises


encodings = st.sampled_from(["gzip", "zstd", "GZIP", "identity", "utf-8", "br", ""]) | st.text(
    max_size=255
)


@FUZZ
@given(st.binary(max_size=300), encodings, st.integers(min_value=1, max_value=4096))
def test_any_bytes_under_any_content_encoding_decode_or_are_named_poison(
    body: bytes, encoding: str, limit: int
) -> None:
    """Whatever the bytes and the encoding, the decoder returns at most ``limit`` bytes or
    says which poison it is; and the body checks after it never raise."""
    result = poison.readable_body(body, None, "q", content_encoding=encoding, inflate_limit=limit)
    if isinstance(result, bytes):
        assert compression.is_identity(encoding) or len(result) <= limit
    else:
        reason, error = result
        assert reason in poison.POISON_REASONS and isinstance(error, DecodeError)


@FUZZ
@given(
    st.sampled_from(["gzip", "zstd"]),
    st.binary(max_size=40),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=400),
)
def test_mutated_compressed_envelopes_decode_or_are_named_poison(
    name: Compression, noise: bytes, at: int, cut: int
) -> None:
    """A valid compressed envelope with bytes spliced in and its end cut off: inflated within
    the limit, or ``oversized`` / ``bad-compression``, nothing else."""
    body = _envelope_like({"customerId": "c" * 50, "amount": 1}, "CreateOrderCommand", {})
    packed = compression.compress(body, name)
    at = min(at, len(packed))
    mutated = packed[:at] + noise + packed[at:]
    mutated = mutated[: max(len(mutated) - cut, 0)]
    try:
        out = compression.decompress(mutated, name, limit=len(body) * 2)
    except compression.Unreadable as exc:
        assert exc.reason in {"oversized", "bad-compression"}
    else:
        assert len(out) <= len(body) * 2


@FUZZ
@given(header_tables, deaths)
def test_attempts_from_any_headers_stay_in_range(headers: dict[str, Any], death: Any) -> None:
    headers = {**headers, "x-death": death}
    assert 1 <= retry.attempt_of(headers, "q") <= retry.MAX_ATTEMPT
    for key in ("x-mmate-attempt",):
        headers[key] = headers.get(key, 2**70)
        assert 1 <= retry.attempt_of(headers, "q") <= retry.MAX_ATTEMPT


@FUZZ
@given(header_tables, deaths, st.text(max_size=300), st.text(max_size=300))
def test_the_headers_that_record_a_failure_always_encode(
    headers: dict[str, Any], death: Any, message_id: str, error_text: str
) -> None:
    headers = {**headers, "x-death": death}
    now = datetime.now(UTC)
    attempt = retry.attempt_of(headers, "q")
    stamped = [
        deadletter.dead_letter_headers(
            headers,
            reason="permanent-error",
            error=ValueError(error_text),
            handler="H.m",
            attempts=attempt,
            now=now,
            exchange="x",
            routing_key="k",
            queue="q",
        ),
        retry.retry_headers(
            headers,
            next_attempt=min(attempt + 1, retry.MAX_ATTEMPT),
            delay_ms=100,
            error=ValueError(error_text),
            now=now,
            exchange="x",
            routing_key="k",
            queue="q",
        ),
    ]
    for table in stamped:
        props = encodable(Properties(headers=table, message_id=message_id))
        encode.field_table(props.headers)  # raises if anything is left that cannot encode
        to_pamqp(props).marshal()
        if "x-death" in props.headers:
            assert all(isinstance(e, dict) for e in props.headers["x-death"])


# -- a sample through the real broker, counted -------------------------------------------------


def _hostile_sample(n: int, seed: int) -> list[tuple[bytes, dict[str, Any]]]:
    rng = random.Random(seed)
    good = _envelope_like({"customerId": "c", "amount": "1.5"}, "CreateOrderCommand", {})
    out: list[tuple[bytes, dict[str, Any]]] = []
    for i in range(n):
        choice = i % 6
        if choice == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif choice == 1:
            at = rng.randrange(len(good))
            body = (
                good[:at]
                + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
                + good[at:]
            )
        elif choice == 2:
            body = good[: rng.randrange(len(good))]
        elif choice == 3:
            depth = rng.choice([150, 250, 5000, 100_000])
            body = good.replace(b'"amount": "1.5"', b'"amount": ' + b"[" * depth + b"]" * depth)
        elif choice == 4:
            junk = "".join(rng.choice(string.printable) for _ in range(20))
            body = good.replace(b'"c"', json.dumps(junk).encode())
        else:
            body = good
        headers: dict[str, Any] = {}
        pick = rng.randrange(5)
        if pick == 0:
            headers["x-mmate-attempt"] = rng.choice([1e30, -3, "9" * 40, True, "x", 2**62])
        elif pick == 1:
            headers["x-death"] = rng.choice(
                [
                    [{"queue": "?", "reason": "rejected", "count": 2**63 - 1}],
                    ["x"],
                    [{"count": "z"}],
                ]
            )
        elif pick == 2:
            headers["x-first-death-queue"] = rng.choice([5, 1.5, ["a"]])
        elif pick == 3:
            headers[rng.choice(["k" * 128, "ü" * 60, "x"])] = rng.choice(
                [
                    Decimal("1.5"),
                    datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(9999)),
                    {"a": [1, "b"]},
                ]
            )
        out.append((body, headers))
    return out


@pytest.mark.broker
async def test_a_hostile_sample_through_the_broker_is_settled_message_by_message(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    def transient_sometimes(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        if ctx.attempt == 1 and "x-mmate-attempt" in ctx.headers:
            raise mmate.TransientError("forged attempt: fail once")

    app = failure_app(attempts=2, tiers=(50,), prefetch=5, concurrency=3)
    sample = _hostile_sample(150, seed=20261201)
    async with mmate.Client(BROKER_URL, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers(transient_sometimes)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        for n, (body, headers) in enumerate(sample):
            props = Basic.Properties(message_id=f"h-{n}", headers=headers or None)
            await raw.basic_publish(body, routing_key=app.queue, properties=props)
        await wait_until(lambda: consumer.handled + consumer.dead_lettered == len(sample), 60)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="still serving", amount=1)
        )
        await wait_until(lambda: "still serving" in [c.customer_id for c in handlers.calls])
        await serving.stop()
        assert client.connection.reconnects == 0
    assert consumer.rejected == 0
    assert await message_count(raw, app.queue) == 0
    dead = await drain(raw, app.dlq)
    assert len(dead) == consumer.dead_lettered
    for message in dead:
        assert message.header.properties.headers["x-mmate-dead-letter-reason"]


async def test_a_thousand_hostile_deliveries_in_memory_are_all_settled() -> None:
    """The bulk of the settle invariant, in-process: every hostile delivery (random bytes, spliced
    and truncated envelopes, deep nesting, forged attempt and death headers, odd header values)
    ends handled or dead-lettered with a reason, nothing stays in the queue or unacked, and the
    consumer still serves a valid message afterwards."""
    from failure_app import make_failure_app
    from mmate._transport.memory import MemoryBroker

    broker = MemoryBroker()
    url = broker.url
    app = make_failure_app(attempts=2, tiers=(50,), prefetch=5, concurrency=3)
    sample = _hostile_sample(1000, seed=20261202)

    def transient_sometimes(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        if ctx.attempt == 1 and "x-mmate-attempt" in ctx.headers:
            raise mmate.TransientError("forged attempt: fail once")

    async with mmate.Client(url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers(transient_sometimes)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        link = await broker.backend.connect(
            url, name="fuzz", heartbeat=0, ssl_context=None, timeout=5
        )
        channel = await link.channel(confirms=True)
        for n, (body, headers) in enumerate(sample):
            await channel.publish(
                body,
                Properties(message_id=f"h-{n}", headers=headers or None),
                exchange="",
                routing_key=app.queue,
            )
        await wait_until(lambda: consumer.handled + consumer.dead_lettered == len(sample), 60)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="still serving", amount=1)
        )
        await wait_until(lambda: "still serving" in [c.customer_id for c in handlers.calls])
        await serving.stop()
        assert consumer.rejected == 0
        assert await message_count(channel, app.queue) == 0
        dead = 0
        while (got := await channel.get(app.dlq, no_ack=True)) is not None:
            assert got.headers["x-mmate-dead-letter-reason"]
            dead += 1
        assert dead == consumer.dead_lettered > 0
        assert consumer.handled > 0
        print(f"in memory: {consumer.handled} handled, {dead} dead-lettered of {len(sample)}")
        await link.close()
    broker.close()


deliveries = st.lists(
    st.tuples(
        st.one_of(
            st.binary(max_size=200),
            st.builds(
                _envelope_like,
                json_values,
                st.sampled_from(["CreateOrderCommand", "Nope", 5, None]),
                st.just({}),
            ),
        ),
        header_tables,
        st.sampled_from([None, "gzip", "zstd", "identity", "br"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries)
def test_the_consume_loop_settles_every_generated_delivery(
    sample: list[tuple[bytes, dict[str, Any], str | None]],
) -> None:
    """Hypothesis drives the consume loop itself (in memory): whatever the bodies, header
    tables and content encodings, every delivery ends handled or dead-lettered with a reason,
    nothing stays in the queue, and a valid message after them is still handled."""
    import asyncio

    from failure_app import make_failure_app
    from mmate._transport.memory import MemoryBroker

    async def run() -> None:
        broker = MemoryBroker()
        app = make_failure_app(attempts=2, tiers=(50,), prefetch=3, concurrency=2)
        async with mmate.Client(broker.url, service="fail-service", handler_breaker=None) as client:
            await client.declare(app.topology)
            handlers = app.handlers()
            serving = await client.serve(handlers)
            consumer = serving.consumers[0]
            link = await broker.backend.connect(
                broker.url, name="fuzz", heartbeat=0, ssl_context=None, timeout=5
            )
            channel = await link.channel(confirms=True)
            published = 0
            for n, (body, headers, encoding) in enumerate(sample):
                props = Properties(
                    message_id=f"h-{n}", headers=headers or None, content_encoding=encoding
                )
                try:
                    await channel.publish(body, props, exchange="", routing_key=app.queue)
                except mmate.MmateError:
                    continue  # a table AMQP cannot carry (an integer beyond 64 bits)
                published += 1
            await wait_until(lambda: consumer.handled + consumer.dead_lettered == published, 20)
            await app.publisher(client).send_create_order_command(
                CreateOrderCommand(customer_id="still serving", amount=1)
            )
            await wait_until(lambda: "still serving" in [c.customer_id for c in handlers.calls])
            await serving.stop()
            assert consumer.rejected == 0 and consumer.requeued == 0
            assert await message_count(channel, app.queue) == 0
            dead = 0
            while (got := await channel.get(app.dlq, no_ack=True)) is not None:
                assert got.headers["x-mmate-dead-letter-reason"]
                dead += 1
            assert dead == consumer.dead_lettered
            await link.close()
        broker.close()

    asyncio.run(run())
