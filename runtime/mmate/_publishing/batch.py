"""Publishing several messages together: ``Publication`` (one message of ``Client.publish_many``)
and ``Batch`` (a ``PublishTransport`` that collects publishes and sends them on exit).

Both send through the client's ``Outbox``: pipelined, every confirm awaited together, each message
through the publish interceptors; ``BatchPublishError`` names exactly the failed ones, every other
message was confirmed. Encoding errors raise before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, TypeVar

from .._contract.model import Model
from .._contract.options import PublishOptions
from .._contract.topology import PublishRoute
from .._observation.interceptors import Draft
from ..errors import MmateError
from .confirmed import Outgoing
from .outbox import Outbox

R = TypeVar("R", bound=Model)


@dataclass(frozen=True, slots=True)
class Publication:
    """One message for ``Client.publish_many``: what a generated publisher method would publish."""

    route: PublishRoute
    message: Model
    routing_key: str = ""
    options: PublishOptions = field(default_factory=lambda: PublishOptions())


class Batch:
    """Collects publishes (``PublishTransport``) and sends them together, all confirms awaited at
    once.

    ``publish`` only encodes and records (it returns before anything is sent); ``send`` (or leaving
    ``async with`` without an exception) publishes them and raises ``BatchPublishError`` naming
    exactly the failed ones. ``request`` is not available in a batch.
    """

    def __init__(self, outbox: Outbox, timeout: float | None) -> None:
        self._outbox = outbox
        self._timeout = timeout
        self._items: list[Outgoing] = []
        self._drafts: list[Callable[[], Draft]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, publication: Publication) -> None:
        """Encode and record one message."""
        p = publication
        out = self._outbox.encode(p.route, p.message, p.routing_key, p.options)
        self._items.append(out)
        if self._outbox.interceptors.publishes:  # what they see; unused without interceptors
            self._drafts.append(
                self._outbox.draft("batch", out, p.route, p.message, p.routing_key, p.options)
            )

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None:
        self.add(Publication(route, message, routing_key, options))

    async def request(
        self,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        reply: type[R],
        options: PublishOptions,
    ) -> R:
        raise MmateError(f"{route.message.name}: a query cannot be sent in a batch")

    async def send(self) -> None:
        items, self._items = self._items, []
        drafts, self._drafts = self._drafts, []
        await self._outbox.send_all(items, drafts, self._timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.send()
        else:
            self._items.clear()
            self._drafts.clear()
