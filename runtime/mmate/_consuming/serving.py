"""``Serving``: the consumers one ``Client.serve`` call started, stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Self

from .._transport.connection import Connection
from .consumer import QueueConsumer

log = logging.getLogger("mmate.serving")


class Serving:
    """The consumers started by one ``Client.serve`` call: one per queue, or several per queue
    for a consumer group (``groups``)."""

    def __init__(self, on_stopped: Callable[[Serving], None]) -> None:
        self._on_stopped = on_stopped
        self.consumers: list[QueueConsumer] = []
        self.connections: list[Connection] = []
        """The extra connections a consumer group was spread over (closed by ``stop``)."""
        self._stopped = False
        self._done = asyncio.Event()

    def __repr__(self) -> str:
        return f"<mmate.Serving {[c.queue for c in self.consumers]}>"

    @property
    def groups(self) -> dict[str, list[QueueConsumer]]:
        """Queue -> its consumers (more than one for a consumer group)."""
        groups: dict[str, list[QueueConsumer]] = {}
        for consumer in self.consumers:
            groups.setdefault(consumer.queue, []).append(consumer)
        return groups

    @property
    def handled(self) -> int:
        return sum(c.handled for c in self.consumers)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.consumers)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming, let in-flight handlers of every consumer finish within ``timeout`` and
        ack them."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await asyncio.gather(*(c.stop(timeout) for c in self.consumers))
        finally:
            for connection in self.connections:
                try:
                    await connection.close()
                except Exception as exc:
                    log.warning("closing the consumer group connection %s: %r", connection, exc)
            self._on_stopped(self)
            self._done.set()

    async def wait(self) -> None:
        """Return once ``stop`` has finished (called by a signal handler or ``Client.close``)."""
        await self._done.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
