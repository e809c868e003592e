"""``mmate.testing``: test your handlers on the in-memory broker, in milliseconds.

``Harness`` starts a client on a fresh in-memory broker, declares the topologies it is given,
serves handlers (``Handlers`` subclasses or ``Routes`` registries) and records, through an
ordinary ``Interceptor`` (``Recorder``), every confirmed publish and every delivery's outcome.
A test then asks, typed, what happened::

    async with Harness(topology.ORDER_SERVICE, topology.STOREFRONT) as harness:
        await harness.serve(OrderHandlers())
        await harness.publisher(StorefrontPublisher).send_create_order_command(command)
        await harness.idle()
        assert harness.handled(CreateOrderCommand) == [command]
        assert harness.published(OrderCreatedEvent)[0].order.id == command.order.id

``idle()`` waits until nothing is on its way to a consumer and nothing is unacknowledged;
``advance(seconds)`` moves the broker's clock (retry backoffs, delays, TTLs) and lets the system
react at each moment on the way. See docs/testing.md ("Testing your handlers").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, Unpack

from ._consuming.dispatch import Handlers
from ._consuming.serving import Serving
from ._contract.context import MessageContext
from ._contract.model import Model
from ._contract.publisher import Publisher
from ._contract.topology import ServiceTopology
from ._observation.interceptors import (
    HandleNext,
    Interceptor,
    Outcome,
    OutcomeResult,
    PublishInfo,
    PublishKind,
    PublishNext,
)
from ._transport.memory import MemoryBroker
from .client import Client, ClientOptions
from .errors import MmateError

__all__ = ["Harness", "MemoryBroker", "Published", "Recorder", "Settled"]

M = TypeVar("M", bound=Model)
P = TypeVar("P", bound=Publisher)


@dataclass(frozen=True, slots=True)
class Published(Generic[M]):
    """One message the broker confirmed, and where it went."""

    message: M
    message_type: str
    message_id: str
    correlation_id: str | None
    exchange: str
    """For a delayed message: where it is delivered after its delay."""
    routing_key: str
    kind: PublishKind
    headers: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Settled(Generic[M]):
    """What the runtime did with one delivery: ``outcome`` as interceptors hear it, and the
    typed message its handler was given (None for poison, which never reached a handler)."""

    message: M | None
    outcome: Outcome

    @property
    def result(self) -> OutcomeResult:
        return self.outcome.result

    @property
    def reason(self) -> str:
        """The dead-letter reason (``retries-exhausted``, ``permanent-error``, a poison reason)
        or why it was rejected; empty when handled."""
        return self.outcome.reason

    @property
    def attempt(self) -> int:
        return self.outcome.attempt

    @property
    def queue(self) -> str:
        return self.outcome.queue

    @property
    def error(self) -> BaseException | None:
        return self.outcome.error


class Recorder(Interceptor):
    """An interceptor that records confirmed publishes and delivery outcomes. ``Harness`` puts
    one on every client it makes; it can be given to any ``Client`` on its own."""

    def __init__(self) -> None:
        self.publications: list[Published[Model]] = []
        self.settled: list[Settled[Model]] = []
        self._handed: dict[str, Model] = {}

    async def on_publish(self, info: PublishInfo, call_next: PublishNext) -> None:
        await call_next()  # recorded once confirmed; a failed publish raises to its caller
        if isinstance(info.message, Model):
            self.publications.append(
                Published(
                    info.message,
                    info.message_type,
                    info.message_id,
                    info.correlation_id,
                    info.exchange,
                    info.routing_key,
                    info.kind,
                    dict(info.headers),
                )
            )

    async def on_handle(self, message: Model, ctx: MessageContext, call_next: HandleNext) -> Any:
        self._handed[ctx.message_id] = message
        return await call_next()

    def on_outcome(self, outcome: Outcome) -> None:
        self.settled.append(Settled(self._handed.get(outcome.message_id), outcome))

    def clear(self) -> None:
        self.publications.clear()
        self.settled.clear()
        self._handed.clear()


class Harness:
    """Clients on one fresh in-memory broker, with every publish and outcome recorded.

    ``topologies`` are declared on start (the topologies of served handlers are declared by
    ``serve``). ``service`` names the first client; ``options`` (``ClientOptions``) and
    ``interceptors`` go to every client (the recorder is the outermost interceptor). Use it as
    ``async with Harness(...) as harness`` (or ``start`` / ``close``); the broker is closed and
    forgotten with it.
    """

    def __init__(
        self,
        *topologies: ServiceTopology,
        service: str = "mmate-test",
        interceptors: Sequence[Interceptor] = (),
        **options: Unpack[ClientOptions],
    ) -> None:
        self.recorder = Recorder()
        self.broker = MemoryBroker()
        self._topologies = topologies
        self._service = service
        self._interceptors = (self.recorder, *interceptors)
        self._options = options
        self._clients: list[Client] = []
        self._client: Client | None = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> Harness:
        if self._started:
            raise MmateError("the harness is started already")
        self._started = True
        self._client = await self.add_client(self._service)
        for topology in self._topologies:
            await self._client.declare(topology)
        return self

    async def close(self) -> None:
        """Close every client (stopping what they serve), then the broker."""
        try:
            for client in reversed(self._clients):
                await client.close()
        finally:
            self._clients.clear()
            self.broker.close()

    async def __aenter__(self) -> Harness:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- clients, handlers, publishers ----------------------------------------------------

    @property
    def client(self) -> Client:
        """The first client (started by ``start``)."""
        if self._client is None:
            raise MmateError("the harness is not started: use `async with Harness(...)`")
        return self._client

    async def add_client(self, service: str) -> Client:
        """Another connected client on this broker (as if another service ran beside), with
        the harness's options and recorder; closed with the harness."""
        client = Client(
            self.broker.url, service=service, interceptors=self._interceptors, **self._options
        )
        await client.connect()
        self._clients.append(client)
        return client

    async def serve(
        self, handlers: Handlers, *more: Handlers, client: Client | None = None
    ) -> Serving:
        """Declare the handlers' topologies and serve them (on ``client``, default the first
        client)."""
        on = client or self.client
        for item in (handlers, *more):
            await on.declare(item.TOPOLOGY)
        return await on.serve(handlers, *more)

    def publisher(self, publisher_class: type[P], *, client: Client | None = None) -> P:
        """A generated publisher on the first client (or ``client``)."""
        return publisher_class(client or self.client)

    # -- time -------------------------------------------------------------------------------

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout`` real seconds) until nothing is on its way to a consumer,
        nothing is unacknowledged and no timer is overdue. Messages waiting for a later moment
        (a retry backoff, a delay, a TTL) do not count: ``advance`` for those."""
        await self.broker.wait_idle(timeout)

    async def advance(self, seconds: float) -> None:
        """Move the broker's clock ``seconds`` forward: every expiry and timer on the way (retry
        backoffs, delays, TTLs, the scheduler) happens at its moment, handlers reacting there;
        then wait until idle."""
        await self.broker.advance(seconds)
        await self.idle()

    # -- what happened ----------------------------------------------------------------------

    def publications(
        self,
        message_type: type[M],
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
    ) -> list[Published[M]]:
        """Confirmed publishes of ``message_type`` (optionally only to ``exchange`` / with
        ``routing_key``), in confirm order, with where they went."""
        return [
            p  # type: ignore[misc]
            for p in self.recorder.publications
            if isinstance(p.message, message_type)
            and (exchange is None or p.exchange == exchange)
            and (routing_key is None or p.routing_key == routing_key)
        ]

    def published(
        self,
        message_type: type[M],
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
    ) -> list[M]:
        """The confirmed messages of ``message_type`` (see ``publications``)."""
        return [
            p.message
            for p in self.publications(message_type, exchange=exchange, routing_key=routing_key)
        ]

    def outcomes(
        self, message_type: type[M] | None = None, *, result: OutcomeResult | None = None
    ) -> list[Settled[M]]:
        """Every delivery's outcome (of ``message_type``; with ``result``), in order."""
        return [
            s  # type: ignore[misc]
            for s in self.recorder.settled
            if (message_type is None or isinstance(s.message, message_type))
            and (result is None or s.result == result)
        ]

    def handled(self, message_type: type[M]) -> list[M]:
        """The messages of ``message_type`` a handler handled (returned without error)."""
        return [
            s.message
            for s in self.outcomes(message_type, result="handled")
            if s.message is not None
        ]

    def retried(self, message_type: type[M] | None = None) -> list[Settled[M]]:
        """Deliveries whose handler failed and that went to a retry (one per attempt)."""
        return self.outcomes(message_type, result="retried")

    def dead_lettered(
        self, message_type: type[M] | None = None, *, reason: str | None = None
    ) -> list[Settled[M]]:
        """Deliveries moved to the dead-letter route (with ``reason``, if given). Without a
        type, poison is included (its ``message`` is None)."""
        return [
            s
            for s in self.outcomes(message_type, result="dead_lettered")
            if reason is None or s.reason == reason
        ]
