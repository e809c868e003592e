"""TTL and dead-lettering, on the memory broker and on RabbitMQ: when messages expire, what the
dead letter looks like (``x-death`` as RabbitMQ 3.10 writes it), the cycle rule, and malformed
``x-death`` headers. ``test_dead_letters_are_identical_on_both`` runs one scenario on both
brokers and compares every header of every dead letter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from mmate._transport.base import Properties
from mmate._transport.memory import MemoryBroker
from sides import Side, bodies, drain


def _shape(value: Any) -> Any:
    """``value`` with each ``time`` replaced by a marker (after checking it is one)."""
    if isinstance(value, dict):
        return {
            k: ("<time>" if k == "time" and _is_time(v) else _shape(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def _is_time(value: Any) -> bool:
    assert isinstance(value, datetime) and value.tzinfo is not None
    assert value.microsecond == 0
    return True


async def _dead_letters(side: Side) -> dict[str, Any]:
    """A scenario with every kind of death; returns the dead letters' headers and routes."""
    ch = await side.channel()
    dlx = side.unique("dlx")
    await ch.declare_exchange(dlx, "topic", durable=False)
    dst = (await ch.declare_queue(side.unique("dst"), durable=False)).name
    await ch.bind_queue(dst, dlx, "#")
    out: dict[str, Any] = {}

    async def taken(label: str) -> None:
        (delivery,) = await drain(ch, dst)
        out[label] = {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "expiration": delivery.properties.expiration,
            "redelivered": delivery.redelivered,
            "headers": _shape(delivery.headers),
        }

    src = (
        await ch.declare_queue("src", durable=False, arguments={"x-dead-letter-exchange": dlx})
    ).name
    await ch.publish(
        b"a",
        Properties(expiration="30", headers={"h": 1, "CC": ["cc1"]}),
        exchange="",
        routing_key=src,
    )
    await side.wait(0.3)
    await taken("per-message expiration")

    ttl_args = {
        "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": "newkey",
        "x-message-ttl": 20,
    }
    ttl = (await ch.declare_queue("ttl", durable=False, arguments=ttl_args)).name
    await ch.publish(b"b", Properties(headers={"CC": ["gone"]}), exchange="", routing_key=ttl)
    await side.wait(0.3)
    await taken("queue ttl with a dead-letter routing key")

    rej_args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rej"}
    rej = (await ch.declare_queue("rej", durable=False, arguments=rej_args)).name
    await ch.publish(b"c", Properties(expiration="100000"), exchange="", routing_key=rej)
    for _ in range(3):
        await side.settle()
        delivery = await ch.get(rej)
        await ch.nack(delivery.delivery_tag, requeue=False)
    await side.settle()
    (delivery,) = await drain(ch, rej)
    out["rejected three times into itself"] = _shape(delivery.headers)

    self_args = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "self",
        "x-message-ttl": 20,
    }
    await ch.declare_queue("self", durable=False, arguments=self_args)
    await ch.publish(b"d", Properties(), exchange="", routing_key="self")
    await side.wait(0.3)
    out["expired into itself"] = (await ch.declare_queue("self", passive=True)).message_count

    length_args = {"x-dead-letter-exchange": dlx, "x-max-length": 1}
    await ch.declare_queue("len", durable=False, arguments=length_args)
    await ch.publish(b"e1", Properties(), exchange="", routing_key="len")
    await ch.publish(b"e2", Properties(), exchange="", routing_key="len")
    await side.settle()
    await taken("max length")

    quorum_args = {"x-queue-type": "quorum", "x-delivery-limit": 2, "x-dead-letter-exchange": dlx}
    qq = side.unique("qq")
    await ch.declare_queue(qq, arguments=quorum_args)
    await ch.publish(b"f", Properties(), exchange="", routing_key=qq)
    counts = []
    while (delivery := await ch.get(qq)) is not None:
        counts.append(delivery.headers.get("x-delivery-count"))
        await ch.nack(delivery.delivery_tag, requeue=True)
        await side.settle()
    out["delivery counts"] = counts
    await taken("delivery limit")
    out["delivery limit"]["routing_key"] = "<qq>"
    for death in out["delivery limit"]["headers"]["x-death"]:
        death["queue"] = death["routing-keys"] = "<qq>"
    out["delivery limit"]["headers"]["x-first-death-queue"] = "<qq>"

    # a message that died in two queues, then in the first again
    await ch.publish(b"g", Properties(headers={"x": 1}), exchange="", routing_key=ttl)
    await side.wait(0.3)
    (first,) = await drain(ch, dst)
    await ch.publish(
        b"g", Properties(headers=first.headers, expiration="10"), exchange="", routing_key=src
    )
    await side.wait(0.3)
    (second,) = await drain(ch, dst)
    out["two queues"] = _shape(second.headers)
    await ch.publish(b"g", Properties(headers=second.headers), exchange="", routing_key=ttl)
    await side.wait(0.3)
    await taken("the first queue again")
    return out


def _expected() -> dict[str, Any]:
    def death(
        queue: str, reason: str, keys: list[str], exchange: str = "", count: int = 1, **extra: Any
    ) -> dict[str, Any]:
        return {
            "count": count,
            "reason": reason,
            "queue": queue,
            "time": "<time>",
            "exchange": exchange,
            "routing-keys": keys,
            **extra,
        }

    def first(queue: str, reason: str, exchange: str = "") -> dict[str, str]:
        return {
            "x-first-death-reason": reason,
            "x-first-death-queue": queue,
            "x-first-death-exchange": exchange,
        }

    return {
        "per-message expiration": {
            "exchange": "<dlx>",
            "routing_key": "src",
            "expiration": None,
            "redelivered": False,
            "headers": {
                "h": 1,
                "CC": ["cc1"],
                **first("src", "expired"),
                "x-death": [
                    death("src", "expired", ["src", "cc1"], **{"original-expiration": "30"})
                ],
            },
        },
        "queue ttl with a dead-letter routing key": {
            "exchange": "<dlx>",
            "routing_key": "newkey",
            "expiration": None,
            "redelivered": False,
            "headers": {
                **first("ttl", "expired"),
                "x-death": [death("ttl", "expired", ["ttl", "gone"])],
            },
        },
        "rejected three times into itself": {
            **first("rej", "rejected"),
            "x-death": [
                death("rej", "rejected", ["rej"], count=3, **{"original-expiration": "100000"})
            ],
        },
        "expired into itself": 0,
        "max length": {
            "exchange": "<dlx>",
            "routing_key": "len",
            "expiration": None,
            "redelivered": False,
            "headers": {**first("len", "maxlen"), "x-death": [death("len", "maxlen", ["len"])]},
        },
        "delivery counts": [0, 1, 2],
        "delivery limit": {
            "exchange": "<dlx>",
            "routing_key": "<qq>",
            "expiration": None,
            "redelivered": False,
            "headers": {
                **first("<qq>", "delivery_limit"),
                "x-death": [death("<qq>", "delivery_limit", "<qq>")],
            },  # type: ignore[arg-type]
        },
        "two queues": {
            "x": 1,
            **first("ttl", "expired"),
            "x-death": [
                death("src", "expired", ["src"], **{"original-expiration": "10"}),
                death("ttl", "expired", ["ttl"]),
            ],
        },
        "the first queue again": {
            "exchange": "<dlx>",
            "routing_key": "newkey",
            "expiration": None,
            "redelivered": False,
            "headers": {
                "x": 1,
                **first("ttl", "expired"),
                "x-death": [
                    death("ttl", "expired", ["ttl"], count=2),
                    death("src", "expired", ["src"], **{"original-expiration": "10"}),
                ],
            },
        },
    }


def _named(out: dict[str, Any], dlx_prefix: str = "dlx.") -> dict[str, Any]:
    for value in out.values():
        if isinstance(value, dict) and str(value.get("exchange", "")).startswith(dlx_prefix):
            value["exchange"] = "<dlx>"
    return out


async def test_dead_letters_are_written_as_rabbitmq_writes_them(side: Side) -> None:
    if not side.memory:
        pytest.skip("named queues: the memory run and the comparison test cover RabbitMQ")
    assert _named(await _dead_letters(side)) == _expected()


@pytest.mark.broker
async def test_dead_letters_are_identical_on_both(rabbit_vhost: str | None) -> None:
    """One scenario on RabbitMQ and in memory: every dead letter's headers are equal (their
    times are checked to be RabbitMQ timestamps, then left out)."""
    if rabbit_vhost is None:
        pytest.skip("no RabbitMQ broker")
    url = f"amqp://guest:guest@127.0.0.1:5672/{rabbit_vhost}"
    rabbit = Side("rabbitmq", url, vhost=rabbit_vhost)
    memory_broker = MemoryBroker()
    memory = Side("memory", memory_broker.url, broker=memory_broker)
    try:
        got_rabbit = _named(await _dead_letters(rabbit))
        got_memory = _named(await _dead_letters(memory))
    finally:
        ch = await rabbit.channel()
        for name in ("src", "ttl", "rej", "self", "len"):
            await ch.delete_queue(name)
        await rabbit.close()
        await memory.close()
    assert got_memory == got_rabbit == _expected()


async def test_a_message_expires_only_at_the_head(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    await ch.publish(b"long", Properties(expiration="60000"), exchange="", routing_key=q)
    await ch.publish(b"short", Properties(expiration="10"), exchange="", routing_key=q)
    await ch.publish(b"zero", Properties(expiration="0"), exchange="", routing_key=q)
    await side.wait(0.1)
    # both expired ones wait behind the head, and count
    assert (await ch.declare_queue(q, passive=True)).message_count == 3
    head = await ch.get(q)
    assert head.body == b"long"
    await ch.nack(head.delivery_tag, requeue=True)
    await side.settle()
    assert await bodies(ch, q) == ["long"]


async def test_a_requeued_message_keeps_its_expiry(side: Side) -> None:
    ch = await side.channel()
    q = (
        await ch.declare_queue(side.unique("q"), durable=False, arguments={"x-message-ttl": 100})
    ).name
    await ch.publish(b"m", Properties(), exchange="", routing_key=q)
    held = await ch.get(q)
    await side.wait(0.2)  # unacknowledged messages do not expire...
    await ch.nack(held.delivery_tag, requeue=True)
    await side.settle()
    assert await bodies(ch, q) == []  # ...but back in the queue it is past its time


async def test_the_shorter_ttl_wins_and_a_delivery_keeps_its_expiration(side: Side) -> None:
    ch = await side.channel()
    q = (
        await ch.declare_queue(side.unique("q"), durable=False, arguments={"x-message-ttl": 50})
    ).name
    await ch.publish(b"m", Properties(expiration="100000"), exchange="", routing_key=q)
    await side.wait(0.15)
    assert (await ch.declare_queue(q, passive=True)).message_count == 0
    plain = (await ch.declare_queue(side.unique("q"), durable=False)).name
    await ch.publish(b"m", Properties(expiration="100000"), exchange="", routing_key=plain)
    (delivery,) = await drain(ch, plain)
    assert delivery.properties.expiration == "100000"


async def test_a_zero_ttl_reaches_a_waiting_consumer(side: Side) -> None:
    ch = await side.channel()
    q = (
        await ch.declare_queue(side.unique("q"), durable=False, arguments={"x-message-ttl": 0})
    ).name
    got: list[bytes] = []
    await ch.consume(q, lambda d: got.append(d.body), no_ack=True)
    await ch.publish(b"z", Properties(), exchange="", routing_key=q)
    await side.settle()
    assert got == [b"z"]


@pytest.mark.parametrize(
    ("expiration", "reason"),
    [
        ("abc", "no_integer"),
        ("-5", "{value_negative,-5}"),
        ("1.5", '{leftover_string,".5"}'),
        (" 10", "no_integer"),
    ],
)
async def test_an_invalid_expiration_closes_the_channel(
    side: Side, expiration: str, reason: str
) -> None:
    ch = await side.channel()
    with pytest.raises(Exception) as caught:
        await ch.publish(b"m", Properties(expiration=expiration), exchange="", routing_key="q")
    assert side.reply(caught.value) == (
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}"
    )
    assert not ch.is_open


async def test_valid_expirations(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    for expiration in ("+10000", "010000", "315360000000"):
        await ch.publish(b"m", Properties(expiration=expiration), exchange="", routing_key=q)
    assert len(await drain(ch, q)) == 3
    with pytest.raises(Exception, match="value_too_large"):
        await ch.publish(b"m", Properties(expiration="315360000001"), exchange="", routing_key=q)


async def test_malformed_x_death_headers_are_handled_as_rabbitmq_does(side: Side) -> None:
    ch = await side.channel()
    dst = (await ch.declare_queue(side.unique("dst"), durable=False)).name
    src = (
        await ch.declare_queue(
            side.unique("src"),
            durable=False,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dst},
        )
    ).name
    cases: dict[str, Any] = {
        "not a list": "abc",
        "not tables": [1, 2],
        "a text count": [{"count": "x", "queue": src, "reason": "rejected"}],
        "a bool count": [{"count": True, "queue": src, "reason": "rejected"}],
        "no count": [{"queue": src, "reason": "rejected"}],
        "repeated": [
            {"count": 7, "queue": src, "reason": "rejected"},
            {"count": 2, "queue": src, "reason": "rejected"},
        ],
        "another queue": [{"count": "x", "queue": "o", "reason": "expired"}],
        "empty": [],
    }
    got: dict[str, Any] = {}
    for label, forged in cases.items():
        await ch.publish(
            label.encode(), Properties(headers={"x-death": forged}), exchange="", routing_key=src
        )
        delivery = await ch.get(src)
        await ch.nack(delivery.delivery_tag, requeue=False)
        await side.settle()
        letters = await drain(ch, dst)
        if not letters:
            got[label] = "lost"
            continue
        headers = letters[0].headers
        got[label] = (
            [(d.get("queue"), d.get("reason"), d.get("count")) for d in headers["x-death"]],
            "x-first-death-queue" in headers,
        )
    new = (src, "rejected", 1)
    assert got == {
        "not a list": ([new], False),
        "not tables": "lost",
        "a text count": "lost",
        "a bool count": "lost",
        "no count": ([new], False),
        "repeated": ([(src, "rejected", 8)], False),
        "another queue": ([new, ("o", "expired", "x")], False),
        "empty": ([new], False),
    }


async def test_expiry_happens_on_time_without_a_consumer(side: Side) -> None:
    ch = await side.channel()
    dst = (await ch.declare_queue(side.unique("dst"), durable=False)).name
    src = (
        await ch.declare_queue(
            side.unique("src"),
            durable=False,
            arguments={
                "x-message-ttl": 200,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dst,
            },
        )
    ).name
    await ch.publish(b"m", Properties(), exchange="", routing_key=src)
    await side.wait(0.1, slack=False)
    assert (await ch.declare_queue(dst, passive=True)).message_count == 0
    await side.wait(0.1)
    assert (await ch.declare_queue(dst, passive=True)).message_count == 1


async def test_dead_letters_to_a_missing_exchange_are_dropped(side: Side) -> None:
    ch = await side.channel()
    src = (
        await ch.declare_queue(
            side.unique("src"),
            durable=False,
            arguments={"x-message-ttl": 10, "x-dead-letter-exchange": side.unique("missing")},
        )
    ).name
    await ch.publish(b"m", Properties(), exchange="", routing_key=src)
    await side.wait(0.1)
    assert (await ch.declare_queue(src, passive=True)).message_count == 0
    assert ch.is_open


async def test_quorum_at_least_once_dead_letters_wait_for_a_route(
    broker: MemoryBroker, link: Any
) -> None:
    """RabbitMQ keeps an at-least-once dead letter that routes nowhere and tries again every
    180 s (measured: not delivered within 6 s of a binding appearing)."""
    ch = await link.channel(confirms=True)
    await ch.declare_exchange("dlx", "fanout", durable=False)
    await ch.declare_queue(
        "src",
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "dlx",
            "x-message-ttl": 50,
        },
    )
    await ch.publish(b"m", Properties(), exchange="", routing_key="src")
    await broker.advance(0.1)
    view = broker.queue("src")
    assert view.message_count == 0 and len(view.held_dead_letters) == 1
    await ch.declare_queue("dst", durable=False)
    await ch.bind_queue("dst", "dlx")
    await broker.advance(60)
    assert broker.message_count("dst") == 0
    await broker.advance(120)
    assert broker.message_count("dst") == 1
    assert broker.queue("src").held_dead_letters == ()
    # at-most-once (the default) drops it
    await ch.declare_queue(
        "lossy",
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": 50,
            "x-dead-letter-exchange": "nowhere",
        },
    )
    await ch.publish(b"m", Properties(), exchange="", routing_key="lossy")
    await broker.advance(0.1)
    assert broker.queue("lossy").held_dead_letters == ()
