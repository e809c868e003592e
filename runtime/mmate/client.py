"""``Client``: connect, declare, publish, request, serve. Implements ``PublishTransport``.

::

    url = "amqp://guest:guest@127.0.0.1:5672/"
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(topology.ORDER_SERVICE)
        serving = await client.serve(MyOrderHandlers())
        await StorefrontPublisher(client).send_create_order_command(cmd)
        await serving.stop()

The client composes the parts (docs/architecture.md has the map): a ``Connection`` through a
transport backend (``_transport``), an ``Outbox`` that encodes and sends every publish
(``_publishing``), a ``ReplyQueue`` for requests, the delay infrastructure (``_delays``), and one
``QueueConsumer`` per served queue (``_consuming``). Task safety: every coroutine method may be
called concurrently from any task of one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self, TypedDict, TypeVar, Unpack

from ._consuming.consumer import DEFAULT_MAX_DECOMPRESSED_BYTES, ConsumerSettings, QueueConsumer
from ._consuming.dispatch import Handlers, dispatch_table
from ._consuming.serving import Serving
from ._contract.model import Model
from ._contract.options import PublishOptions
from ._contract.publish_method import PublishMethod
from ._contract.publisher import PublishTransport
from ._contract.topology import PublishRoute, ServiceTopology
from ._delays.cascade import DEFAULT_PREFIX, DelayMode
from ._delays.relay import DelayService
from ._failures.breaker import CircuitBreaker
from ._failures.handler_breaker import DEFAULT_HANDLER_BREAKER, HandlerBreakerOptions
from ._observation.interceptors import Interceptor, Interceptors
from ._publishing.batch import Batch, Publication
from ._publishing.breaker import GuardedPublisher, PublishBreakerOptions
from ._publishing.confirmed import ConfirmedPublisher
from ._publishing.outbox import DEFAULT_MAX_PUBLISH_BYTES, Outbox
from ._publishing.pool import PublisherPool
from ._publishing.requests import ReplyQueue, reply_model
from ._publishing.transaction import Transaction
from ._topology.declare import declare_topology, redeclare_after_reconnect
from ._topology.placement import LeaderLocator, QueuePlacement
from ._transport.connection import Connection, UrlOrder
from ._transport.recovery import ReconnectPolicy, StateCallback
from ._wire import envelope as codec
from .errors import MmateError, RequestTimeout

log = logging.getLogger("mmate.client")

R = TypeVar("R", bound=Model)
M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a ``Client`` connects, publishes and consumes; every field has a default.

    Pass one as ``Client(url, service=..., settings=ClientSettings(...))``, or give single fields
    as keyword arguments (``Client(url, service=..., publish_timeout=5)``), which override it.
    """

    heartbeat: int = 30
    """Seconds between AMQP heartbeats; a silent network cut is noticed after about three."""
    ssl_context: ssl.SSLContext | None = None
    """For ``amqps://`` URLs (or use aiormq's ``cafile``/``certfile``/``keyfile`` query)."""
    connect_timeout: float = 15.0
    connect_retry: float = 0.0
    """Seconds the first ``connect`` keeps retrying (for a service that starts before its
    broker); 0: each URL once."""
    reconnect: ReconnectPolicy | None = None
    """How a lost connection is recovered (``ReconnectPolicy()`` when None)."""
    publish_timeout: float = 10.0
    """Default ``timeout`` of a publish (write and confirm)."""
    request_timeout: float = 30.0
    """Default ``timeout`` of a request (its reply)."""
    max_in_flight: int = 1000
    """Unconfirmed publishes at once (in all, over the channels of a pool)."""
    publish_connections: int = 1
    """Connections publishing is spread over: this client's own and ``publish_connections - 1``
    more, each recovering on its own (docs/runtime/pools.md)."""
    channels_per_connection: int = 1
    """Confirm-mode publishing channels on each publishing connection."""
    channel_timeout: float | None = None
    """Seconds a publish may wait for a publishing channel (a free slot in the window of
    unconfirmed publishes, the channel being opened, its connection being recovered) before
    ``ChannelTimeout``; None: only the publish timeout bounds the wait."""
    publish_breaker: PublishBreakerOptions | None = None
    """A circuit breaker around publishing; off when None."""
    handler_breaker: HandlerBreakerOptions | None = DEFAULT_HANDLER_BREAKER
    """The per-queue circuit breaker around handlers; off when None."""
    delay_mode: DelayMode = "cascade"
    delay_relay: bool = True
    """This client relays delayed messages once it published one or serves handlers."""
    delay_prefix: str = DEFAULT_PREFIX
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    """A compressed body is inflated to at most this many bytes where its queue sets no
    ``max_message_bytes`` (16 MiB); a larger one is dead-lettered as ``oversized``."""
    max_publish_bytes: int = DEFAULT_MAX_PUBLISH_BYTES
    """The largest body this client publishes, after compression (128 MiB, RabbitMQ 3.x's
    default ``max_message_size``; 16 MiB on RabbitMQ 4): a larger publish raises
    ``MessageTooLarge`` before anything is sent."""
    url_order: UrlOrder = "random"
    """With several broker URLs (a cluster's nodes): ``random`` starts at a random one per
    connection, so clients sharing one URL list spread over the nodes; ``ordered`` always starts
    at the first (a preferred node, the others as fallbacks). Either way recovery moves on to the
    next URL in the list."""
    queue_leader_locator: LeaderLocator | None = "balanced"
    """``x-queue-leader-locator`` of the quorum queues this client declares: ``balanced`` spreads
    their leaders over the cluster's nodes, ``client-local`` puts them on the declaring node,
    None leaves it to the broker (and its policies). An existing queue declared without it is
    kept as it is."""
    quorum_initial_group_size: int | None = None
    """``x-quorum-initial-group-size`` of new quorum queues (replicas); None: every node."""

    @property
    def placement(self) -> QueuePlacement:
        """Where new quorum queues go (``queue_leader_locator``, ``quorum_initial_group_size``)."""
        return QueuePlacement(self.queue_leader_locator, self.quorum_initial_group_size)


class ClientOptions(TypedDict, total=False):
    """The fields of ``ClientSettings``, as keyword arguments of ``Client``."""

    heartbeat: int
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    connect_retry: float
    reconnect: ReconnectPolicy | None
    publish_timeout: float
    request_timeout: float
    max_in_flight: int
    publish_connections: int
    channels_per_connection: int
    channel_timeout: float | None
    publish_breaker: PublishBreakerOptions | None
    handler_breaker: HandlerBreakerOptions | None
    delay_mode: DelayMode
    delay_relay: bool
    delay_prefix: str
    max_decompressed_bytes: int
    max_publish_bytes: int
    url_order: UrlOrder
    queue_leader_locator: LeaderLocator | None
    quorum_initial_group_size: int | None


class Client:
    """A service's connection to its broker; ``async with`` connects and closes it.

    ``url``: ``amqp://`` or ``amqps://`` (the vhost as path), several of them (a cluster's nodes,
    tried in turn), or ``memory://[name]`` (the in-process broker). The connection is named after
    ``service`` in the management UI. ``settings`` (``ClientSettings``) and keyword ``options``
    say how it connects, publishes and consumes. ``interceptors`` run around every publish and
    handled message, the first outermost.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        service: str,
        settings: ClientSettings | None = None,
        interceptors: Sequence[Interceptor] = (),
        **options: Unpack[ClientOptions],
    ) -> None:
        if not service:
            raise MmateError("Client needs a service name")
        known = {f.name for f in fields(ClientSettings)}
        unknown = options.keys() - known
        if unknown:
            raise MmateError(f"unknown Client options: {', '.join(sorted(unknown))}")
        self.settings = s = replace(settings or ClientSettings(), **options)
        for name in ("max_decompressed_bytes", "max_publish_bytes"):
            if getattr(s, name) < 1:
                raise MmateError(f"{name} must be at least 1 byte, got {getattr(s, name)!r}")
        self._placement = s.placement  # checks the two placement settings now
        self.service = service
        self._url = url
        self._connection = self._new_connection()
        if s.publish_connections < 1 or s.channels_per_connection < 1:
            raise MmateError("publish_connections and channels_per_connection must be at least 1")
        self._publish_connections = [self._connection] + [
            self._new_connection(f"publish {n}/{s.publish_connections}")
            for n in range(2, s.publish_connections + 1)
        ]
        confirmed: ConfirmedPublisher | PublisherPool
        if len(self._publish_connections) == 1 and s.channels_per_connection == 1:
            confirmed = ConfirmedPublisher(
                self._connection,
                max_in_flight=s.max_in_flight,
                timeout=s.publish_timeout,
                channel_timeout=s.channel_timeout,
            )
        else:
            confirmed = PublisherPool(
                self._publish_connections,
                s.channels_per_connection,
                max_in_flight=s.max_in_flight,
                timeout=s.publish_timeout,
                channel_timeout=s.channel_timeout,
            )
        publisher: ConfirmedPublisher | PublisherPool | GuardedPublisher = confirmed
        if s.publish_breaker is not None:
            publisher = GuardedPublisher(confirmed, s.publish_breaker)
        # Delayed delivery: declared on first use, relayed by this client when delay_relay is
        # on and it published a delayed message or serves handlers.
        self._delays = DelayService(
            self._connection,
            mode=s.delay_mode,
            prefix=s.delay_prefix,
            publish_timeout=s.publish_timeout,
            placement=self._placement,
        )
        self._interceptors = Interceptors(interceptors)
        self._outbox = Outbox(
            service=service,
            publisher=publisher,
            delays=self._delays,
            relay_delays=s.delay_relay,
            interceptors=self._interceptors,
            max_publish_bytes=s.max_publish_bytes,
        )
        self._replies = ReplyQueue(self._connection, service)
        self._servings: list[Serving] = []
        self._declared: dict[str, tuple[ServiceTopology, bool]] = {}
        self._connection.on_reconnect(self._recover_topology)
        self._connection.on_reconnect(self._delays.redeclare)
        for interceptor in interceptors:
            interceptor.bind(self)

    def _new_connection(self, label: str | None = None) -> Connection:
        """A connection with this client's settings (the client's own, one more of the publish
        pool, or one more for a consumer group spread over connections)."""
        s = self.settings
        return Connection(
            self._url,
            service=self.service,
            heartbeat=s.heartbeat,
            ssl_context=s.ssl_context,
            connect_timeout=s.connect_timeout,
            reconnect=s.reconnect,
            label=label,
            url_order=s.url_order,
        )

    def __repr__(self) -> str:
        return f"<mmate.Client service={self.service!r} {self._connection.url}>"

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def connections(self) -> list[Connection]:
        """Every connection of this client: its own, the other publishing ones
        (``publish_connections``) and those of its consumer groups (``serve(connections=...)``)."""
        found = list(self._publish_connections)
        for serving in self._servings:
            found.extend(serving.connections)
        return found

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(ConnectionEvent)`` on every connection state change (connecting,
        connected, lost, reconnecting, recovered, failed, closed); returns an unsubscribe."""
        return self._connection.on_state(callback)

    @property
    def reply_queue(self) -> str:
        """The name of this client's reply queue (declared on the first request)."""
        return self._replies.name

    async def connect(self) -> None:
        """Connect (``connect_retry`` seconds of retrying with the reconnect backoff when the
        broker is not there yet; 0: each URL once)."""
        await self._connection.open(retry_for=self.settings.connect_retry)
        try:
            for extra in self._publish_connections[1:]:
                await extra.open(retry_for=self.settings.connect_retry)
        except BaseException:
            for opened in self._publish_connections:
                await opened.close()
            raise
        if self._delays.mode == "plugin":
            await self._delays.ensure()  # FeatureNotAvailable now, not at the first delay

    async def close(self, timeout: float = 30.0) -> None:
        """Stop every ``serve`` gracefully (``timeout`` each), then close channels and
        connection."""
        for serving in list(self._servings):
            await serving.stop(timeout)
        await self._delays.stop()
        await self._replies.close()
        await self._outbox.publisher.close()
        for extra in self._publish_connections[1:]:
            await extra.close()
        await self._connection.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- topology ---------------------------------------------------------------------------------

    async def declare(self, topology: ServiceTopology, *, passive: bool = False) -> None:
        """Declare the topology (idempotent); ``passive=True`` only verifies that it exists.

        The client remembers it and declares (verifies) it again after a reconnect.
        """
        await declare_topology(
            self._connection, topology, passive=passive, placement=self._placement
        )
        self._declared[topology.name] = (topology, passive)

    @property
    def declared(self) -> list[ServiceTopology]:
        """The topologies declared (or verified) through this client, redeclared on recovery."""
        return [topology for topology, _passive in self._declared.values()]

    @property
    def servings(self) -> list[Serving]:
        """The running ``serve`` calls (their ``consumers``), in start order."""
        return list(self._servings)

    async def _redeclare(self) -> None:
        """Everything declared, again (a consumer's queue was deleted under it)."""
        for topology, passive in list(self._declared.values()):
            await declare_topology(
                self._connection, topology, passive=passive, placement=self._placement
            )

    async def _recover_topology(self) -> None:
        """After a reconnect: only what may be gone (``redeclare_after_reconnect``)."""
        for topology, passive in list(self._declared.values()):
            await redeclare_after_reconnect(
                self._connection, topology, passive=passive, placement=self._placement
            )

    # -- publishing -------------------------------------------------------------------------------

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None:
        """Publish and return once the broker confirmed it (``PublishError`` subclasses
        otherwise)."""
        out = self._outbox.encode(route, message, routing_key, options)
        await self._outbox.send("publish", out, route, message, routing_key, options)

    async def publish_with_delay(
        self,
        publish: PublishMethod[M],
        message: M,
        delay: float | timedelta,
        /,
        **options: Unpack[PublishOptions],
    ) -> None:
        """Publish ``message`` through a generated publisher method, delivered after ``delay``
        (seconds or timedelta, rounded up to whole seconds; the seed's ``PublishWithDelay``).

        ``await client.publish_with_delay(publisher.publish_order_created_event, event, 30)``
        """
        wanted = PublishOptions(**options)
        wanted["delay"] = delay
        await publish(message, **wanted)

    async def schedule_command(
        self,
        send: PublishMethod[M],
        command: M,
        at: datetime,
        /,
        **options: Unpack[PublishOptions],
    ) -> None:
        """Send ``command`` through a generated publisher method, delivered at ``at`` (timezone-
        aware; a past time means now; the seed's ``ScheduleCommand``).

        ``await client.schedule_command(publisher.send_create_order_command, cmd, tomorrow_9am)``
        """
        wanted = PublishOptions(**options)
        wanted["schedule_at"] = at
        await send(command, **wanted)

    async def run_delay_relay(self) -> None:
        """Declare the delay infrastructure and relay its ready messages from this client
        (idempotent; also started by the first delayed publish and by ``serve`` unless
        ``delay_relay=False``). Stopped by ``close``."""
        await self._delays.start_relay()

    @property
    def delays(self) -> DelayService:
        """The delay infrastructure of this client (topology names, relay counters)."""
        return self._delays

    async def publish_many(
        self, publications: Iterable[Publication], *, timeout: float | None = None
    ) -> None:
        """Publish all, pipelined, and await every confirm together.

        Raises ``BatchPublishError`` whose ``failures`` name the index, message id and error of each
        failed message; every other message was confirmed. Encoding errors raise before anything is
        sent.
        """
        batch = Batch(self._outbox, timeout)
        for publication in publications:
            batch.add(publication)
        await batch.send()

    def batch(self, *, timeout: float | None = None) -> Batch:
        """A ``PublishTransport`` that collects publishes and sends them together on exit."""
        return Batch(self._outbox, timeout)

    def begin_tx(self, *, timeout: float | None = None) -> Transaction:
        """A publish transaction, a ``PublishTransport`` on a channel of its own: its messages
        reach their queues only on commit (``async with`` commits, or rolls back on an exception).
        ``timeout`` bounds the commit (default ``publish_timeout``)."""
        limit = self.settings.publish_timeout if timeout is None else timeout
        return Transaction(self._connection, self._outbox, timeout=limit)

    @property
    def resent(self) -> int:
        """Publishes sent again because their confirm was lost, or the broker nacked them."""
        return self._outbox.publisher.resent

    @property
    def publish_pool(self) -> PublisherPool | None:
        """The publisher pool (``members``, each with its ``connection`` and ``confirmed``
        count), None when publishing uses one channel (``publish_connections`` and
        ``channels_per_connection`` both 1)."""
        publisher = self._outbox.publisher
        if isinstance(publisher, GuardedPublisher):
            inner = publisher.inner
            return inner if isinstance(inner, PublisherPool) else None
        return publisher if isinstance(publisher, PublisherPool) else None

    @property
    def publish_breaker(self) -> CircuitBreaker | None:
        """The circuit breaker around publishing (``.state``), None when it is off."""
        publisher = self._outbox.publisher
        return publisher.breaker if isinstance(publisher, GuardedPublisher) else None

    # -- request/reply ----------------------------------------------------------------------------

    async def request(
        self,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        reply: type[R],
        options: PublishOptions,
    ) -> R:
        """Send a query and wait for its reply.

        Raises ``RequestTimeout`` (query type and correlation id) when none arrives within the
        ``timeout`` option (default ``request_timeout``), ``RemoteError`` for an error reply
        (``success: false``, whatever its type), ``DecodeError`` for a reply of another type or
        one that fails validation.
        """
        queue = await self._replies.ensure()
        correlation_id = options.get("correlation_id") or codec.new_id()
        if self._replies.in_use(correlation_id):
            correlation_id = codec.new_id()  # the matching key must be unique among open requests
        query = codec.with_reply_to(route.message, message, queue)
        outbox = self._outbox
        out = outbox.encode(
            route, query, routing_key, options, correlation_id=correlation_id, reply_to=queue
        )
        timeout = options.get("timeout", self.settings.request_timeout)
        waiter = self._replies.expect(correlation_id)
        send_options = options.copy()
        send_options.pop("timeout", None)  # the request's timeout bounds the send
        try:
            async with asyncio.timeout(timeout):
                # The request's own timeout bounds the send: a delayed query waits for its delay.
                await outbox.send(
                    "request",
                    out,
                    route,
                    query,
                    routing_key,
                    send_options,
                    correlation_id=correlation_id,
                    reply_to=queue,
                )
                self._replies.sent(correlation_id)
                envelope = await waiter
        except TimeoutError:
            raise RequestTimeout(
                route.message.name,
                correlation_id,
                timeout,
                unreadable=self._replies.unreadable(correlation_id),
            ) from None
        finally:
            self._replies.forget(correlation_id)
        return reply_model(
            envelope, route.message.reply, reply, correlation_id, query_type=route.message.name
        )

    # -- consuming --------------------------------------------------------------------------------

    async def serve(
        self,
        handlers: Handlers,
        *more: Handlers,
        queues: Iterable[str] | None = None,
        auto_ack: bool = False,
        prefetch: int | None = None,
        concurrency: int | None = None,
        consumers: int | None = None,
        connections: int = 1,
        handler_timeout: float | None = 600.0,
    ) -> Serving:
        """Consume every queue the services of ``handlers`` (and ``more``) consume, or only
        ``queues``, and dispatch.

        ``handlers``: generated ``Handlers`` subclass instances and ``Routes`` registries, one
        service's message types possibly split over several; a consumed type nothing handles is
        an ``MmateError`` naming it. Prefetch, concurrency and ``consumers`` (a consumer group:
        that many AMQP consumers per queue, each on its own channel with its own prefetch and
        concurrency) default to the queue's spec values; ``connections`` > 1 spreads the group
        over that many connections (this client's and new ones, closed with the serving).
        Returns a ``Serving``; its ``stop`` (also called by ``Client.close``) shuts down
        gracefully.
        """
        table = dispatch_table((handlers, *more), queues)
        if (consumers is not None and consumers < 1) or connections < 1:
            raise MmateError("serve: consumers and connections must be at least 1")
        relay = self.settings.delay_relay
        if relay:  # a serving client relays delayed messages, once there are any
            await self._delays.relay_when_used()
        serving = Serving(self._servings.remove)
        links = [self._connection]
        try:
            for _ in range(connections - 1):
                extra = self._new_connection()
                serving.connections.append(extra)
                await extra.open(retry_for=self.settings.connect_retry)
                links.append(extra)
            member = 0
            for queue, routes in table.routes.items():
                qdef = table.queues.get(queue)
                settings = ConsumerSettings(
                    prefetch=prefetch or (qdef.prefetch if qdef else 10),
                    concurrency=concurrency or (qdef.concurrency if qdef else 10),
                    auto_ack=auto_ack,
                    handler_timeout=handler_timeout,
                    queue_def=qdef,
                    breaker=self.settings.handler_breaker,
                    move_timeout=self.settings.publish_timeout,
                    delays=self._delays if relay else None,
                    interceptors=self._interceptors,
                    max_decompressed_bytes=self.settings.max_decompressed_bytes,
                )
                for _ in range(consumers or (qdef.consumers if qdef else 1)):
                    consumer = QueueConsumer(
                        links[member % len(links)],
                        queue,
                        routes,
                        settings,
                        transport=self,
                        send_reply=self._outbox.send_reply,
                        redeclare=self._redeclare,
                    )
                    member += 1
                    await consumer.start()
                    serving.consumers.append(consumer)
        except BaseException:
            self._servings.append(serving)  # stop() removes it again
            await serving.stop(0)
            raise
        self._servings.append(serving)
        return serving


def _implements_publish_transport(client: Client, batch: Batch) -> tuple[PublishTransport, ...]:
    """Never called: mypy checks that both classes satisfy the ``PublishTransport`` protocol."""
    return (client, batch)
