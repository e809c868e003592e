"""Compression and size limits: the bounded decoder on its own, then publishing and consuming
through a client on both backends (the in-memory broker, and RabbitMQ with unique names deleted
afterwards), every message counted. What only RabbitMQ can carry (a ``content_encoding`` that is
not UTF-8) is at the end."""

from __future__ import annotations

import sys
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiormq.abc
import mmate
import pytest
from backports import zstd
from compression_support import ROUTING_KEY, compressed_route, gzip_bomb, zstd_bomb
from conftest import BROKER_URL, _cleanup, message_count, wait_until
from failure_app import FailureApp, drain, make_failure_app
from mmate import MessageTooLarge, Publication
from mmate._contract.topology import Compression
from mmate._failures import poison
from mmate._transport.aiormq.backend import AiormqBackend
from mmate._transport.base import Channel, Properties
from mmate._transport.memory import MemoryBroker
from mmate._wire import compression
from mmate._wire import envelope as codec
from mmate._wire.compression import Unreadable
from pamqp.commands import Basic
from sample_app import MESSAGES, CreateOrderCommand

BIG = "x" * 2000
"""A customer id that makes a body of about 2.4 KB, over the default threshold of 1 KiB."""


def _envelope(customer: str = "C-1", mid: str = "m-1") -> bytes:
    message = CreateOrderCommand(customer_id=customer, amount=1)
    return codec.encode(MESSAGES["CreateOrderCommand"], message, app_id="t", message_id=mid).body


# -- the decoder on its own ----------------------------------------------------------------------


@pytest.mark.parametrize("codec_name", ["gzip", "zstd"])
def test_compress_then_decompress_gives_the_body_back(codec_name: Compression) -> None:
    body = _envelope(BIG)
    packed = compression.compress(body, codec_name)
    assert len(packed) < len(body) // 10
    assert compression.decompress(packed, codec_name, limit=len(body)) == body
    assert compression.decompress(packed, codec_name.upper(), limit=len(body)) == body
    assert compression.compress(body, codec_name) == packed


def test_gzip_output_is_standard_gzip() -> None:
    import gzip

    body = _envelope(BIG)
    assert gzip.decompress(compression.compress(body, "gzip")) == body
    assert compression.decompress(gzip.compress(body), "gzip", limit=len(body)) == body


@pytest.mark.parametrize("encoding", [None, "", "identity", "utf-8", "UTF-8", " utf8 "])
def test_identity_encodings_return_the_body_itself(encoding: str | None) -> None:
    body = b"\x1f\x8b not really gzip"
    assert compression.decompress(body, encoding, limit=1) is body


@pytest.mark.parametrize("codec_name", ["gzip", "zstd"])
def test_the_decoded_size_may_reach_the_limit_and_not_one_byte_more(
    codec_name: Compression,
) -> None:
    body = _envelope(BIG)
    packed = compression.compress(body, codec_name)
    assert compression.decompress(packed, codec_name, limit=len(body)) == body
    with pytest.raises(Unreadable) as caught:
        compression.decompress(packed, codec_name, limit=len(body) - 1)
    assert caught.value.reason == "oversized"
    assert f"more than the limit of {len(body) - 1} bytes" in caught.value.text


@pytest.mark.parametrize("bomb", [gzip_bomb, zstd_bomb], ids=["gzip", "zstd"])
def test_a_bomb_of_one_gib_stops_at_the_limit(bomb: Callable[[], bytes]) -> None:
    name = "gzip" if bomb is gzip_bomb else "zstd"
    data = bomb()
    assert len(data) < 2 << 20
    with pytest.raises(Unreadable) as caught:
        compression.decompress(data, name, limit=16 << 20)
    assert caught.value.reason == "oversized"


def test_the_gzip_bomb_is_valid_gzip_of_one_gib() -> None:
    """The bomb is not merely corrupt data: inflated without a limit it is 1 GiB of zeros with
    a correct trailer (checked in steps, never holding it all)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data, total = gzip_bomb(), 0
    while data:
        total += len(inflater.decompress(data, 64 << 20))
        data = inflater.unconsumed_tail
    assert inflater.eof and total == 1 << 30


def test_concatenated_gzip_members_and_zstd_frames_count_together() -> None:
    one, two = _envelope("A")[:100], _envelope("B")[100:]
    names: tuple[Compression, ...] = ("gzip", "zstd")
    for name in names:
        packed = compression.compress(one, name) + compression.compress(two, name)
        assert compression.decompress(packed, name, limit=len(one) + len(two)) == one + two
        with pytest.raises(Unreadable, match="more than the limit"):
            compression.decompress(packed, name, limit=len(one) + len(two) - 1)


def _broken(name: Compression) -> dict[str, bytes]:
    packed = compression.compress(_envelope(BIG), name)
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    return {
        "truncated": packed[: len(packed) // 2],
        "corrupt": bytes(flipped),
        "trailing bytes": packed + b"junk",
        "not compressed": _envelope(),
        "empty": b"",
    }


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_broken_streams_are_bad_compression(name: Compression) -> None:
    for kind, data in _broken(name).items():
        with pytest.raises(Unreadable) as caught:
            compression.decompress(data, name, limit=1 << 20)
        assert caught.value.reason == "bad-compression", kind
        assert name in caught.value.text


def test_an_unknown_encoding_is_named_and_an_absurd_one_shortened() -> None:
    with pytest.raises(Unreadable) as caught:
        compression.decompress(b"x", "br", limit=10)
    assert caught.value.reason == "unknown-encoding"
    assert "'br' is not one this runtime reads" in caught.value.text
    absurd = "gzip," * 51  # 255 characters, the most a shortstr holds
    with pytest.raises(Unreadable) as caught:
        compression.decompress(b"x", absurd, limit=10)
    assert caught.value.reason == "unknown-encoding"
    assert "(255 characters)" in caught.value.text and len(caught.value.text) < 200


def test_without_the_zstd_extra_publishing_and_consuming_say_which_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "backports.zstd", None)  # import now raises ImportError
    assert not compression.zstd_available()
    with pytest.raises(mmate.FeatureNotAvailable, match=r"pip install 'mmate\[zstd\]'"):
        compression.compress(b"x" * 100, "zstd")
    with pytest.raises(Unreadable) as caught:
        compression.decompress(zstd.compress(b"x"), "zstd", limit=10)
    assert caught.value.reason == "unknown-encoding"
    assert "pip install 'mmate[zstd]'" in caught.value.text
    assert compression.compress(b"x", "gzip")  # gzip needs nothing


def test_every_reason_of_the_decoder_is_a_poison_reason() -> None:
    assert {"oversized", "unknown-encoding", "bad-compression"} <= poison.POISON_REASONS
    assert poison.UNKNOWN_ENCODING == "unknown-encoding"
    assert poison.BAD_COMPRESSION == "bad-compression"


def test_readable_body_decodes_then_runs_the_body_checks() -> None:
    good = _envelope()
    packed = compression.compress(good, "gzip")
    decoded = poison.readable_body(packed, None, "q", content_encoding="gzip", inflate_limit=1000)
    assert decoded == good
    # The queue's limit bounds the inflating, and names the queue.
    result = poison.readable_body(packed, 50, "q", content_encoding="gzip", inflate_limit=1 << 20)
    assert isinstance(result, tuple) and result[0] == "oversized"
    assert "max_message_bytes of queue 'q'" in str(result[1])
    result = poison.readable_body(packed, None, "q", content_encoding="gzip", inflate_limit=50)
    assert isinstance(result, tuple) and "max_decompressed_bytes" in str(result[1])
    # Decoded bytes that are not UTF-8 are still not-utf8.
    latin = compression.compress(b'{"a":"\xff"}', "gzip")
    result = poison.readable_body(latin, None, "q", content_encoding="gzip", inflate_limit=99)
    assert isinstance(result, tuple) and result[0] == "not-utf8"
    # Properties the transport could not decode: the marker wins, whatever else.
    marker = {poison.UNDECODABLE_PROPERTIES: "bad table"}
    result = poison.readable_body(
        packed, None, "q", marker, content_encoding="gzip", inflate_limit=9
    )
    assert isinstance(result, tuple) and result[0] == "invalid-properties"


# -- through a client, on both backends --------------------------------------------------------


@dataclass
class Side:
    name: str
    url: str
    links: list[Any] = field(default_factory=list)
    apps: list[FailureApp] = field(default_factory=list)
    broker: MemoryBroker | None = None

    def app(self, **options: Any) -> FailureApp:
        made = make_failure_app(**options)
        self.apps.append(made)
        return made

    async def channel(self) -> Channel:
        if self.broker is not None:
            backend: Any = self.broker.backend
        else:
            backend = AiormqBackend()
        link = await backend.connect(
            self.url, name="compression-test", heartbeat=0, ssl_context=None, timeout=5
        )
        self.links.append(link)
        channel: Channel = await link.channel(confirms=True)
        return channel


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.broker)])
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    if request.param == "memory":
        broker = MemoryBroker()
        made = Side("memory", broker.url, broker=broker)
    else:
        made = Side("rabbitmq", BROKER_URL)
    try:
        yield made
    finally:
        for link in made.links:
            await link.close()
        if made.broker is not None:
            made.broker.close()
        else:
            for app in made.apps:
                await _cleanup(app.queues, app.exchanges)


async def _take_all(channel: Channel, queue: str) -> list[Any]:
    got = []
    while (message := await channel.get(queue, no_ack=True)) is not None:
        got.append(message)
    return got


@pytest.mark.parametrize("codec_name", ["gzip", "zstd"])
async def test_a_compressed_route_compresses_only_bodies_over_its_threshold_and_consumers_read_them(
    side: Side, codec_name: Compression
) -> None:
    app = side.app()
    route = compressed_route(app, codec_name)
    customers = [f"{'big-' + BIG if n % 2 else 'small'}-{n}" for n in range(40)]
    channel = await side.channel()
    async with mmate.Client(side.url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        for customer in customers:
            await client.publish(route, CreateOrderCommand(customer_id=customer, amount=1), "", {})
        on_wire = await _take_all(channel, app.queue)
        assert len(on_wire) == 40
        for customer, message in zip(customers, on_wire, strict=True):
            encoding = message.properties.content_encoding
            big = customer.startswith("big-")
            assert encoding == (codec_name if big else "utf-8"), customer
            body = compression.decompress(message.body, encoding, limit=1 << 20)
            assert (len(message.body) < len(body) // 4) if big else (message.body is body)
            assert codec.parse(body).payload["customerId"] == customer
        # Back into the queue exactly as they were, and served.
        for message in on_wire:
            await channel.publish(
                message.body, message.properties, exchange="", routing_key=app.queue
            )
        handlers = app.handlers()
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        await wait_until(lambda: consumer.handled == 40, 30)
        await serving.stop()
    assert sorted(c.customer_id for c in handlers.calls) == sorted(customers)
    assert consumer.failed == 0 and await message_count(channel, app.queue) == 0


async def test_the_compress_option_of_one_publish_overrides_its_route(side: Side) -> None:
    app = side.app()
    plain = compressed_route(app, None)
    gzipped = compressed_route(app, "gzip")
    channel = await side.channel()
    big = CreateOrderCommand(customer_id=BIG, amount=1)
    async with mmate.Client(side.url, service="fail-service") as client:
        await client.declare(app.topology)
        await client.publish(plain, big, "", {"compress": "zstd"})
        await client.publish(gzipped, big, "", {"compress": None})
        await client.publish(gzipped, big, "", {"compress": "zstd"})
        await client.publish(plain, big, "", {})
        publisher = app.publisher(client)  # the generated shape: the option as a keyword
        await publisher.send_create_order_command(big, compress="gzip")
        encodings = [m.properties.content_encoding for m in await _take_all(channel, app.queue)]
    assert encodings == ["zstd", "utf-8", "zstd", "utf-8", "gzip"]


async def test_batches_transactions_and_publish_many_compress_the_same_way(side: Side) -> None:
    app = side.app()
    route = compressed_route(app, "gzip")
    channel = await side.channel()
    big = CreateOrderCommand(customer_id=BIG, amount=1)
    small = CreateOrderCommand(customer_id="s", amount=1)
    async with mmate.Client(side.url, service="fail-service") as client:
        await client.declare(app.topology)
        async with client.batch() as batch:
            await batch.publish(route, big, "", {})
            await batch.publish(route, small, "", {})
        await client.publish_many([Publication(route, big), Publication(route, small)])
        async with client.begin_tx() as tx:
            await tx.publish(route, big, "", {})
            await tx.publish(route, small, "", {})
        encodings = [m.properties.content_encoding for m in await _take_all(channel, app.queue)]
    assert encodings == ["gzip", "utf-8"] * 3


async def test_a_failed_compressed_message_is_retried_with_its_original_bytes(side: Side) -> None:
    def once(message: CreateOrderCommand, ctx: mmate.MessageContext, n: int) -> None:
        if n == 1:
            raise mmate.TransientError("not yet")

    app = side.app(attempts=3, tiers=(100,))
    route = compressed_route(app, "zstd")
    async with mmate.Client(side.url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers(once)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        await client.publish(route, CreateOrderCommand(customer_id=BIG, amount=1), "", {})
        if side.broker is not None:
            await wait_until(lambda: consumer.retried == 1)
            await side.broker.advance(0.2)
        await wait_until(lambda: consumer.handled == 1)
        await serving.stop()
    assert [(c.customer_id, c.attempt) for c in handlers.calls] == [(BIG, 1), (BIG, 2)]
    assert consumer.retried == 1 and consumer.dead_lettered == 0


def _hostile(gzip_ok: bytes) -> dict[str, tuple[bytes, str, str]]:
    """Deliveries with a ``content_encoding``: name -> (body, encoding, expected reason)."""
    truncated = gzip_ok[: len(gzip_ok) // 2]
    zstd_ok = compression.compress(_envelope(BIG), "zstd")
    flipped = bytearray(zstd_ok)
    flipped[len(flipped) // 2] ^= 0xFF
    return {
        "gzip bomb of 1 GiB": (gzip_bomb(), "gzip", "oversized"),
        "zstd bomb of 1 GiB": (zstd_bomb(), "zstd", "oversized"),
        "truncated gzip": (truncated, "gzip", "bad-compression"),
        "corrupt zstd": (bytes(flipped), "zstd", "bad-compression"),
        "gzip with junk after it": (gzip_ok + b"junk", "gzip", "bad-compression"),
        "plain JSON said to be gzip": (_envelope(), "gzip", "bad-compression"),
        "brotli": (b"\x0b\x02\x80", "br", "unknown-encoding"),
        "an encoding of 255 characters": (gzip_ok, "gzip," * 51, "unknown-encoding"),
        "gzip of a body that is not UTF-8": (
            compression.compress(b'{"id":"\xff"}', "gzip"),
            "gzip",
            "not-utf8",
        ),
    }


async def test_hostile_compressed_deliveries_are_dead_lettered_byte_for_byte_and_counted(
    side: Side,
) -> None:
    app = side.app()
    gzip_ok = compression.compress(_envelope(BIG, mid="good"), "gzip")
    hostile = _hostile(gzip_ok)
    channel = await side.channel()
    async with mmate.Client(side.url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers()
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        for name, (body, encoding, _reason) in hostile.items():
            properties = Properties(content_encoding=encoding, message_id=name, delivery_mode=2)
            await channel.publish(body, properties, exchange="", routing_key=app.queue)
        await channel.publish(
            gzip_ok, Properties(content_encoding="gzip"), exchange="", routing_key=app.queue
        )
        await wait_until(
            lambda: consumer.dead_lettered == len(hostile) and consumer.handled == 1, 30
        )
        await serving.stop()
        assert consumer.rejected == 0 and consumer.requeued == 0
        assert await message_count(channel, app.queue) == 0
        dead = {m.properties.message_id: m for m in await _take_all(channel, app.dlq)}
    assert [c.customer_id for c in handlers.calls] == [BIG]
    assert len(dead) == len(hostile)
    for name, (body, encoding, reason) in hostile.items():
        message = dead[name]
        assert message.body == body, name  # the original bytes, not the decoded ones
        assert message.properties.content_encoding == encoding, name
        assert message.properties.headers["x-mmate-dead-letter-reason"] == reason, name
        assert message.properties.headers["x-mmate-error-class"] == "DecodeError", name
    bomb = dead["gzip bomb of 1 GiB"].properties.headers["x-mmate-error-message"]
    assert "more than the limit of 16777216 bytes" in bomb and "max_decompressed_bytes" in bomb


async def test_the_queue_limit_bounds_inflating_and_the_client_default_is_configurable(
    side: Side,
) -> None:
    app = side.app(max_message_bytes=1000)
    other = side.app()
    packed = compression.compress(_envelope(BIG), "gzip")  # 2.4 KB decoded, about 100 B packed
    channel = await side.channel()
    async with mmate.Client(
        side.url, service="fail-service", handler_breaker=None, max_decompressed_bytes=2000
    ) as client:
        await client.declare(app.topology)
        await client.declare(other.topology)
        limited = await client.serve(app.handlers())
        defaulted = await client.serve(other.handlers())
        for queue in (app.queue, other.queue):
            properties = Properties(content_encoding="gzip", message_id="packed")
            await channel.publish(packed, properties, exchange="", routing_key=queue)
        await wait_until(
            lambda: all(s.consumers[0].dead_lettered == 1 for s in (limited, defaulted)), 30
        )
        await limited.stop()
        await defaulted.stop()
        texts = [
            (await _take_all(channel, queue))[0].properties.headers["x-mmate-error-message"]
            for queue in (app.dlq, other.dlq)
        ]
    assert "limit of 1000 bytes" in texts[0] and f"queue {app.queue!r}" in texts[0]
    assert "limit of 2000 bytes" in texts[1] and "max_decompressed_bytes" in texts[1]


# -- the publisher-side size limit --------------------------------------------------------------


async def test_a_publish_over_its_route_limit_fails_at_the_publisher_and_nothing_is_sent(
    side: Side,
) -> None:
    app = side.app(max_message_bytes=1000)
    limited = compressed_route(app, None, max_message_bytes=1000)
    gzipped = compressed_route(app, "gzip", max_message_bytes=1000)
    channel = await side.channel()
    big = CreateOrderCommand(customer_id=BIG, amount=1)
    async with mmate.Client(side.url, service="fail-service") as client:
        await client.declare(app.topology)
        with pytest.raises(MessageTooLarge) as caught:
            await client.publish(limited, big, ROUTING_KEY, {"message_id": "too-big"})
        error = caught.value
        assert error.limit == 1000 and error.size > 2000
        assert error.limit_name == "max_message_bytes"
        assert error.exchange == app.exchange and error.routing_key == ROUTING_KEY
        assert error.message_type == "CreateOrderCommand"
        text = str(error)
        assert f"exchange {app.exchange!r}" in text and "too-big" in text
        assert "nothing was published" in text
        # Compressed, it would be small on the wire; consumers count it decoded: still refused.
        with pytest.raises(MessageTooLarge):
            await client.publish(gzipped, big, "", {})
        # In a batch, publish_many and a transaction: refused before anything is sent.
        small = CreateOrderCommand(customer_id="s", amount=1)
        with pytest.raises(MessageTooLarge):
            await client.publish_many([Publication(limited, small), Publication(limited, big)])
        with pytest.raises(MessageTooLarge):
            async with client.batch() as batch:
                await batch.publish(limited, small, "", {})
                await batch.publish(limited, big, "", {})
        with pytest.raises(MessageTooLarge):
            async with client.begin_tx() as tx:
                await tx.publish(limited, small, "", {})
                await tx.publish(limited, big, "", {})
        assert await message_count(channel, app.queue) == 0
        await client.publish(limited, small, "", {})
        assert await message_count(channel, app.queue) == 1


async def test_the_client_limit_counts_the_body_on_the_wire_after_compression(
    side: Side,
) -> None:
    app = side.app()
    plain = compressed_route(app, None)
    gzipped = compressed_route(app, "gzip")
    channel = await side.channel()
    big = CreateOrderCommand(customer_id=BIG, amount=1)
    async with mmate.Client(side.url, service="fail-service", max_publish_bytes=1000) as client:
        await client.declare(app.topology)
        with pytest.raises(MessageTooLarge) as caught:
            await client.publish(plain, big, "", {})
        assert caught.value.limit_name == "max_publish_bytes" and caught.value.limit == 1000
        assert "max_publish_bytes" in str(caught.value)
        await client.publish(gzipped, big, "", {})  # about 100 bytes compressed
        (message,) = await _take_all(channel, app.queue)
    assert message.properties.content_encoding == "gzip" and len(message.body) < 1000


def test_the_default_client_limit_is_rabbitmqs_default_max_message_size() -> None:
    assert mmate.ClientSettings().max_publish_bytes == 128 * 1024 * 1024
    assert mmate.ClientSettings().max_decompressed_bytes == 16 * 1024 * 1024


# -- what only RabbitMQ carries ------------------------------------------------------------------


class _NotUtf8(str):
    """A ``content_encoding`` whose bytes on the wire are not UTF-8 (pamqp encodes what
    ``encode`` returns)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"gz\xff\xfeip"


@pytest.mark.broker
async def test_a_content_encoding_that_is_not_utf8_is_dead_lettered_as_invalid_properties(
    raw: aiormq.abc.AbstractChannel,
) -> None:
    app = make_failure_app()
    try:
        packed = compression.compress(_envelope(BIG), "gzip")
        async with mmate.Client(BROKER_URL, service="fail-service") as client:
            await client.declare(app.topology)
            serving = await client.serve(app.handlers())
            consumer = serving.consumers[0]
            properties = Basic.Properties(content_encoding=_NotUtf8("gzip"), message_id="odd")
            await raw.basic_publish(packed, routing_key=app.queue, properties=properties)
            await wait_until(lambda: consumer.dead_lettered == 1)
            await serving.stop()
            assert client.connection.reconnects == 0
        (dead,) = await drain(raw, app.dlq)
        assert dead.body == packed
        assert dead.header.properties.headers["x-mmate-dead-letter-reason"] == "invalid-properties"
    finally:
        await _cleanup(app.queues, app.exchanges)


def test_import_mmate_does_not_load_zstd() -> None:
    """The extra is imported on the first zstd body, not by ``import mmate`` (it costs tens of
    milliseconds of start-up)."""
    import subprocess

    code = "import sys, mmate; assert 'backports.zstd' not in sys.modules, 'loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
