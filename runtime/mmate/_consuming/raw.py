"""``RawConsumer``: consume one queue with manual acks and hand each raw delivery to a coroutine.

Used by the runtime's own infrastructure (the delay relay, the scheduler's coordination queue), not
by generated handlers. Contract: ``handle(delivery)`` must settle (``ack`` / ``nack``) the delivery
itself; if it raises, the delivery is nacked with requeue after one second (logged), so nothing is
lost and a persistent failure does not spin. At most ``prefetch`` messages are unacked at once;
each is handled in its own task, so up to ``prefetch`` run concurrently (``prefetch=1`` handles
them one at a time, in queue order). Consuming again after a closed channel or a broker-side
cancel is the one consume loop's (``loop.ConsumeLoop``). ``stop`` ends the loop, waits for running
handlers (up to ``timeout``), cancels those still running and closes the channel; whatever is
still unacked is then requeued by the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._transport.base import Delivery
from .._transport.connection import Connection
from ..errors import MmateError
from .loop import ConsumeLoop

log = logging.getLogger("mmate.consume")

Handle = Callable[[Delivery], Awaitable[None]]


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
        self._handle = handle
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = ConsumeLoop(
            connection,
            queue,
            self._on_delivery,
            prefetch=prefetch,
            arguments=arguments,
            redeclare=redeclare,
        )
        self._stopping = False

    @property
    def running(self) -> bool:
        return not self._stopping and self._loop.consuming

    async def start(self) -> None:
        self._stopping = False
        await self._loop.start()

    def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._run(delivery), name=f"mmate:{self.queue}:handle")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, delivery: Delivery) -> None:
        try:
            await self._handle(delivery)
        except Exception:
            log.exception("handling a message from %s failed; requeueing it in 1 s", self.queue)
            await asyncio.sleep(1.0)
            await nack(delivery, requeue=True)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        await self._loop.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):  # still running after the timeout: the broker requeues
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._loop.close()


async def ack(delivery: Delivery) -> None:
    """Ack; a closed channel is fine (the broker requeues what it left unacked)."""
    delivery.settled = True
    if not delivery.channel.is_open:
        return
    try:
        await delivery.channel.ack(delivery.delivery_tag)
    except MmateError as exc:
        log.warning("ack of %s failed: %s", delivery.delivery_tag, exc)


async def nack(delivery: Delivery, *, requeue: bool) -> None:
    delivery.settled = True
    if not delivery.channel.is_open:
        return
    try:
        await delivery.channel.nack(delivery.delivery_tag, requeue=requeue)
    except MmateError as exc:
        log.warning("nack of %s failed: %s", delivery.delivery_tag, exc)
