"""A connection to the in-memory broker: the seam's ``Link``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ...errors import BrokerConnectionError, MmateError
from ..base import LostCallback
from .channel import MemoryChannel

if TYPE_CHECKING:
    from .broker import MemoryBroker

log = logging.getLogger("mmate.memory")


class MemoryLink:
    """A link to a ``MemoryBroker``, owned by the event loop that opened it. Exclusive queues
    declared on it are deleted when it closes."""

    def __init__(self, broker: MemoryBroker, name: str, loop: asyncio.AbstractEventLoop):
        self.broker = broker
        self.name = name
        self.loop = loop
        self._channels: dict[int, MemoryChannel] = {}
        self._next = 1
        self._closed = False
        self._on_lost: list[LostCallback] = []

    def __repr__(self) -> str:
        return f"<MemoryLink {self.name!r} to {self.broker.url}{' closed' if self._closed else ''}>"

    @property
    def is_closed(self) -> bool:
        return self._closed

    def on_lost(self, callback: LostCallback) -> None:
        self._on_lost.append(callback)

    async def channel(self, *, confirms: bool) -> MemoryChannel:
        await asyncio.sleep(0)  # channel.open is a round trip: the caller yields, as on a socket
        if self._closed:
            raise BrokerConnectionError(f"{self.broker.url}: the link {self.name!r} is closed")
        self.broker.touched()
        number = self._next
        self._next += 1
        channel = MemoryChannel(self, number, confirms=confirms)
        self._channels[number] = channel
        return channel

    async def blocked(self) -> str | None:
        return None  # the in-memory broker has no memory or disk alarms

    def channels(self) -> list[MemoryChannel]:
        return list(self._channels.values())

    def forget(self, channel: MemoryChannel) -> None:
        self._channels.pop(channel.number, None)

    async def close(self) -> None:
        self.shutdown(None)

    def shutdown(self, reason: MmateError | None) -> None:
        """Close every channel and leave the broker; ``reason`` (the broker closed the link)
        is reported to the ``on_lost`` callbacks."""
        if self._closed:
            return
        self._closed = True
        for channel in list(self._channels.values()):
            channel.shutdown(reason)
        self.broker.link_closed(self)
        if reason is None or self.loop.is_closed():
            return
        for callback in list(self._on_lost):
            self.loop.call_soon(self._lost, callback, str(reason))

    @staticmethod
    def _lost(callback: LostCallback, reason: str) -> None:
        try:
            callback(reason)
        except Exception:
            log.exception("a memory broker on_lost callback failed")
