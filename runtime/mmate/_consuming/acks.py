"""Acknowledging in batches (``basic.ack`` with ``multiple``) without acking anything early.

Contract: ``ok(tag)`` is called once a delivery's handler has finished (or its failure was safely
moved); ``other(tag)`` once it was settled some other way (nacked). A ``multiple`` ack for tag
``T`` acknowledges every outstanding delivery up to ``T``, so it is sent only for a ``T`` whose
every lower delivery tag on the channel is settled: a message is never acked before its handler
finished. Delivery tags of one channel count 1, 2, 3... (one consumer per channel), so the
settled prefix is tracked without registering deliveries.

When acks are sent: once ``batch`` finished messages wait; otherwise at most ``linger`` seconds
after a message finished, and at once when the consumer has nothing else buffered (``idle``) and
no ack went out in the last ``linger`` seconds. A lone message is so acked at once (which matters
beyond the queue: the broker may confirm a persistent message to its publisher only once its
consumer acked it), while a consumer that keeps up with a stream, and finds its buffer empty
after nearly every message, sends at most one ack per ``linger`` besides its full batches instead
of one per 4-5 messages (bench/RESULTS.md, #15: 18 % of the consumer's CPU). A nacked message
(``other``) arms the same timer, so the finished messages beside it never wait for an ``ok`` that
may not come. Finished messages above an unsettled one (a slow handler) are acked one by one
instead, in the same way, so one slow handler never holds the others' acks or prefetch slots.
``flush`` sends everything finished (before closing the channel); ``close`` stops the timer.

One ``Acker`` per channel; every method runs on the event loop of that channel, never
concurrently with itself for the same tag.
"""

from __future__ import annotations

import asyncio
import logging
import math

from .._transport.base import Channel
from ..errors import MmateError

log = logging.getLogger("mmate.consumer")

LINGER = 0.002
"""Seconds between two idle acks at least: the longest a finished message waits for company."""


class Acker:
    """Batches the acks of one channel."""

    def __init__(
        self, channel: Channel, batch: int, *, queue: str = "", linger: float = LINGER
    ) -> None:
        self.channel = channel
        self._queue = queue
        self._batch = max(1, batch)
        self._linger = linger
        self._timer: asyncio.TimerHandle | None = None
        self._last_sent = -math.inf
        """``loop.time()`` of the last ack sent."""
        self._flushes: set[asyncio.Task[None]] = set()
        self._low = 1
        """The lowest delivery tag not yet settled."""
        self._finished: set[int] = set()
        """Tags at or above ``_low`` whose handler finished, not yet acked."""
        self._other: set[int] = set()
        """Tags at or above ``_low`` settled otherwise (nacked, or acked alone)."""
        self._covered = 0
        """The highest finished tag below ``_low`` not yet acked (0: none)."""
        self._covered_count = 0
        self._sending = asyncio.Lock()
        """Acks reach the channel in the order they were decided (a ``multiple`` ack must never
        overtake a single ack of a tag it covers)."""

    async def ok(self, tag: int, *, idle: bool) -> None:
        """The handler of ``tag`` finished: ack it, now or with a later batch."""
        if tag < self._low or tag in self._other:
            return  # settled already
        if self._batch == 1:
            self._other.add(tag)
            await self.channel.ack(tag)
            self._advance()
            return
        self._finished.add(tag)
        self._advance()
        if self._covered_count >= self._batch:
            await self._ack_covered()
        if len(self._finished) >= self._batch:
            await self._ack_singly()
        if self._timer is None and (self._covered or self._finished):
            wait = self._spacing_left()
            if wait > 0:
                self._arm(wait)
            elif idle:
                await self.flush()
            else:  # more work is buffered: give it the linger to finish too
                self._arm(self._linger)

    def other(self, tag: int) -> None:
        """``tag`` was settled another way (call after its nack was sent); it no longer holds back
        the batch."""
        if tag >= self._low:
            self._other.add(tag)
            self._advance()
        if self._timer is None and (self._covered or self._finished):
            # The finished messages below or beside it must not wait for a next ``ok`` that may
            # never come (the nacked message was the last one): ack them after the linger.
            self._arm(max(0.0, self._spacing_left()))

    async def flush(self) -> None:
        """Ack every finished message now."""
        await self._ack_covered()
        await self._ack_singly()
        if self._covered:  # a nack while the singles were sent moved finished ones below it
            await self._ack_covered()

    async def close(self) -> None:
        """Stop the linger timer and wait for a flush it started (the channel is going away, or
        the consumer flushed already)."""
        self.stop_linger()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def stop_linger(self) -> None:
        """Cancel the linger timer (the channel closed: the broker requeues what it left
        unacked)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _spacing_left(self) -> float:
        """Seconds until ``linger`` has passed since the last ack (0 or less: it has)."""
        return self._last_sent + self._linger - asyncio.get_running_loop().time()

    def _arm(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self._lingered)

    def _lingered(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush_now())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_now(self) -> None:
        if not self.channel.is_open:
            return  # the broker requeued what the channel left unacked
        try:
            await self.flush()
        except MmateError as exc:
            log.warning("could not ack finished messages of queue %r: %s", self._queue, exc)

    def _advance(self) -> None:
        low = self._low
        while True:
            if low in self._finished:
                self._finished.discard(low)
                self._covered = low
                self._covered_count += 1
            elif low in self._other:
                self._other.discard(low)
            else:
                break
            low += 1
        self._low = low

    async def _ack_covered(self) -> None:
        async with self._sending:
            tag = self._covered
            if tag:
                self._covered, self._covered_count = 0, 0
                self._last_sent = asyncio.get_running_loop().time()
                await self.channel.ack(tag, multiple=True)

    async def _ack_singly(self) -> None:
        async with self._sending:
            tags = sorted(self._finished)
            self._finished.clear()
            self._other.update(tags)
            if tags:
                self._last_sent = asyncio.get_running_loop().time()
            for tag in tags:
                await self.channel.ack(tag)
