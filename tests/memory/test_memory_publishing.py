"""Publishing, on the memory broker and on RabbitMQ: confirms, mandatory returns, the overflow
modes of classic and quorum queues, and transactions."""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

import pytest
from mmate._transport.base import Properties, Returned
from mmate._transport.memory import MemoryBroker
from mmate.errors import (
    EntityNotFound,
    MmateError,
    NackError,
    PreconditionFailed,
    ResourceLocked,
    UnroutableError,
)
from sides import Side, bodies, drain


async def _queue(side: Side, ch: Any, kind: str = "classic", **arguments: Any) -> str:
    args = {"x-queue-type": kind, **{k.replace("_", "-"): v for k, v in arguments.items()}}
    return (await ch.declare_queue(side.unique(kind), arguments=args)).name


async def _publish(ch: Any, queue: str, body: str, exchange: str = "") -> str:
    try:
        await ch.publish(body.encode(), Properties(), exchange=exchange, routing_key=queue)
    except NackError:
        return "nack"
    return "ack"


async def test_an_unroutable_mandatory_publish_is_returned(side: Side) -> None:
    ch = await side.channel()
    with pytest.raises(UnroutableError) as caught:
        await ch.publish(b"m", Properties(), exchange="amq.direct", routing_key="nobody")
    assert "312" in str(caught.value) and "NO_ROUTE" in str(caught.value)
    await ch.publish(
        b"m", Properties(), exchange="amq.direct", routing_key="nobody", mandatory=False
    )
    assert ch.is_open


@pytest.mark.parametrize(
    ("overflow", "results", "kept", "dead"),
    [
        ("reject-publish", ["ack", "nack"], ["1"], []),
        ("reject-publish-dlx", ["ack", "nack"], ["1"], ["2"]),
        ("drop-head", ["ack", "ack"], ["2"], ["1"]),
    ],
)
async def test_classic_overflow(
    side: Side, overflow: str, results: list[str], kept: list[str], dead: list[str]
) -> None:
    ch = await side.channel()
    dlq = await _queue(side, ch)
    q = await _queue(
        side,
        ch,
        x_max_length=1,
        x_overflow=overflow,
        x_dead_letter_exchange="",
        x_dead_letter_routing_key=dlq,
    )
    assert [await _publish(ch, q, body) for body in "12"] == results
    await side.settle()
    assert (await bodies(ch, q), await bodies(ch, dlq)) == (kept, dead)
    plain = await side.channel(confirms=False)  # without confirms a refusal is silent
    await _publish(plain, q, "3")
    await _publish(plain, q, "4")
    await side.settle()
    expected = {
        "reject-publish": (["3"], []),
        "reject-publish-dlx": (["3"], ["4"]),
        "drop-head": (["4"], ["3"]),
    }[overflow]
    assert (await bodies(ch, q), await bodies(ch, dlq)) == expected


async def test_max_length_bytes(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch, x_max_length_bytes=5)
    for body in ("abc", "de", "f"):
        await _publish(ch, q, body)
    await side.settle()
    assert await bodies(ch, q) == ["de", "f"]
    full = await _queue(side, ch, x_max_length_bytes=5, x_overflow="reject-publish")
    assert [await _publish(ch, full, b) for b in ("abc", "de", "f")] == ["ack", "ack", "nack"]


async def test_quorum_reject_publish_has_a_soft_limit(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch, "quorum", x_max_length=5, x_overflow="reject-publish")
    # accepted until it is over the limit (6 of 5), then refused...
    assert [await _publish(ch, q, str(i)) for i in range(7)] == ["ack"] * 6 + ["nack"]
    await ch.get(q, no_ack=True)
    await side.settle()
    assert await _publish(ch, q, "x") == "nack"  # ...until it is down to 80 % of it
    await ch.get(q, no_ack=True)
    await side.settle()
    assert await _publish(ch, q, "y") == "ack"


async def test_quorum_reject_publish_dlx_drops_the_head(side: Side) -> None:
    ch = await side.channel()
    dlq = await _queue(side, ch)
    q = await _queue(
        side,
        ch,
        "quorum",
        x_max_length=1,
        x_overflow="reject-publish-dlx",
        x_dead_letter_exchange="",
        x_dead_letter_routing_key=dlq,
    )
    assert [await _publish(ch, q, body) for body in "12"] == ["ack", "ack"]
    await side.settle()
    assert (await bodies(ch, q), await bodies(ch, dlq)) == (["2"], ["1"])


async def test_one_full_queue_nacks_a_publish_the_others_take(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("fan")
    await ch.declare_exchange(x, "fanout", durable=False)
    full = await _queue(side, ch, x_max_length=0, x_overflow="reject-publish")
    open_ = await _queue(side, ch)
    await ch.bind_queue(full, x)
    await ch.bind_queue(open_, x)
    assert await _publish(ch, "", "m", exchange=x) == "nack"  # mandatory, yet not returned
    assert await bodies(ch, open_) == ["m"]


async def test_transactions(side: Side) -> None:
    ch = await side.channel(confirms=False)
    reader = await side.channel()
    q = await _queue(side, reader)
    await ch.tx_select()
    await ch.publish(b"t1", Properties(), exchange="", routing_key=q)
    assert (await reader.declare_queue(q, passive=True)).message_count == 0  # not before commit
    await ch.tx_commit()
    await side.settle()
    assert (await reader.declare_queue(q, passive=True)).message_count == 1
    got = await ch.get(q)
    await ch.ack(got.delivery_tag)
    await ch.tx_rollback()  # the ack is undone: the message stays unacknowledged here
    await ch.publish(b"t2", Properties(), exchange="", routing_key=q)
    await ch.tx_rollback()
    await ch.tx_commit()
    await side.settle()
    assert (await reader.declare_queue(q, passive=True)).message_count == 0
    await ch.close()
    await side.settle()
    assert await bodies(reader, q) == ["t1"]


async def test_transaction_errors(side: Side) -> None:
    ch = await side.channel(confirms=False)
    with pytest.raises(PreconditionFailed) as caught:
        await ch.tx_commit()
    assert side.reply(caught.value) == "PRECONDITION_FAILED - channel is not transactional"
    ch = await side.channel(confirms=True)
    with pytest.raises(PreconditionFailed) as caught:
        await ch.tx_select()
    assert side.reply(caught.value) == "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    ch = await side.channel(confirms=False)
    await ch.tx_select()
    x = side.unique("missing")
    await ch.publish(b"m", Properties(), exchange=x, routing_key="k")
    with pytest.raises(Exception) as failed:
        await ch.tx_commit()
    assert side.reply(failed.value) == f"NOT_FOUND - no exchange '{x}' in vhost '/'"
    assert not ch.is_open


async def test_returns_without_confirms(broker: MemoryBroker, link: Any) -> None:
    """Returns of a channel without confirms go to ``on_return`` (from the loop); those of a
    transaction are reported at commit, before it returns (RabbitMQ sends them then: measured,
    the aiormq probe cannot show them)."""
    ch = await link.channel(confirms=False)
    returned: list[Returned] = []
    ch.on_return(returned.append)
    await ch.publish(b"m", Properties(message_id="a"), exchange="amq.direct", routing_key="no")
    await broker.advance(0)
    assert returned == [Returned("a", 312, "NO_ROUTE", "amq.direct", "no")]
    tx = await link.channel(confirms=False)
    tx_returned: list[Returned] = []
    tx.on_return(tx_returned.append)
    await tx.tx_select()
    await tx.publish(b"m", Properties(message_id="b"), exchange="amq.direct", routing_key="no")
    await tx.publish(
        b"m", Properties(message_id="c"), exchange="amq.direct", routing_key="no", mandatory=False
    )
    await broker.advance(0)
    assert tx_returned == []
    await tx.tx_commit()
    assert tx_returned == [Returned("b", 312, "NO_ROUTE", "amq.direct", "no")]


async def test_a_transaction_routes_at_publish_and_delivers_at_commit(
    broker: MemoryBroker, link: Any
) -> None:
    ch = await link.channel(confirms=False)
    await ch.declare_queue("q", durable=False)
    await ch.tx_select()
    await ch.publish(b"m", Properties(), exchange="", routing_key="q")
    await ch.delete_queue("q")
    await ch.declare_queue("q", durable=False)  # a new queue of the same name
    await ch.tx_commit()
    assert broker.message_count("q") == 0  # the routed-to queue is gone


async def test_confirmed_publish_errors_on_a_confirm_channel(side: Side) -> None:
    ch = await side.channel()
    with pytest.raises(EntityNotFound):
        await ch.publish(b"m", Properties(), exchange=side.unique("no"), routing_key="k")


async def test_a_transaction_into_a_full_reject_publish_queue_fails_after_the_rest_is_applied(
    side: Side,
) -> None:
    """RabbitMQ 3.10 (measured): the transaction's acks are applied and the messages before the
    refused one delivered, then the commit fails with 406 ``partial tx completion`` and the
    channel closes; the refused message is nowhere (the publisher learns it from the error, not
    silently)."""
    ch = await side.channel()
    full = await _queue(side, ch, x_max_length=1, x_overflow="reject-publish")
    other, source = await _queue(side, ch), await _queue(side, ch)
    await _publish(ch, full, "0")
    await _publish(ch, source, "s")
    tx = await side.channel(confirms=False)
    await tx.tx_select()
    got = await tx.get(source)
    await tx.ack(got.delivery_tag)
    # "2" first: RabbitMQ may leave out what comes after the refused message (measured)
    await tx.publish(b"2", Properties(), exchange="", routing_key=other)
    await tx.publish(b"1", Properties(), exchange="", routing_key=full)
    with pytest.raises(PreconditionFailed) as caught:
        await tx.tx_commit()
    assert side.reply(caught.value) == "PRECONDITION_FAILED - partial tx completion"
    await side.settle()
    assert not tx.is_open
    assert await bodies(ch, full) == ["0"]
    assert await bodies(ch, other) == ["2"]
    assert await bodies(ch, source) == []  # the ack was applied


async def test_header_values_arrive_as_the_client_writes_them(side: Side) -> None:
    """A float is written as a 32-bit float, a decimal with a 32-bit unscaled value (a positive
    exponent multiplied out); a byte array stays one. What the client cannot write is refused
    before anything reaches the broker."""
    ch = await side.channel()
    q = await _queue(side, ch)
    headers: dict[str, Any] = {
        "float": 0.1,
        "thousand": Decimal("1E+3"),
        "price": Decimal("1.50"),
        "raw": bytearray(b"\x00\xff"),
        "nested": [1.5, {"d": Decimal("-0.001")}],
    }
    await ch.publish(b"m", Properties(headers=headers), exchange="", routing_key=q)
    (got,) = await drain(ch, q)
    assert got.properties.headers == {
        "float": struct.unpack(">f", struct.pack(">f", 0.1))[0],
        "thousand": Decimal("1000"),
        "price": Decimal("1.50"),
        "raw": bytearray(b"\x00\xff"),
        "nested": [1.5, {"d": Decimal("-0.001")}],
    }
    assert str(got.properties.headers["thousand"]) == "1000"
    assert type(got.properties.headers["raw"]) is bytearray
    for refused in (b"bytes", (1, 2), 1e300, Decimal("3.14159265358979")):
        sender = await side.channel()
        with pytest.raises(MmateError):
            await sender.publish(
                b"m", Properties(headers={"h": refused}), exchange="", routing_key=q
            )
    assert await bodies(ch, q) == []


async def test_unbinding_another_connection_s_exclusive_queue_is_refused(side: Side) -> None:
    owner = await side.channel()
    q = (await owner.declare_queue(side.unique("excl"), exclusive=True, durable=False)).name
    await owner.bind_queue(q, "amq.direct", routing_key="k")
    stranger = await side.channel(link=await side.link())
    with pytest.raises(ResourceLocked):
        await stranger.unbind_queue(q, "amq.direct", routing_key="k")
    await owner.publish(b"m", Properties(), exchange="amq.direct", routing_key="k")
    assert await bodies(owner, q) == ["m"]  # still bound
