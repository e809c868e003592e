"""What a handler learns about the message it handles, and how it publishes follow-ups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from .model import Model
from .options import PublishOptions
from .publisher import Publisher, PublishTransport
from .topology import PublishRoute

P = TypeVar("P", bound=Publisher)
R = TypeVar("R", bound=Model)


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Delivery facts of one message, passed to every handler method beside the typed message."""

    message_id: str
    message_type: str
    correlation_id: str | None
    headers: Mapping[str, Any]
    redelivered: bool
    queue: str
    exchange: str
    routing_key: str
    delivery_tag: int
    timestamp: datetime | None
    reply_to: str | None
    attempt: int
    transport: PublishTransport

    def publisher(self, publisher_class: type[P]) -> P:
        """A publisher whose messages carry this message's correlation id unless told otherwise."""
        return publisher_class(_Correlated(self.transport, self.correlation_id or self.message_id))


class _Correlated:
    """A transport that stamps a correlation id on everything published through it."""

    def __init__(self, inner: PublishTransport, correlation_id: str) -> None:
        self._inner = inner
        self._correlation_id = correlation_id

    def _with_id(self, options: PublishOptions) -> PublishOptions:
        if "correlation_id" in options:
            return options
        return {**options, "correlation_id": self._correlation_id}

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None:
        await self._inner.publish(route, message, routing_key, self._with_id(options))

    async def request(
        self,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        reply: type[R],
        options: PublishOptions,
    ) -> R:
        return await self._inner.request(route, message, routing_key, reply, self._with_id(options))
