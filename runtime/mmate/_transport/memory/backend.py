"""The seam's ``Backend`` for ``memory://`` URLs: one per broker (it carries that broker's
clock), so ``memory_backend(url)`` is the backend of the broker the URL names."""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from ...errors import FeatureNotAvailable, MmateError
from ..base import Clock, Features
from .link import MemoryLink

if TYPE_CHECKING:
    from .broker import MemoryBroker


class MemoryBackend:
    """Opens links to one ``MemoryBroker``."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.features: Features = broker.features
        self.clock: Clock = broker.clock

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.broker.url}>"

    async def connect(
        self,
        url: str,
        *,
        name: str,
        heartbeat: int,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
    ) -> MemoryLink:
        from .broker import name_of

        if name_of(url) != self.broker.name:
            raise MmateError(
                f"this backend serves {self.broker.url}, not {url}; use memory_backend({url!r})"
            )
        if ssl_context is not None:
            raise FeatureNotAvailable(f"{url}: the in-memory broker has no TLS")
        await asyncio.sleep(0)
        return self.broker.open_link(name)


def memory_backend(url: str = "memory://") -> MemoryBackend:
    """The backend of the broker ``url`` names (``memory://``: the process's default broker;
    ``memory://<name>``: that one, created on first use)."""
    from .broker import MemoryBroker

    return MemoryBroker.for_url(url).backend
