"""Batched acks (``mmate.acks``): a ``multiple`` ack never covers a message whose handler has not
finished, a slow handler never holds the others' acks back for long, and an idle consumer's acks
wait only a short linger (no broker needed)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from mmate._consuming.acks import Acker


class FakeChannel:
    """Records acks and checks them the way RabbitMQ does (an acked tag must be outstanding)."""

    def __init__(self, delivered: int) -> None:
        self.outstanding = set(range(1, delivered + 1))
        self.acked: set[int] = set()
        self.frames: list[tuple[int, bool]] = []
        self.is_open = True

    async def ack(self, tag: int, *, multiple: bool = False) -> None:
        await asyncio.sleep(0)  # a write that yields, as aiormq's does
        assert tag in self.outstanding, f"unknown delivery tag {tag}"
        covered = {t for t in self.outstanding if t <= tag} if multiple else {tag}
        self.outstanding -= covered
        self.acked |= covered
        self.frames.append((tag, multiple))


def acker(channel: FakeChannel, batch: int, linger: float = 0.0) -> Acker:
    fake: Any = channel
    return Acker(fake, batch, queue="orders", linger=linger)


async def lingered() -> None:
    """Let a zero linger timer fire and its flush finish."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_in_order_finishes_are_acked_in_batches_with_multiple() -> None:
    channel = FakeChannel(100)
    acks = acker(channel, 25)
    for tag in range(1, 101):
        await acks.ok(tag, idle=tag == 100)
    await lingered()
    assert channel.acked == set(range(1, 101))
    assert channel.frames == [(25, True), (50, True), (75, True), (100, True)]


async def test_a_multiple_ack_never_covers_an_unfinished_message() -> None:
    channel = FakeChannel(60)
    acks = acker(channel, 5)
    finished: set[int] = set()
    order = list(range(1, 61))
    random.Random(7).shuffle(order)
    for tag in order[:-1]:
        await acks.ok(tag, idle=False)
        finished.add(tag)
        assert channel.acked <= finished  # nothing acked before its handler finished
    await acks.ok(order[-1], idle=True)
    await lingered()
    assert channel.acked == set(range(1, 61))


async def test_a_slow_handler_does_not_hold_back_the_others() -> None:
    channel = FakeChannel(20)
    acks = acker(channel, 4)
    for tag in range(2, 6):  # tag 1 still runs
        await acks.ok(tag, idle=False)
    assert channel.acked == {2, 3, 4, 5}  # acked one by one once a batch of them waited
    assert 1 in channel.outstanding
    await acks.ok(6, idle=True)  # nothing else buffered: acked after the linger
    await lingered()
    assert channel.acked == {2, 3, 4, 5, 6}
    await acks.ok(1, idle=True)
    await lingered()
    assert channel.acked == set(range(1, 7))
    assert channel.frames[-1] == (1, True)


async def test_nacked_messages_are_skipped_and_flush_sends_the_rest() -> None:
    channel = FakeChannel(10)
    acks = acker(channel, 100)
    await acks.ok(1, idle=False)
    channel.outstanding.discard(2)  # nacked by the consumer, then reported
    acks.other(2)
    await acks.ok(3, idle=False)
    await acks.ok(5, idle=False)  # 4 still runs
    assert channel.frames == []
    await acks.flush()
    assert channel.acked == {1, 3, 5} and 4 in channel.outstanding


async def test_concurrent_finishes_keep_acks_valid() -> None:
    channel = FakeChannel(500)
    acks = acker(channel, 7)
    rng = random.Random(3)

    async def handler(tag: int) -> None:
        await asyncio.sleep(rng.random() / 1000)
        await acks.ok(tag, idle=False)

    await asyncio.gather(*(handler(t) for t in range(1, 501)))
    await acks.flush()
    assert channel.acked == set(range(1, 501))


async def test_batch_of_one_acks_each_message_alone() -> None:
    channel = FakeChannel(3)
    acks = acker(channel, 0)
    for tag in (2, 1, 3):
        await acks.ok(tag, idle=False)
    assert channel.frames == [(2, False), (1, False), (3, False)]


async def test_a_lone_message_is_acked_at_once_and_a_stream_after_the_linger() -> None:
    channel = FakeChannel(10)
    acks = acker(channel, 4, linger=0.05)
    await acks.ok(1, idle=True)  # no ack went out lately: at once
    assert channel.frames == [(1, True)]
    await acks.ok(2, idle=True)  # within the linger of that ack: waits for company
    await acks.ok(3, idle=True)  # the timer is armed once, not per message
    await asyncio.sleep(0.01)
    assert channel.frames == [(1, True)]
    await asyncio.sleep(0.1)
    assert channel.frames == [(1, True), (3, True)]  # one multiple ack for both


async def test_a_full_batch_is_acked_at_once_even_while_the_linger_runs() -> None:
    channel = FakeChannel(10)
    acks = acker(channel, 3, linger=10.0)
    await acks.ok(1, idle=True)
    await acks.ok(2, idle=True)  # waits (10 s)
    await acks.ok(3, idle=False)
    await acks.ok(4, idle=False)
    assert channel.frames == [(1, True), (4, True)]
    await acks.close()


async def test_close_cancels_the_linger_and_a_closed_channel_gets_no_ack() -> None:
    channel = FakeChannel(10)
    acks = acker(channel, 4, linger=0.01)
    await acks.ok(1, idle=True)
    await acks.ok(2, idle=True)  # waits for the linger
    await acks.close()
    await asyncio.sleep(0.03)
    assert channel.frames == [(1, True)]  # the broker requeues what a closed channel left unacked

    channel = FakeChannel(10)
    acks = acker(channel, 4, linger=0.01)
    await acks.ok(1, idle=True)
    await acks.ok(2, idle=True)
    channel.is_open = False  # closed before the timer fired
    await asyncio.sleep(0.03)
    assert channel.frames == [(1, True)]
    await acks.close()


async def test_finished_messages_before_a_last_nack_are_acked_after_the_linger() -> None:
    channel = FakeChannel(3)
    acks = acker(channel, 25, linger=0.01)
    await acks.ok(1, idle=False)  # more was buffered
    await acks.ok(2, idle=False)
    channel.outstanding.discard(3)  # the last message failed: nacked, then reported
    acks.other(3)
    await asyncio.sleep(0.05)
    assert channel.acked == {1, 2}  # not left waiting for an ok that never comes
    await acks.close()


async def test_a_finished_message_waits_at_most_the_linger_while_others_run() -> None:
    channel = FakeChannel(5)
    acks = acker(channel, 25, linger=0.01)
    await acks.ok(2, idle=False)  # 1 still runs, more is buffered
    await acks.ok(3, idle=False)
    await asyncio.sleep(0.05)
    assert channel.acked == {2, 3}  # acked one by one: 1 holds back the multiple ack
    await acks.ok(1, idle=False)
    await asyncio.sleep(0.05)
    assert channel.acked == {1, 2, 3}
    await acks.close()


class SlowFirstAck(FakeChannel):
    """The write of the first ack takes a while (a socket that drains slowly)."""

    def __init__(self, delivered: int) -> None:
        super().__init__(delivered)
        self.gate = asyncio.Event()

    async def ack(self, tag: int, *, multiple: bool = False) -> None:
        if tag == 1:
            await self.gate.wait()
        await super().ack(tag, multiple=multiple)


async def test_a_nack_during_a_flush_leaves_no_finished_message_behind() -> None:
    for yields in range(12):  # the nack at every point of the flush
        channel = SlowFirstAck(4)
        acks = acker(channel, 25, linger=0.0)
        first = asyncio.create_task(acks.ok(1, idle=True))  # holds the ack lock
        await asyncio.sleep(0)
        above = [asyncio.create_task(acks.ok(t, idle=True)) for t in (3, 4)]  # 2 still runs
        await asyncio.sleep(0)
        channel.gate.set()
        for _ in range(yields):
            await asyncio.sleep(0)
        channel.outstanding.discard(2)  # 2 nacked by its worker, then reported
        acks.other(2)
        await asyncio.gather(first, *above)
        await lingered()
        await asyncio.sleep(0.01)
        assert channel.outstanding == set(), f"nack after {yields} yields"
        await acks.close()
