"""``RawConsumer``: consume one queue with manual acks and hand each raw delivery to a coroutine.

Used by the runtime's own infrastructure (the delay relay, the scheduler's coordination queue), not
by generated handlers. Contract: ``handle(message)`` must settle (ack/nack) the message itself;
if it raises, the message is nacked with requeue after one second (logged), so nothing is lost
and a persistent failure does not spin. At most ``prefetch``
messages are unacked at once; each is handled in its own task, so up to ``prefetch`` run
concurrently (``prefetch=1`` handles them one at a time, in queue order). When the broker closes the
channel or cancels the consumer, it consumes again with backoff until ``stop``. ``stop`` cancels
the consumer, waits for running handlers (up to ``timeout``) and closes the channel; whatever is
still unacked is then requeued by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq.abc
from aiormq.exceptions import ChannelNotFoundEntity

from .._transport.connection import Connection, stray_cancel

log = logging.getLogger("mmate.raw_consumer")

Handle = Callable[[aiormq.abc.DeliveredMessage], Awaitable[None]]


async def consume_again(
    connection: Connection,
    queue: str,
    consume: Callable[[], Awaitable[None]],
    stopping: Callable[[], bool],
    *,
    redeclare: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Call ``consume`` until it succeeds or ``stopping()``, backing off from 0.2 s to 10 s.

    The one recovery loop of every consumer whose channel was closed (with the connection, or by
    the broker) or whose consumer the broker cancelled. ``consume`` waits for a connection being
    recovered. When the queue does not exist (deleted, or lost with a broker node), ``redeclare``
    (the client's topology) runs once before the next try; if the queue is still missing, that is
    logged as an error and the loop keeps trying every 10 s, so consuming resumes once someone
    declares it.
    """
    delay = 0.2
    redeclared = False
    while not stopping():
        if not connection.wanted:  # closed (or given up): nothing to consume again on
            log.debug("not consuming %s again: the connection is closed", queue)
            return
        try:
            await consume()
            log.info("consuming %s again", queue)
            return
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise  # stop() cancels this loop
            missing = isinstance(exc, ChannelNotFoundEntity)
            if missing and redeclare is not None and not redeclared:
                redeclared = True
                log.warning("queue %s does not exist; declaring the topology again", queue)
                try:
                    await redeclare()
                except Exception as declare_exc:
                    log.error("declaring the topology of %s again failed: %s", queue, declare_exc)
                continue
            if missing:
                delay = 10.0
                log.error(
                    "cannot consume %s: the queue does not exist (%s); trying again every 10 s "
                    "until it is declared",
                    queue,
                    exc,
                )
            else:
                log.error("consuming %s again failed (retry in %.1f s): %s", queue, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class RawConsumer:
    def __init__(
        self,
        connection: Connection,
        queue: str,
        handle: Handle,
        *,
        prefetch: int = 100,
        arguments: dict[str, Any] | None = None,
        redeclare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.queue = queue
        self._redeclare = redeclare
        self._connection = connection
        self._handle = handle
        self._prefetch = prefetch
        self._arguments = arguments
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return not self._stopping and self._channel is not None and not self._channel.is_closed

    async def start(self) -> None:
        self._stopping = False
        await self._consume()

    async def _consume(self) -> None:
        channel = await self._connection.channel(confirms=False, wait=math.inf)
        try:
            await channel.basic_qos(prefetch_count=self._prefetch)
            channel.on_consumer_cancel_callbacks.add(self._on_cancel)
            await channel.basic_consume(self.queue, self._on_delivery, arguments=self._arguments)
        except BaseException:  # cancelled (stop) included: no consumer left behind
            if not channel.is_closed:
                await channel.close()
            raise
        self._channel = channel
        channel.closing.add_done_callback(self._on_closed)

    async def _on_delivery(self, message: aiormq.abc.DeliveredMessage) -> None:
        task = asyncio.create_task(self._run(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: aiormq.abc.DeliveredMessage) -> None:
        try:
            await self._handle(message)
        except Exception:
            log.exception("handling a message from %s failed; requeueing it in 1 s", self.queue)
            await asyncio.sleep(1.0)
            await nack(message, requeue=True)

    def _on_closed(self, _: object) -> None:
        if not self._stopping:
            log.warning("channel of %s closed; consuming again", self.queue)
            if self._restart is None or self._restart.done():
                self._restart = asyncio.create_task(self._restart_loop())

    async def _on_cancel(self, _: object) -> None:
        channel = self._channel
        if not self._stopping and channel is not None and not channel.is_closed:
            log.warning("broker cancelled the consumer of %s; consuming again", self.queue)
            # Closing (in a task: we are inside the channel's reader) triggers the restart.
            self._restart = asyncio.create_task(self._close_then_restart(channel))

    async def _close_then_restart(self, channel: aiormq.abc.AbstractChannel) -> None:
        with contextlib.suppress(Exception):
            await channel.close()
        await self._restart_loop()

    async def _restart_loop(self) -> None:
        await consume_again(
            self._connection,
            self.queue,
            self._consume,
            lambda: self._stopping,
            redeclare=self._redeclare,
        )

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        restart, self._restart = self._restart, None
        if restart is not None and restart is not asyncio.current_task():
            restart.cancel()
            with contextlib.suppress(BaseException):
                await restart
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()


async def ack(message: aiormq.abc.DeliveredMessage) -> None:
    """Ack; a closed channel is fine (the broker requeues what it left unacked)."""
    if message.delivery_tag is None or message.channel.is_closed:
        return
    try:
        await message.channel.basic_ack(message.delivery_tag)
    except Exception as exc:
        log.warning("ack of %s failed: %r", message.delivery_tag, exc)


async def nack(message: aiormq.abc.DeliveredMessage, *, requeue: bool) -> None:
    if message.delivery_tag is None or message.channel.is_closed:
        return
    try:
        await message.channel.basic_nack(message.delivery_tag, requeue=requeue)
    except Exception as exc:
        log.warning("nack of %s failed: %r", message.delivery_tag, exc)
