"""Passive existence checks: whether an exchange or a queue exists, without declaring anything.

A passive declare of a missing entity fails with 404 and closes the channel it was made on, so a
``Prober`` keeps one channel for a series of checks and opens a fresh one after each miss. Used
wherever the runtime only looks (the startup check of dead-letter routes, the delay
infrastructure of a user without configure rights, health checks, DLQ tools); passive declares need
no configure permission.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from .._transport.base import Channel, QueueInfo
from .._transport.connection import Connection
from ..errors import EntityNotFound


class Prober:
    """Checks entities on ``connection``; ``async with`` closes its channel."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._channel: Channel | None = None

    async def _open(self) -> Channel:
        channel = self._channel
        if channel is None or not channel.is_open:
            channel = self._channel = await self._connection.channel(confirms=False)
        return channel

    async def exchange(self, name: str) -> bool:
        """The exchange exists (the default exchange and ``amq.*`` always do)."""
        channel = await self._open()
        try:
            await channel.declare_exchange(name, passive=True)
        except EntityNotFound:
            return False
        return True

    async def queue(self, name: str) -> QueueInfo | None:
        """The queue's counts, or None when it does not exist."""
        channel = await self._open()
        try:
            return await channel.declare_queue(name, passive=True)
        except EntityNotFound:
            return None

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
