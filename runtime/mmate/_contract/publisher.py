"""The base of generated publisher classes and the transport seam they publish through."""

from __future__ import annotations

from typing import ClassVar, Protocol, TypeVar

from .model import Model
from .options import PublishOptions
from .topology import PublishRoute, ServiceTopology

R = TypeVar("R", bound=Model)


class PublishTransport(Protocol):
    """What generated publishers publish through; ``mmate.Client`` implements it.

    Both methods are safe to call concurrently from many tasks. ``publish`` returns once the broker
    has confirmed the message; ``request`` returns the decoded reply.
    """

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None: ...

    async def request(
        self,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        reply: type[R],
        options: PublishOptions,
    ) -> R: ...


class Publisher:
    """Base of generated ``<Service>Publisher`` classes: one typed method per published message."""

    TOPOLOGY: ClassVar[ServiceTopology]

    def __init__(self, transport: PublishTransport) -> None:
        self._transport = transport
