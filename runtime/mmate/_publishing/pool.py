"""``PublisherPool``: a client's publishing spread over ``publish_connections`` x
``channels_per_connection`` confirm-mode channels, one ``ConfirmedPublisher`` each (1 x 1 is no
pool: the client uses its one publisher directly). Spreading, windows, order and recovery:
docs/runtime/pools.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._transport.connection import Connection
from .confirmed import ConfirmedPublisher, Outgoing


class PublisherPool:
    """Publishes through a ``ConfirmedPublisher`` per channel of ``connections`` (see the
    module docstring). The connections are the caller's to open and close."""

    def __init__(
        self,
        connections: Sequence[Connection],
        channels_per_connection: int,
        *,
        max_in_flight: int = 1000,
        timeout: float = 10.0,
        channel_timeout: float | None = None,
    ) -> None:
        if not connections or channels_per_connection < 1:
            raise ValueError("a publisher pool needs at least one connection and one channel")
        size = len(connections) * channels_per_connection
        window = max(1, -(-max_in_flight // size))
        shape = f"{len(connections)}x{channels_per_connection}"
        self.shape = shape
        """Connections x channels per connection, for errors and logs."""
        self._members = [
            ConfirmedPublisher(
                connection,
                f"publish pool {shape} channel {c + 1}.{m + 1}",
                max_in_flight=window,
                timeout=timeout,
                channel_timeout=channel_timeout,
            )
            for c, connection in enumerate(connections)
            for m in range(channels_per_connection)
        ]
        self._next = 0
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<mmate.PublisherPool {self.shape}>"

    @property
    def members(self) -> tuple[ConfirmedPublisher, ...]:
        return tuple(self._members)

    @property
    def resent(self) -> int:
        """Publishes sent again (lost in transit or nacked), over every member."""
        return sum(member.resent for member in self._members)

    def _pick(self) -> ConfirmedPublisher:
        members = self._members
        count = len(members)
        start = self._next
        for step in range(count):
            member = members[(start + step) % count]
            if member.can_send_now():
                self._next = (start + step + 1) % count
                return member
        for step in range(count):
            member = members[(start + step) % count]
            if member.connection.is_up:
                self._next = (start + step + 1) % count
                return member
        self._next = (start + 1) % count
        return members[start]

    async def send(self, out: Outgoing, *, timeout: float | None = None) -> None:
        """Publish one message on the next member (module docstring) and wait for its
        confirm."""
        await self._pick().send(out, timeout=timeout)

    async def send_many(self, items: Sequence[Outgoing], *, timeout: float | None = None) -> None:
        """Publish a batch on one member, in list order (``ConfirmedPublisher.send_many``)."""
        await self._pick().send_many(items, timeout=timeout)

    async def close(self) -> None:
        for member in self._members:
            await member.close()
