"""``Side``: one backend a conformance test runs on (the memory broker or RabbitMQ)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from mmate._transport.aiormq.backend import AiormqBackend
from mmate._transport.memory import MemoryBroker
from mmate.errors import ChannelClosed, MmateError, TopologyError

_RABBIT_SLACK = 0.15
"""Extra real seconds RabbitMQ gets for a TTL to run out and a dead letter to arrive."""


@dataclass
class Side:
    """One backend a conformance test runs on."""

    name: str
    url: str
    vhost: str = "/"
    broker: MemoryBroker | None = None
    links: list[Any] = field(default_factory=list)

    @property
    def memory(self) -> bool:
        return self.broker is not None

    async def link(self) -> Any:
        if self.broker is not None:
            link = await self.broker.backend.connect(
                self.url, name="test", heartbeat=0, ssl_context=None, timeout=5
            )
        else:
            link = await AiormqBackend().connect(
                self.url, name="test", heartbeat=0, ssl_context=None, timeout=5
            )
        self.links.append(link)
        return link

    async def channel(self, *, confirms: bool = True, link: Any = None) -> Any:
        if link is None:
            link = self.links[0] if self.links else await self.link()
        return await link.channel(confirms=confirms)

    async def wait(self, seconds: float, *, slack: bool = True) -> None:
        """Let ``seconds`` of broker time pass (on RabbitMQ, with ``slack``, a little more so
        that what is due by then has happened)."""
        if self.broker is not None:
            await self.broker.advance(seconds)
        else:
            await asyncio.sleep(seconds + (_RABBIT_SLACK if slack else 0))

    async def settle(self) -> None:
        """Let deliveries reach their consumers (no broker time passes in memory)."""
        if self.broker is not None:
            await self.broker.advance(0)
        else:
            await asyncio.sleep(0.1)

    def unique(self, prefix: str) -> str:
        return f"{prefix}.{uuid.uuid4().hex[:8]}"

    def reply(self, error: BaseException) -> str:
        """The broker's reply text of an error, with the vhost written as ``/``."""
        if isinstance(error, TopologyError):
            text = error.broker_reply
        elif isinstance(error, ChannelClosed):
            text = error.reply_text
        else:
            text = str(error)
        return text.replace(f"vhost '{self.vhost}'", "vhost '/'")

    async def close(self) -> None:
        for link in self.links:
            with contextlib.suppress(MmateError, Exception):
                await link.close()
        if self.broker is not None:
            self.broker.close()


async def drain(channel: Any, queue: str) -> list[Any]:
    """Every message of ``queue``, taken with ``get`` (no ack needed)."""
    out = []
    while (delivery := await channel.get(queue, no_ack=True)) is not None:
        out.append(delivery)
    return out


async def bodies(channel: Any, queue: str) -> list[str]:
    return [delivery.body.decode() for delivery in await drain(channel, queue)]
