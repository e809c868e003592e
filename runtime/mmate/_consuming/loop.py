"""The one consume loop: a consumer on a channel of its own, consumed again whenever the channel
closes or the broker cancels the consumer, until ``stop``. Used by the typed consumer
(``consumer.QueueConsumer``) and the infrastructure's raw consumers (``raw.RawConsumer``).

Contract:

* ``start`` opens a channel (waiting for a connection being recovered, however long), sets the
  prefetch and consumes; ``on_channel`` runs for every new channel before deliveries arrive (the
  typed consumer makes its acker there).
* The channel closed (with a lost connection, or by the broker on an error) or the consumer
  cancelled by the broker (its queue deleted, a node failover): consumed again with backoff from
  0.2 s to 10 s, with the same settings, after a lost connection once it is recovered. When the
  queue does not exist, ``redeclare`` (the client's topologies) runs once first; if it is still
  missing, an error naming it is logged and the loop keeps trying every 10 s, so consuming resumes
  once someone declares it. The loop ends when the connection is closed for good.
* ``pause`` cancels the consumer and keeps the channel (held deliveries stay unacked); ``resume``
  consumes again.
* ``stop`` ends the loop, cancels the consumer (bounded: on a connection silently cut nothing
  answers) and leaves the channel open for the caller to settle what it holds; ``close`` closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._transport.base import Channel, DeliveryCallback
from .._transport.connection import Connection
from ..errors import EntityNotFound, MmateError

log = logging.getLogger("mmate.consume")

ChannelCallback = Callable[[Channel], None]


class ConsumeLoop:
    """Consumes ``queue`` on a channel of its own (see the module docstring)."""

    def __init__(
        self,
        connection: Connection,
        queue: str,
        on_delivery: DeliveryCallback,
        *,
        prefetch: int,
        no_ack: bool = False,
        arguments: Mapping[str, Any] | None = None,
        redeclare: Callable[[], Awaitable[None]] | None = None,
        on_channel: ChannelCallback | None = None,
    ) -> None:
        self.queue = queue
        self._connection = connection
        self._on_delivery = on_delivery
        self._prefetch = prefetch
        self._no_ack = no_ack
        self._arguments = arguments
        self._redeclare = redeclare
        self._on_channel = on_channel
        self._channel: Channel | None = None
        self._tag: str | None = None
        self._paused = False
        self._stopping = False
        self._lock = asyncio.Lock()
        self._restart: asyncio.Task[None] | None = None

    @property
    def channel(self) -> Channel | None:
        return self._channel

    @property
    def consuming(self) -> bool:
        """A consumer on an open channel (not paused, not waiting for a recovery)."""
        channel = self._channel
        return (
            channel is not None and channel.is_open and self._tag is not None and not self._stopping
        )

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self) -> None:
        self._stopping = False
        await self._consume()

    async def _consume(self) -> None:
        # A connection being recovered: wait for it (stop cancels the wait), however long.
        channel = await self._connection.channel(confirms=False, wait=math.inf)
        try:
            await channel.qos(self._prefetch)
            channel.on_cancel(self._on_cancel)
            if self._on_channel is not None:
                self._on_channel(channel)
            tag = None
            if not self._paused:
                tag = await channel.consume(
                    self.queue, self._on_delivery, no_ack=self._no_ack, arguments=self._arguments
                )
        except BaseException:  # cancelled (stop) included: no consumer left behind
            await channel.close()
            raise
        self._channel, self._tag = channel, tag
        channel.on_close(lambda reason: self._on_closed(channel, reason))

    def _on_closed(self, channel: Channel, reason: MmateError | None) -> None:
        if channel is self._channel and not self._stopping:
            log.warning(
                "channel of queue %s closed (%s); consuming again", self.queue, reason or "closed"
            )
            self._start_again()

    def _on_cancel(self, consumer_tag: str) -> None:
        if self._stopping or consumer_tag != self._tag:
            return
        log.warning("the broker cancelled the consumer of %s; consuming again", self.queue)
        self._tag = None
        # Not inline: a callback must not wait on the channel it was called from.
        self._start_again(close_first=self._channel)

    def _start_again(self, close_first: Channel | None = None) -> None:
        if self._restart is None or self._restart.done():
            self._restart = asyncio.create_task(
                self._again(close_first), name=f"mmate:consume:{self.queue}"
            )

    async def _again(self, close_first: Channel | None = None) -> None:
        if close_first is not None:
            await close_first.close()
        delay = 0.2
        redeclared = False
        while not self._stopping:
            if not self._connection.wanted:  # closed (or given up): nothing to consume on
                log.debug("not consuming %s again: the connection is closed", self.queue)
                return
            try:
                await self._consume()
                log.info("consuming %s again", self.queue)
                return
            except MmateError as exc:
                missing = isinstance(exc, EntityNotFound)
                if missing and self._redeclare is not None and not redeclared:
                    redeclared = True
                    log.warning("queue %s does not exist; declaring the topology again", self.queue)
                    try:
                        await self._redeclare()
                    except Exception as declare_exc:
                        log.error(
                            "declaring the topology of %s again failed: %s", self.queue, declare_exc
                        )
                    continue
                if missing:
                    delay = 10.0
                    log.error(
                        "cannot consume %s: the queue does not exist (%s); trying again every "
                        "10 s until it is declared",
                        self.queue,
                        exc,
                    )
                else:
                    log.error(
                        "consuming %s again failed (retry in %.1f s): %s", self.queue, delay, exc
                    )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def pause(self) -> None:
        """Cancel the consumer; held deliveries stay unacked."""
        async with self._lock:
            self._paused = True
            channel, tag = self._channel, self._tag
            if channel is not None and channel.is_open and tag is not None:
                self._tag = None
                await channel.cancel(tag)

    async def resume(self) -> None:
        async with self._lock:
            if self._stopping or not self._paused:
                return
            self._paused = False
            channel = self._channel
            if channel is None or not channel.is_open:
                self._start_again()
            elif self._tag is None:
                self._tag = await channel.consume(
                    self.queue, self._on_delivery, no_ack=self._no_ack, arguments=self._arguments
                )

    async def stop(self) -> None:
        """End the loop and cancel the consumer; the channel stays open (``close`` closes it)."""
        self._stopping = True
        restart, self._restart = self._restart, None
        if restart is not None and restart is not asyncio.current_task():
            restart.cancel()
            with contextlib.suppress(BaseException):
                await restart
        channel, tag = self._channel, self._tag
        self._tag = None
        if channel is not None and channel.is_open and tag is not None:
            try:
                await asyncio.wait_for(channel.cancel(tag), 5)
            except (Exception, TimeoutError) as exc:
                log.debug("cancelling the consumer of %s: %r", self.queue, exc)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
