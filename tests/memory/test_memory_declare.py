"""Declarations, on the memory broker and on RabbitMQ: 404 for a missing entity, 406 for a
redeclaration that differs (compared the way RabbitMQ compares), 403 and 405, each closing the
channel it happened on with RabbitMQ's own reply text."""

from __future__ import annotations

from typing import Any

import pytest
from mmate._transport.base import Properties
from mmate.errors import (
    AccessRefused,
    ChannelClosed,
    EntityNotFound,
    PreconditionFailed,
    ResourceLocked,
)
from sides import Side

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It "
    "could be originally declared on another connection or the exclusive property value does "
    "not match that of the original declaration."
)


async def _fails(side: Side, kind: type[Exception], call: Any, channel: Any) -> str:
    """Run ``call``; it must raise ``kind`` and close ``channel``; returns the reply text."""
    with pytest.raises(kind) as caught:
        await call
    assert not channel.is_open
    with pytest.raises(ChannelClosed):
        await channel.declare_queue("", exclusive=True, durable=False)
    return side.reply(caught.value)


async def test_missing_entities_are_404(side: Side) -> None:
    cases = [
        ("declare_queue", {"passive": True}, "no queue '{name}'"),
        ("declare_exchange", {"passive": True}, "no exchange '{name}'"),
        ("purge_queue", {}, "no queue '{name}'"),
        ("get", {}, "no queue '{name}'"),
    ]
    for method, kwargs, text in cases:
        ch = await side.channel()
        name = side.unique("missing")
        reply = await _fails(side, EntityNotFound, getattr(ch, method)(name, **kwargs), ch)
        assert reply == f"NOT_FOUND - {text.format(name=name)} in vhost '/'"
    ch = await side.channel()
    name = side.unique("missing")
    reply = await _fails(side, EntityNotFound, ch.consume(name, lambda d: None), ch)
    assert reply == f"NOT_FOUND - no queue '{name}' in vhost '/'"


async def test_deleting_what_is_missing_is_fine(side: Side) -> None:
    ch = await side.channel()
    assert await ch.delete_queue(side.unique("missing")) == 0
    await ch.delete_exchange(side.unique("missing"))
    await ch.unbind_queue(side.unique("missing"), side.unique("missing"), "k")
    assert ch.is_open


async def test_bind_checks_the_exchange_then_the_queue(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    x = side.unique("x")
    reply = await _fails(side, EntityNotFound, ch.bind_queue(side.unique("nq"), x, "k"), ch)
    assert reply == f"NOT_FOUND - no exchange '{x}' in vhost '/'"
    ch = await side.channel()
    await ch.declare_exchange(x, "topic", durable=False)
    missing = side.unique("nq")
    reply = await _fails(side, EntityNotFound, ch.bind_queue(missing, x, "k"), ch)
    assert reply == f"NOT_FOUND - no queue '{missing}' in vhost '/'"
    ch = await side.channel()
    reply = await _fails(side, EntityNotFound, ch.bind_exchange(x, missing, "k"), ch)
    assert reply == f"NOT_FOUND - no exchange '{missing}' in vhost '/'"
    ch = await side.channel()
    reply = await _fails(side, AccessRefused, ch.bind_queue(q, "", "k"), ch)
    assert reply == "ACCESS_REFUSED - operation not permitted on the default exchange"


async def test_publishing_to_a_missing_exchange_closes_the_channel(side: Side) -> None:
    x = side.unique("missing")
    ch = await side.channel(confirms=True)
    reply = await _fails(
        side, EntityNotFound, ch.publish(b"m", Properties(), exchange=x, routing_key="k"), ch
    )
    assert reply == f"NOT_FOUND - no exchange '{x}' in vhost '/'"
    # without confirms the publish returns; the channel closes afterwards (basic.publish has
    # no reply)
    ch = await side.channel(confirms=False)
    closed: list[Any] = []
    ch.on_close(closed.append)
    await ch.publish(b"m", Properties(), exchange=x, routing_key="k")
    reason = await ch.wait_closed(2)
    assert isinstance(reason, EntityNotFound)
    with pytest.raises(ChannelClosed) as later:
        await ch.declare_queue("", exclusive=True, durable=False)
    assert later.value.reply_code == 404
    assert side.reply(later.value) == f"NOT_FOUND - no exchange '{x}' in vhost '/'"
    await side.settle()
    assert len(closed) == 1 and isinstance(closed[0], EntityNotFound)


INEQUIVALENT = "PRECONDITION_FAILED - inequivalent arg '{key}' for queue '{q}' in vhost '/': {rest}"


@pytest.mark.parametrize(
    ("first", "again", "key", "rest"),
    [
        (
            {"x-message-ttl": 100},
            {"x-message-ttl": 200},
            "x-message-ttl",
            "received '200' but current is '100'",
        ),
        (
            {"x-message-ttl": 100},
            {"x-message-ttl": "100"},
            "x-message-ttl",
            "received '100' but current is '100'",
        ),  # an int is not a string
        (
            {"x-message-ttl": 100},
            {"x-message-ttl": 100.0},
            "x-message-ttl",
            "received '100.0' but current is '100'",
        ),
        (
            {"x-max-length": 5},
            {"x-max-length": True},
            "x-max-length",
            "received 'true' but current is '5'",
        ),
        (
            {"x-max-length": 5},
            {},
            "x-max-length",
            "received none but current is the value '5' of type 'byte'",
        ),
        (
            {},
            {"x-expires": 100000},
            "x-expires",
            "received the value '100000' of type 'signedint' but current is none",
        ),
        (
            {},
            {"x-single-active-consumer": False},
            "x-single-active-consumer",
            "received the value 'false' of type 'bool' but current is none",
        ),
        (
            {},
            {"x-queue-type": "quorum"},
            "x-queue-type",
            "received the value 'quorum' of type 'longstr' but current is none",
        ),
    ],
)
async def test_a_classic_redeclaration_compares_arguments_like_rabbitmq(
    side: Side, first: dict[str, Any], again: dict[str, Any], key: str, rest: str
) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), arguments=first)).name
    reply = await _fails(side, PreconditionFailed, ch.declare_queue(q, arguments=again), ch)
    assert reply == INEQUIVALENT.format(key=key, q=q, rest=rest)


async def test_what_a_classic_redeclaration_ignores(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), arguments={"x-message-ttl": 100})).name
    for extra in (
        {"foo": 1},
        {"x-delivery-limit": 3},
        {"x-dead-letter-strategy": "at-most-once"},
        {"x-queue-type": "classic"},
        {"x-max-age": "1D"},
    ):
        info = await ch.declare_queue(q, arguments={"x-message-ttl": 100, **extra})
        assert info.name == q
    # the same integer of another width is the same value
    await ch.declare_queue(q, arguments={"x-message-ttl": 100})
    # a passive check ignores everything but the name
    await ch.declare_queue(q, passive=True, durable=False, arguments={"x-message-ttl": 9})
    assert ch.is_open


async def test_durable_and_auto_delete_are_compared(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=True)).name
    reply = await _fails(side, PreconditionFailed, ch.declare_queue(q, durable=False), ch)
    assert reply == INEQUIVALENT.format(
        key="durable", q=q, rest="received 'false' but current is 'true'"
    )
    ch = await side.channel()
    reply = await _fails(side, PreconditionFailed, ch.declare_queue(q, auto_delete=True), ch)
    assert reply == INEQUIVALENT.format(
        key="auto_delete", q=q, rest="received 'true' but current is 'false'"
    )


async def test_a_quorum_redeclaration_compares_its_own_arguments(side: Side) -> None:
    ch = await side.channel()
    args = {"x-queue-type": "quorum", "x-delivery-limit": 3}
    q = (await ch.declare_queue(side.unique("qq"), arguments=args)).name
    await ch.declare_queue(q, arguments={**args, "x-max-priority": 3, "x-queue-mode": "lazy"})
    for again, key, rest in (
        (
            {"x-delivery-limit": 3},
            "x-queue-type",
            "received none but current is the value 'quorum' of type 'longstr'",
        ),
        ({**args, "x-delivery-limit": 4}, "x-delivery-limit", "received '4' but current is '3'"),
        (
            {**args, "x-dead-letter-strategy": "at-most-once"},
            "x-dead-letter-strategy",
            "received the value 'at-most-once' of type 'longstr' but current is none",
        ),
        (
            {"x-queue-type": "classic", "x-delivery-limit": 3},
            "x-queue-type",
            "received 'classic' but current is 'quorum'",
        ),
    ):
        ch = await side.channel()
        reply = await _fails(side, PreconditionFailed, ch.declare_queue(q, arguments=again), ch)
        assert reply == INEQUIVALENT.format(key=key, q=q, rest=rest)


async def test_the_first_difference_in_rabbitmqs_order_is_reported(side: Side) -> None:
    ch = await side.channel()
    args = {
        "x-message-ttl": 1,
        "x-max-length": 1,
        "x-overflow": "drop-head",
        "x-dead-letter-exchange": "a",
        "x-expires": 100000,
        "x-max-priority": 2,
    }
    q = (await ch.declare_queue(side.unique("q"), arguments=args)).name
    keys = [
        "x-expires",
        "x-message-ttl",
        "x-dead-letter-exchange",
        "x-max-length",
        "x-max-priority",
        "x-overflow",
    ]
    for index, key in enumerate(keys):
        given = {k: args[k] for k in keys[:index]}
        ch = await side.channel()
        reply = await _fails(side, PreconditionFailed, ch.declare_queue(q, arguments=given), ch)
        assert f"inequivalent arg '{key}'" in reply


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"x-message-ttl": -1}, ": {value_negative,-1}"),
        ({"x-message-ttl": "100"}, ': "expected integer, got longstr"'),
        ({"x-message-ttl": 1.5}, ': "expected integer, got float"'),
        ({"x-message-ttl": 315360000001}, ": {value_too_large,315360000001}"),
        ({"x-expires": 0}, ": {value_zero,0}"),
        ({"x-max-priority": 300}, ": {max_value_exceeded,300}"),
        ({"x-max-length": -1}, ": {value_negative,-1}"),
        ({"x-overflow": "bogus"}, ": invalid_overflow"),
        ({"x-single-active-consumer": "true"}, ": {unacceptable_type,longstr}"),
        ({"x-queue-type": "bogus"}, ": \"unsupported queue type 'bogus'\""),
        ({"x-dead-letter-routing-key": "a"}, ": routing_key_but_no_dlx_defined"),
        ({"x-delivery-limit": 3}, " of queue type rabbit_classic_queue"),
        ({"x-queue-type": "quorum", "x-max-priority": 5}, " of queue type rabbit_quorum_queue"),
        ({"x-queue-type": "quorum", "x-dead-letter-strategy": "bogus"}, ": invalid_dlx_strategy"),
    ],
)
async def test_invalid_arguments_of_a_new_queue(
    side: Side, arguments: dict[str, Any], problem: str
) -> None:
    ch = await side.channel()
    q = side.unique("q")
    reply = await _fails(side, PreconditionFailed, ch.declare_queue(q, arguments=arguments), ch)
    key = next(k for k in arguments if k != "x-queue-type" or len(arguments) == 1)
    assert reply == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/'{problem}"
    )


async def test_quorum_queues_are_durable_and_not_exclusive_or_auto_delete(side: Side) -> None:
    for kwargs, prop in (
        ({"durable": False}, "non-durable"),
        ({"auto_delete": True}, "auto-delete"),
        ({"exclusive": True}, "exclusive-owner"),
    ):
        ch = await side.channel()
        q = side.unique("qq")
        call = ch.declare_queue(q, arguments={"x-queue-type": "quorum"}, **kwargs)
        reply = await _fails(side, PreconditionFailed, call, ch)
        assert (
            reply == f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{q}' in vhost '/'"
        )


async def test_reserved_names_and_the_default_exchange(side: Side) -> None:
    ch = await side.channel()
    reply = await _fails(side, AccessRefused, ch.declare_queue("amq.mine"), ch)
    assert reply == "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'"
    ch = await side.channel()
    reply = await _fails(side, AccessRefused, ch.declare_exchange("amq.mine", "topic"), ch)
    assert reply == "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'"
    ch = await side.channel()
    reply = await _fails(side, AccessRefused, ch.declare_exchange("", "direct"), ch)
    assert reply == "ACCESS_REFUSED - operation not permitted on the default exchange"
    ch = await side.channel()
    reply = await _fails(side, AccessRefused, ch.delete_exchange("amq.direct"), ch)
    assert (
        reply
        == "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    )
    ch = await side.channel()
    await ch.declare_exchange("amq.topic", "topic", durable=True)  # equivalent: fine
    await ch.declare_exchange("amq.match", "headers", passive=True)
    server_named = await ch.declare_queue("", exclusive=True, durable=False)
    assert server_named.name.startswith("amq.gen-") and len(server_named.name) == 30


async def test_exchange_redeclaration(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("x")
    await ch.declare_exchange(x, "topic", durable=True)
    await ch.declare_exchange(x, "topic", durable=True, arguments={"foo": 1})  # ignored
    await ch.declare_exchange(x, "direct", passive=True)  # passive ignores the type
    text = "PRECONDITION_FAILED - inequivalent arg '{k}' for exchange '" + x + "' in vhost '/': {r}"
    for kwargs, key, rest in (
        ({"type": "direct"}, "type", "received 'direct' but current is 'topic'"),
        ({"durable": False}, "durable", "received 'false' but current is 'true'"),
        ({"auto_delete": True}, "auto_delete", "received 'true' but current is 'false'"),
        (
            {"arguments": {"alternate-exchange": "a"}},
            "alternate-exchange",
            "received the value 'a' of type 'longstr' but current is none",
        ),
    ):
        ch = await side.channel()
        call = ch.declare_exchange(x, **{"type": "topic", "durable": True, **kwargs})
        assert await _fails(side, PreconditionFailed, call, ch) == text.format(k=key, r=rest)


async def test_an_exclusive_queue_belongs_to_its_link(side: Side) -> None:
    owner = await side.link()
    other = await side.link()
    ch = await side.channel(link=owner)
    q = (await ch.declare_queue(side.unique("ex"), exclusive=True, durable=False)).name
    for call in (
        lambda c: c.declare_queue(q, passive=True),
        lambda c: c.declare_queue(q, exclusive=True, durable=False),
        lambda c: c.consume(q, lambda d: None),
        lambda c: c.get(q),
        lambda c: c.purge_queue(q),
        lambda c: c.bind_queue(q, "amq.direct", "k"),
        lambda c: c.delete_queue(q),
    ):
        c = await side.channel(link=other)
        assert await _fails(side, ResourceLocked, call(c), c) == LOCKED.format(q=q)
    c = await side.channel(link=other)
    await c.unbind_queue(q, "amq.direct", "k")  # RabbitMQ lets that through (no such binding)
    await c.publish(b"m", Properties(), exchange="", routing_key=q)  # and publishing to it
    # the owner may not redeclare it as a shared queue either
    c = await side.channel(link=owner)
    assert await _fails(side, ResourceLocked, c.declare_queue(q, durable=False), c) == (
        LOCKED.format(q=q)
    )
    # it survives its channel, and goes with its link
    await ch.close()
    c = await side.channel(link=owner)
    assert (await c.declare_queue(q, passive=True)).message_count == 1
    await owner.close()
    c = await side.channel(link=other)
    with pytest.raises(EntityNotFound):
        await c.declare_queue(q, passive=True)


async def test_exclusive_consumers(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    await ch.consume(q, lambda d: None, exclusive=True)
    text = f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"
    c = await side.channel()
    assert await _fails(side, AccessRefused, c.consume(q, lambda d: None), c) == text
    c = await side.channel()
    q2 = (await c.declare_queue(side.unique("q"), durable=False)).name
    await c.consume(q2, lambda d: None)
    assert await _fails(side, AccessRefused, c.consume(q2, lambda d: None, exclusive=True), c) == (
        f"ACCESS_REFUSED - queue '{q2}' in vhost '/' in exclusive use"
    )


async def test_auto_delete_queues_and_exchanges(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("ad"), durable=False, auto_delete=True)).name
    await side.settle()
    await ch.declare_queue(q, passive=True)  # no consumer yet: it stays
    one = await ch.consume(q, lambda d: None)
    two = await ch.consume(q, lambda d: None)
    await ch.cancel(one)
    await ch.declare_queue(q, passive=True)
    await ch.cancel(two)
    await side.settle()
    with pytest.raises(EntityNotFound):
        await ch.declare_queue(q, passive=True)
    # or when the channel of its last consumer closes
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("ad"), durable=False, auto_delete=True)).name
    await ch.consume(q, lambda d: None)
    await ch.close()
    await side.settle()
    ch = await side.channel()
    with pytest.raises(EntityNotFound):
        await ch.declare_queue(q, passive=True)
    # an auto-delete exchange goes with its last binding (as the source)
    ch = await side.channel()
    x = side.unique("adx")
    await ch.declare_exchange(x, "topic", durable=False, auto_delete=True)
    bound = (await ch.declare_queue(side.unique("q"), durable=False)).name
    await ch.declare_exchange(x, "topic", passive=True)
    await ch.bind_queue(bound, x, "a")
    await ch.bind_queue(bound, x, "b")
    await ch.unbind_queue(bound, x, "a")
    await ch.declare_exchange(x, "topic", passive=True)
    await ch.delete_queue(bound)  # its bindings go with it
    with pytest.raises(EntityNotFound):
        await ch.declare_exchange(x, "topic", passive=True)


async def test_deleting_a_queue_cancels_its_consumers(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    for body in (b"1", b"2", b"3"):
        await ch.publish(body, Properties(), exchange="", routing_key=q)
    got = await ch.get(q)
    consumer_channel = await side.channel()
    cancelled: list[str] = []
    consumer_channel.on_cancel(cancelled.append)
    deliveries: list[Any] = []
    tag = await consumer_channel.consume(q, deliveries.append)
    await side.settle()
    assert len(deliveries) == 2
    other = await side.channel()
    assert await other.delete_queue(q) == 0  # the ready count: every message was out
    await side.settle()
    assert cancelled == [tag]
    await ch.ack(got.delivery_tag)  # settling a message of a deleted queue is fine
    await consumer_channel.nack(deliveries[0].delivery_tag, requeue=True)
    await side.settle()
    assert ch.is_open and consumer_channel.is_open
