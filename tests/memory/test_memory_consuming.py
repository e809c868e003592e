"""Consuming, on the memory broker and on RabbitMQ: delivery tags, prefetch (per consumer, as
RabbitMQ applies ``basic.qos``), requeue order of classic and quorum queues, the redelivered flag
and ``x-delivery-count``, settling with ``multiple``, single active consumer failover, priority
and the delivery limit."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from mmate._transport.base import Delivery, Properties
from mmate.errors import ChannelClosed
from sides import Side, drain


async def _queue(side: Side, ch: Any, kind: str = "classic", **arguments: Any) -> str:
    args = {"x-queue-type": kind, **{k.replace("_", "-"): v for k, v in arguments.items()}}
    return (await ch.declare_queue(side.unique(kind), arguments=args)).name


async def _fill(ch: Any, queue: str, *bodies: str, **props: Any) -> None:
    for body in bodies:
        await ch.publish(body.encode(), Properties(**props), exchange="", routing_key=queue)


def _seen(deliveries: list[Delivery]) -> list[tuple[str, bool, Any]]:
    return [(d.body.decode(), d.redelivered, d.headers.get("x-delivery-count")) for d in deliveries]


async def test_deliveries_are_asynchronous_in_order_with_tags_per_channel(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch)
    got: list[Delivery] = []
    await ch.consume(q, got.append)
    await _fill(ch, q, "1", "2", "3")
    await side.settle()
    assert [(d.body, d.delivery_tag) for d in got] == [(b"1", 1), (b"2", 2), (b"3", 3)]
    assert all(d.channel is ch and d.consumer_tag for d in got)


async def test_a_delivery_is_never_handed_over_inside_the_publish(side: Side) -> None:
    if not side.memory:
        pytest.skip("a property of the memory broker's scheduling")
    ch = await side.channel()
    q = await _queue(side, ch)
    stacks: list[list[str]] = []
    await ch.consume(q, lambda d: stacks.append([f.function for f in inspect.stack()]))
    await ch.publish(b"m", Properties(), exchange="", routing_key=q)
    await side.settle()
    assert len(stacks) == 1
    assert "publish" not in stacks[0]  # called from the event loop, not from inside publish


async def test_prefetch_applies_to_each_consumer_started_afterwards(side: Side) -> None:
    ch = await side.channel()
    q1, q2, q3 = [await _queue(side, ch) for _ in range(3)]
    for q in (q1, q2, q3):
        await _fill(ch, q, *"12345")
    await ch.qos(2)
    got: dict[str, list[Delivery]] = {q1: [], q2: [], q3: []}
    await ch.consume(q1, got[q1].append)
    await ch.consume(q2, got[q2].append)
    await side.settle()
    assert (len(got[q1]), len(got[q2])) == (2, 2)  # two each: per consumer, not per channel
    other = await side.channel()
    await other.consume(q3, got[q3].append)
    await other.qos(1)  # a later qos does not change a running consumer
    await side.settle()
    assert len(got[q3]) == 5
    await ch.ack(got[q1][0].delivery_tag)
    await side.settle()
    assert len(got[q1]) == 3


@pytest.mark.parametrize(
    ("kind", "after_nacks", "after_close"),
    [
        (
            "classic",
            [("1", True, None), ("4", True, None)],
            [("3", True, None), ("5", True, None), ("6", False, None)],
        ),
        (
            "quorum",
            [("4", True, 1), ("1", True, 1)],
            [("3", True, 1), ("5", True, 1), ("6", False, 0)],
        ),
    ],
)
async def test_requeue_order(
    side: Side, kind: str, after_nacks: list[Any], after_close: list[Any]
) -> None:
    ch = await side.channel()
    q = await _queue(side, ch, kind)
    await _fill(ch, q, *"12345")
    tags = {}
    for _ in range(5):
        delivery = await ch.get(q)
        tags[delivery.body.decode()] = delivery.delivery_tag
    await ch.ack(tags["2"])
    await ch.nack(tags["4"], requeue=True)
    await ch.nack(tags["1"], requeue=True)
    await side.settle()
    reader = await side.channel()
    assert _seen(await drain(reader, q)) == after_nacks
    await _fill(reader, q, "6")
    await ch.close()  # 3 and 5 are still unacknowledged there
    await side.settle()
    assert _seen(await drain(reader, q)) == after_close


async def test_settling_many_at_once(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch)
    await _fill(ch, q, *"1234")
    tags = [(await ch.get(q)).delivery_tag for _ in range(4)]
    assert tags == [1, 2, 3, 4]
    await ch.nack(tags[2], multiple=True, requeue=True)  # 1, 2, 3
    await ch.ack(tags[3])
    await side.settle()
    assert [d.body for d in await drain(ch, q)] == [b"1", b"2", b"3"]
    await _fill(ch, q, "a", "b")
    assert await ch.get(q) is not None and await ch.get(q) is not None
    await ch.ack(0, multiple=True)  # everything
    await side.settle()
    assert ch.is_open and (await ch.declare_queue(q, passive=True)).message_count == 0


@pytest.mark.parametrize("how", ["unknown", "twice", "multiple past the last"])
async def test_an_unknown_delivery_tag_closes_the_channel(side: Side, how: str) -> None:
    ch = await side.channel()
    q = await _queue(side, ch)
    await _fill(ch, q, "m")
    delivery = await ch.get(q)
    if how == "unknown":
        await ch.ack(delivery.delivery_tag + 5)
    elif how == "twice":
        await ch.ack(delivery.delivery_tag)
        await ch.ack(delivery.delivery_tag)
    else:
        await ch.nack(delivery.delivery_tag + 1, multiple=True)
    reason = await ch.wait_closed(2)
    tag = delivery.delivery_tag + (5 if how == "unknown" else 1 if how != "twice" else 0)
    assert side.reply(reason) == f"PRECONDITION_FAILED - unknown delivery tag {tag}"
    with pytest.raises(ChannelClosed) as later:
        await ch.get(q)
    assert later.value.reply_code == 406
    reader = await side.channel()
    left = len(await drain(reader, q))
    assert left == (0 if how == "twice" else 1)  # the unacknowledged one came back


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_single_active_consumer_fails_over(side: Side, kind: str) -> None:
    ch = await side.channel()
    q = await _queue(side, ch, kind, x_single_active_consumer=True)
    got: list[tuple[str, str]] = []
    a_channel, b_channel = await side.channel(), await side.channel()
    await a_channel.qos(1)
    await b_channel.qos(1)
    a = await a_channel.consume(q, lambda d: got.append(("A", d.body.decode())))
    await b_channel.consume(
        q, lambda d: (got.append(("B", d.body.decode())), _ack_later(b_channel, d))
    )
    await _fill(ch, q, *"012")
    await side.settle()
    assert got == [("A", "0")]  # only the first consumer gets messages
    info = await ch.declare_queue(q, passive=True)
    assert info.consumer_count == (2 if kind == "classic" else 1)  # quorum counts the active one
    await a_channel.cancel(a)  # A still holds "0"
    await side.settle()
    if kind == "classic":
        # RabbitMQ 3.10 does not hand the waiting messages to B when A is cancelled while it
        # holds one (and its classic queue process crashes if a publish then reaches B; see
        # docs/testing.md), so the old consumer's channel is closed first
        assert got == [("A", "0")]
    else:
        assert got == [("A", "0"), ("B", "1"), ("B", "2")]
    await a_channel.close()  # "0" goes back, to B
    await side.settle()
    if kind == "classic":  # back in its original place: first
        assert got == [("A", "0"), ("B", "0"), ("B", "1"), ("B", "2")]
    else:  # given back: after the others B already had
        assert got == [("A", "0"), ("B", "1"), ("B", "2"), ("B", "0")]


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_single_active_consumer_hands_over_when_the_old_one_acked_and_closed(
    side: Side, kind: str
) -> None:
    # What a consumer that stops cleanly does: cancel, finish and ack what it holds, close. The
    # classic queue then waits for the close (with nothing left to give back) before it delivers
    # to the next consumer; a queue that waited for more than that would never deliver again.
    ch = await side.channel()
    q = await _queue(side, ch, kind, x_single_active_consumer=True)
    held: list[Delivery] = []
    got: list[tuple[str, str]] = []
    a_channel, b_channel = await side.channel(), await side.channel()
    await a_channel.qos(1)
    await b_channel.qos(1)
    a = await a_channel.consume(q, lambda d: (got.append(("A", d.body.decode())), held.append(d)))
    await b_channel.consume(
        q, lambda d: (got.append(("B", d.body.decode())), _ack_later(b_channel, d))
    )
    await _fill(ch, q, *"012")
    await side.settle()
    await a_channel.cancel(a)
    await a_channel.ack(held[0].delivery_tag)
    await side.settle()
    if kind == "classic":
        assert got == [("A", "0")]  # still waiting for A's channel
    else:
        assert got == [("A", "0"), ("B", "1"), ("B", "2")]
    await a_channel.close()
    await side.settle()
    assert got == [("A", "0"), ("B", "1"), ("B", "2")]


_pending: set[Any] = set()


def _ack_later(channel: Any, delivery: Delivery) -> None:
    import asyncio

    task = asyncio.get_running_loop().create_task(channel.ack(delivery.delivery_tag))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def test_priority_order_and_requeue_within_it(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch, x_max_priority=5)
    for body, priority in [("a", None), ("b", 3), ("c", 9), ("d", 0), ("e", 5), ("f", 3)]:
        await ch.publish(body.encode(), Properties(priority=priority), exchange="", routing_key=q)
    first, second = await ch.get(q), await ch.get(q)
    assert (first.body, first.properties.priority, second.body) == (b"c", 9, b"e")
    await ch.nack(first.delivery_tag, requeue=True)
    await ch.nack(second.delivery_tag, requeue=True)
    await side.settle()
    assert [d.body.decode() for d in await drain(ch, q)] == list("cebfad")
    plain = await _queue(side, ch)
    for body, priority in [("a", None), ("b", 3), ("c", 9)]:
        await ch.publish(
            body.encode(), Properties(priority=priority), exchange="", routing_key=plain
        )
    assert [d.body.decode() for d in await drain(ch, plain)] == list("abc")


async def test_quorum_delivery_count_on_consume_and_the_limit(side: Side) -> None:
    ch = await side.channel()
    dead = await _queue(side, ch)
    q = await _queue(
        side,
        ch,
        "quorum",
        x_delivery_limit=1,
        x_dead_letter_exchange="",
        x_dead_letter_routing_key=dead,
    )
    got: list[Delivery] = []
    consumer = await side.channel()
    await consumer.qos(1)

    def nack(delivery: Delivery) -> None:
        got.append(delivery)
        import asyncio

        task = asyncio.get_running_loop().create_task(consumer.nack(delivery.delivery_tag))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    await consumer.consume(q, nack)
    await _fill(ch, q, "m")
    for _ in range(4):
        await side.settle()
    # no header on a first consumed delivery (a get shows 0), then 1; the limit of 1 then
    # dead-letters it
    assert _seen(got) == [("m", False, None), ("m", True, 1)]
    (letter,) = await drain(ch, dead)
    assert letter.headers["x-death"][0]["reason"] == "delivery_limit"


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_length_limits_count_ready_messages_only(side: Side, kind: str) -> None:
    ch = await side.channel()
    q = await _queue(side, ch, kind, x_max_length=2)
    await _fill(ch, q, "1", "2")
    one, two = await ch.get(q), await ch.get(q)
    await _fill(ch, q, "3", "4", "5")  # "3" is dropped from the head
    await side.settle()
    assert (await ch.declare_queue(q, passive=True)).message_count == 2
    await ch.nack(one.delivery_tag, requeue=True)
    await ch.nack(two.delivery_tag, requeue=True)
    await side.settle()
    # over the limit again: a classic queue drops its head (the requeued 1 and 2 are back in
    # front), a quorum queue drops the oldest message never given back first
    expected = ["4", "5"] if kind == "classic" else ["1", "2"]
    assert [d.body.decode() for d in await drain(ch, q)] == expected


async def test_no_ack_consumers_and_empty_gets(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch)
    assert await ch.get(q) is None
    got: list[Delivery] = []
    tag = await ch.consume(q, got.append, no_ack=True)
    await _fill(ch, q, "1", "2")
    await side.settle()
    await ch.cancel(tag)
    await ch.close()
    reader = await side.channel()
    assert [d.body for d in got] == [b"1", b"2"]
    assert await drain(reader, q) == []  # no-ack deliveries were settled when sent


async def test_consumer_priority(side: Side) -> None:
    ch = await side.channel()
    q = await _queue(side, ch)
    got: list[str] = []
    low, high = await side.channel(), await side.channel()
    await low.qos(1)
    await high.qos(2)
    await low.consume(q, lambda d: got.append("low"))
    await high.consume(q, lambda d: got.append("high"), arguments={"x-priority": 10})
    await _fill(ch, q, *"1234")
    await side.settle()
    assert sorted(got) == ["high", "high", "low"]  # the higher first, until it has no room
    assert got[:2] == ["high", "high"]


async def test_wait_closed_times_out_on_an_open_channel(side: Side) -> None:
    ch = await side.channel()
    if side.memory:
        with pytest.raises(TimeoutError):
            await ch.wait_closed(0.01)
    await ch.close()
    assert await ch.wait_closed(1) is None
