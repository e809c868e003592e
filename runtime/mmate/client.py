"""``Client``: connect, declare, publish, request, serve. Implements ``PublishTransport``.

::

    url = "amqp://guest:guest@127.0.0.1:5672/"
    async with mmate.Client(url, service="order-service") as client:
        await client.declare(topology.ORDER_SERVICE)
        serving = await client.serve(MyOrderHandlers())
        await StorefrontPublisher(client).send_create_order_command(cmd)
        await serving.stop()

Architecture: one aiormq connection (``connection.Connection``) owns every channel. ``publishing``
has the confirm-mode channel all publishes share (pipelined, bounded in flight), ``reply`` the
per-client reply queue, ``consumer`` one channel per consumed queue, ``declare`` a short-lived one
per declaration. ``codec`` turns models into envelopes and back, ``failure`` decides about every
failed delivery.

Task safety: every coroutine method may be called concurrently from any task of one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from ._consuming.consumer import ConsumerSettings, QueueConsumer, Route
from ._contract.handler import HandlerBase
from ._contract.model import Model
from ._contract.options import PublishOptions
from ._contract.publish_method import PublishMethod
from ._contract.publisher import PublishTransport
from ._contract.topology import HeaderValue, MessageDef, PublishRoute, ServiceTopology
from ._delays.cascade import DEFAULT_PREFIX, DelayMode, delay_seconds, delayed
from ._delays.relay import DelayService
from ._failures.breaker import CircuitBreaker
from ._failures.handler_breaker import DEFAULT_HANDLER_BREAKER, HandlerBreakerOptions
from ._observation.interceptors import Draft, Interceptor, Interceptors, PublishKind, publish_info
from ._publishing import routing
from ._publishing.breaker import GuardedPublisher, PublishBreakerOptions
from ._publishing.confirmed import ConfirmedPublisher, Outgoing
from ._publishing.requests import ReplyQueue
from ._publishing.transaction import Transaction
from ._topology.declare import declare_topology
from ._transport.connection import Connection
from ._transport.recovery import ReconnectPolicy, StateCallback
from ._wire import envelope as codec
from ._wire.envelope import Envelope
from .errors import DecodeError, FeatureNotAvailable, MmateError, RemoteError, RequestTimeout

log = logging.getLogger("mmate.client")

R = TypeVar("R", bound=Model)
M = TypeVar("M", bound=Model)

_KNOWN_OPTIONS = frozenset(PublishOptions.__annotations__)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True)
class Publication:
    """One message for ``Client.publish_many``: what a generated publisher method would publish."""

    route: PublishRoute
    message: Model
    routing_key: str = ""
    options: PublishOptions = field(default_factory=lambda: PublishOptions())


class Client:
    """A service's connection to RabbitMQ; ``async with`` connects and closes it.

    ``url``: ``amqp://`` or ``amqps://`` (vhost as path; aiormq's query parameters such as
    ``cafile``, ``certfile``, ``keyfile`` work; or pass ``ssl_context``), or several (a cluster's
    nodes, tried in turn; for ``connect_retry`` seconds with backoff when none answers at first).
    The connection is named after ``service`` in the management UI; a lost one is recovered as
    ``reconnect`` says (``ReconnectPolicy``; state changes through
    ``on_state``). ``publish_timeout`` and ``request_timeout`` are the
    defaults of the ``timeout`` publish option; ``max_in_flight`` bounds unconfirmed publishes.
    ``publish_breaker`` puts a circuit breaker around publishing (``mmate.publish_breaker``; off
    when None). ``interceptors`` run around every publish and handled message, the first
    outermost (``mmate.interceptors``).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        service: str,
        heartbeat: int = 30,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 15.0,
        connect_retry: float = 0.0,
        reconnect: ReconnectPolicy | None = None,
        publish_timeout: float = 10.0,
        request_timeout: float = 30.0,
        max_in_flight: int = 1000,
        publish_breaker: PublishBreakerOptions | None = None,
        handler_breaker: HandlerBreakerOptions | None = DEFAULT_HANDLER_BREAKER,
        delay_mode: DelayMode = "cascade",
        delay_relay: bool = True,
        delay_prefix: str = DEFAULT_PREFIX,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        if not service:
            raise MmateError("Client needs a service name")
        self._interceptors = Interceptors.of(interceptors)
        chain = self._interceptors
        self._publish_chain = chain if chain is not None and chain.publishes else None
        """None when no interceptor wraps publishing: the publish paths skip it entirely."""
        self.service = service
        self._connect_retry = connect_retry
        self._connection = Connection(
            url,
            service=service,
            heartbeat=heartbeat,
            ssl_context=ssl_context,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
        )
        self._publisher: ConfirmedPublisher | GuardedPublisher = ConfirmedPublisher(
            self._connection, max_in_flight=max_in_flight, timeout=publish_timeout
        )
        if publish_breaker is not None:
            self._publisher = GuardedPublisher(self._publisher, publish_breaker)
        self._replies = ReplyQueue(self._connection, service)
        self._request_timeout = request_timeout
        self._handler_breaker = handler_breaker
        self._publish_timeout = publish_timeout
        self._servings: list[Serving] = []
        self._declared: dict[str, tuple[ServiceTopology, bool]] = {}
        self._connection.on_reconnect(self._redeclare)
        # Delayed delivery (delay.py, delay_relay.py): declared on first use, relayed by this
        # client when delay_relay is on and it published a delayed message or serves handlers.
        self._delays = DelayService(
            self._connection, mode=delay_mode, prefix=delay_prefix, publish_timeout=publish_timeout
        )
        self._delay_relay = delay_relay
        self._connection.on_reconnect(self._delays.redeclare)
        for interceptor in interceptors:
            interceptor.bind(self)

    def __repr__(self) -> str:
        return f"<mmate.Client service={self.service!r} {self._connection.url}>"

    @property
    def connection(self) -> Connection:
        return self._connection

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
        await self._connection.open(retry_for=self._connect_retry)
        if self._delays.mode == "plugin":
            await self._delays.ensure()  # FeatureNotAvailable now, not at the first delay

    async def close(self, timeout: float = 30.0) -> None:
        """Stop every ``serve`` gracefully (``timeout`` each), then close channels and
        connection."""
        for serving in list(self._servings):
            await serving.stop(timeout)
        await self._delays.stop()
        await self._replies.close()
        await self._publisher.close()
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
        await declare_topology(self._connection, topology, passive=passive)
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
        for topology, passive in list(self._declared.values()):
            await declare_topology(self._connection, topology, passive=passive)

    # -- publishing -------------------------------------------------------------------------------

    def _outgoing(
        self,
        route: PublishRoute,
        message: Model | Mapping[str, Any],
        routing_key: str,
        options: PublishOptions,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> Outgoing:
        unknown = options.keys() - _KNOWN_OPTIONS
        if unknown:
            raise MmateError(f"unknown publish options: {', '.join(sorted(unknown))}")
        wait: int | None = None
        if "delay" in options or "schedule_at" in options:
            wait = delay_seconds(options.get("delay"), options.get("schedule_at"))
        expiration: int | None = None
        if "ttl" in options:
            expiration = round(_seconds(options["ttl"]) * 1000)
            if expiration < 0:
                raise MmateError(f"ttl must not be negative, got {options['ttl']!r}")
        priority = options.get("priority", route.priority)
        if priority is not None and not 0 <= priority <= 255:
            raise MmateError(f"priority must be 0-255, got {priority}")
        key = options.get("routing_key") or routing_key
        if not key and isinstance(message, Model):
            key = routing.fill(route.routing_key, message)
        reply_to = reply_to or options.get("reply_to")
        if reply_to and isinstance(message, Model) and not getattr(message, "reply_to", "x"):
            # A command's payload.replyTo is where a Go handler looks; fill it unless already set.
            message = codec.with_reply_to(route.message, message, reply_to)
        encoded = codec.encode(
            route.message,
            message,
            app_id=self.service,
            correlation_id=correlation_id or options.get("correlation_id"),
            reply_to=reply_to,
            headers=options.get("headers"),
            expiration_ms=expiration,
            priority=priority,
            persistent=options.get("persistent", route.persistent),
            message_id=options.get("message_id"),
        )
        out = Outgoing(encoded, options.get("exchange", route.exchange), key)
        if wait is not None:
            out = delayed(out, wait, self._delays.topology, self._delays.mode)
        return out

    async def _prepare_delays(self, items: Iterable[Outgoing], *, single: bool = True) -> None:
        """Declare the delay infrastructure (and start the relay) before the first delayed
        publish."""
        if not single and any(self._delays.needs_plugin_send(out) for out in items):
            raise FeatureNotAvailable(
                "delay_mode='plugin' delays one publish at a time; batches and publish_many "
                "need delay_mode='cascade'. Nothing was published"
            )
        if any(self._delays.is_delayed(out) for out in items):
            if self._delay_relay:
                await self._delays.start_relay()
            else:
                await self._delays.ensure()

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None:
        """Publish and return once the broker confirmed it (``PublishError`` subclasses
        otherwise)."""
        out = self._outgoing(route, message, routing_key, options)
        await self._send_intercepted(
            "publish", out, route, message, routing_key, options, options.get("timeout")
        )

    async def _send_intercepted(
        self,
        kind: PublishKind,
        out: Outgoing,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        options: PublishOptions,
        timeout: float | None,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """``_send_one``, through the publish interceptors when there are any."""
        chain = self._publish_chain
        if chain is None:
            await self._send_one(out, timeout)
            return
        draft = self._draft(
            kind,
            out,
            route,
            message,
            routing_key,
            options,
            correlation_id=correlation_id,
            reply_to=reply_to,
        )
        await chain.publish_one(draft, lambda final: self._send_one(final, timeout))

    def _draft(
        self,
        kind: PublishKind,
        out: Outgoing,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        options: PublishOptions,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> Draft:
        """What the interceptors see of ``out``, and how to encode it again with their headers."""

        def reencode(headers: Mapping[str, HeaderValue]) -> Outgoing:
            again = options.copy()
            again["headers"] = headers
            again["message_id"] = out.encoded.message_id
            return self._outgoing(
                route, message, routing_key, again, correlation_id=correlation_id, reply_to=reply_to
            )

        return Draft(publish_info(out, kind, options.get("headers")), out, reencode)

    async def _send_one(self, out: Outgoing, timeout: float | None) -> None:
        """Send one message: into the delay infrastructure (declared first) or straight."""
        await self._prepare_delays((out,))
        if self._delays.needs_plugin_send(out):
            await self._delays.send_to_plugin(out, timeout=timeout)
        else:
            await self._publisher.send(out, timeout=timeout)

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
        wanted = list(publications)
        items = [self._outgoing(p.route, p.message, p.routing_key, p.options) for p in wanted]
        chain = self._publish_chain
        if chain is None:
            await self._send_many(items, timeout)
            return
        drafts = [
            self._draft("batch", out, p.route, p.message, p.routing_key, p.options)
            for p, out in zip(wanted, items, strict=True)
        ]
        await chain.publish_batch(drafts, lambda finals: self._send_many(finals, timeout))

    async def _send_many(self, items: Sequence[Outgoing], timeout: float | None) -> None:
        await self._prepare_delays(items, single=False)
        await self._publisher.send_many(items, timeout=timeout)

    def batch(self, *, timeout: float | None = None) -> Batch:
        """A ``PublishTransport`` that collects publishes and sends them together on exit."""
        return Batch(self, timeout)

    def begin_tx(self, *, timeout: float | None = None) -> Transaction:
        """A publish transaction, a ``PublishTransport`` on a channel of its own: its messages
        reach their queues only on commit (``async with`` commits, or rolls back on an exception;
        see ``mmate.tx``). ``timeout`` bounds the commit (default ``publish_timeout``)."""
        limit = self._publish_timeout if timeout is None else timeout

        async def prepare(items: Sequence[Outgoing]) -> None:
            # Like a batch: plugin-mode delays (never mandatory) cannot be in a transaction.
            await self._prepare_delays(items, single=False)

        chain = self._publish_chain
        if chain is None:
            return Transaction(self._connection, self._outgoing, timeout=limit, prepare=prepare)

        async def intercept(
            out: Outgoing,
            route: PublishRoute,
            message: Model,
            routing_key: str,
            options: PublishOptions,
            write: Callable[[Outgoing], Awaitable[None]],
        ) -> None:
            draft = self._draft("transaction", out, route, message, routing_key, options)
            await chain.publish_one(draft, write)

        return Transaction(
            self._connection, self._outgoing, timeout=limit, prepare=prepare, intercept=intercept
        )

    @property
    def resent(self) -> int:
        """Publishes sent again because their confirm was lost with a channel or connection."""
        return self._publisher.resent

    @property
    def publish_breaker(self) -> CircuitBreaker | None:
        """The circuit breaker around publishing (``.state``), None when it is off."""
        publisher = self._publisher
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
        ``timeout`` option (default ``request_timeout``), ``RemoteError`` for an error reply,
        ``DecodeError`` for a reply that fails validation.
        """
        queue = await self._replies.ensure()
        correlation_id = options.get("correlation_id") or codec.new_id()
        if self._replies.in_use(correlation_id):
            correlation_id = codec.new_id()  # the matching key must be unique among open requests
        query = codec.with_reply_to(route.message, message, queue)
        out = self._outgoing(
            route, query, routing_key, options, correlation_id=correlation_id, reply_to=queue
        )
        timeout = options.get("timeout", self._request_timeout)
        waiter = self._replies.expect(correlation_id)
        try:
            async with asyncio.timeout(timeout):
                # The request's own timeout bounds the send: a delayed query waits for its delay.
                await self._send_intercepted(
                    "request",
                    out,
                    route,
                    query,
                    routing_key,
                    options,
                    None,
                    correlation_id=correlation_id,
                    reply_to=queue,
                )
                self._replies.sent(correlation_id)
                envelope = await waiter
        except TimeoutError:
            raise RequestTimeout(route.message.name, correlation_id, timeout) from None
        finally:
            self._replies.forget(correlation_id)
        return _reply_model(envelope, reply, correlation_id)

    async def _send_reply(
        self,
        request: Envelope,
        property_reply_to: str | None,
        reply: MessageDef,
        payload: Model | dict[str, Any],
    ) -> None:
        address = codec.reply_address(request, property_reply_to)
        if not address:
            raise MmateError(f"{request.type} {request.id} names no reply address")
        correlation_id = request.correlation_id or request.id

        def encode(
            headers: Mapping[str, HeaderValue] | None = None, message_id: str | None = None
        ) -> Outgoing:
            encoded = codec.encode(
                reply,
                payload,
                app_id=self.service,
                correlation_id=correlation_id,
                headers=headers,
                message_id=message_id,
            )
            return Outgoing(encoded, "", address)

        out = encode()
        chain = self._publish_chain
        if chain is None:
            await self._publisher.send(out)
            return

        def reencode(headers: Mapping[str, HeaderValue]) -> Outgoing:
            return encode(headers, out.encoded.message_id)

        draft = Draft(publish_info(out, "reply", None), out, reencode)
        await chain.publish_one(draft, self._publisher.send)

    # -- consuming --------------------------------------------------------------------------------

    async def serve(
        self,
        handlers: HandlerBase,
        *,
        queues: Iterable[str] | None = None,
        auto_ack: bool = False,
        prefetch: int | None = None,
        concurrency: int | None = None,
        handler_timeout: float | None = 600.0,
    ) -> Serving:
        """Consume every queue of ``handlers.TOPOLOGY.consumes`` (or only ``queues``) and dispatch.

        Prefetch and concurrency default to the queue's spec values. Returns a ``Serving``; its
        ``stop`` (also called by ``Client.close``) shuts down gracefully.
        """
        table = dispatch_table(handlers)
        if queues is not None:
            wanted = set(queues)
            missing = wanted - table.keys()
            if missing:
                raise MmateError(f"{type(handlers).__name__} does not consume {sorted(missing)}")
            table = {q: r for q, r in table.items() if q in wanted}
        queue_defs = {q.name: q for q in type(handlers).TOPOLOGY.queues}
        if self._delay_relay:  # a serving client relays delayed messages
            await self._delays.start_relay(required=False)
        serving = Serving(self)
        try:
            for queue, routes in table.items():
                qdef = queue_defs.get(queue)
                settings = ConsumerSettings(
                    prefetch=prefetch or (qdef.prefetch if qdef else 10),
                    concurrency=concurrency or (qdef.concurrency if qdef else 10),
                    auto_ack=auto_ack,
                    handler_timeout=handler_timeout,
                    queue_def=qdef,
                    breaker=self._handler_breaker,
                    move_timeout=self._publish_timeout,
                    delays=self._delays if self._delay_relay else None,
                    interceptors=self._interceptors,
                )
                consumer = QueueConsumer(
                    self._connection,
                    queue,
                    routes,
                    settings,
                    transport=self,
                    send_reply=self._send_reply,
                    redeclare=self._redeclare,
                )
                await consumer.start()
                serving.consumers.append(consumer)
        except BaseException:
            await serving.stop(0)
            raise
        self._servings.append(serving)
        return serving


def _reply_model(envelope: Envelope, reply: type[R], correlation_id: str) -> R:
    failure = codec.reply_failure(envelope)
    if failure is not None:
        raise RemoteError(
            failure[0], failure[1], reply_type=envelope.type, correlation_id=correlation_id
        )
    try:
        return reply.model_validate(envelope.payload)
    except ValueError as exc:
        raise DecodeError(
            f"reply {envelope.type} {envelope.id} fails validation as {reply.__name__}: {exc}",
            message_type=envelope.type,
            message_id=envelope.id,
        ) from None


def dispatch_table(handlers: HandlerBase) -> dict[str, dict[str, Route]]:
    """Queue -> wire type -> route, built once from ``TOPOLOGY.consumes`` (bound methods
    resolved)."""
    cls = type(handlers)
    topology = getattr(cls, "TOPOLOGY", None)
    if not isinstance(topology, ServiceTopology):
        raise MmateError(f"{cls.__name__} has no TOPOLOGY; subclass a generated Handlers class")
    table: dict[str, dict[str, Route]] = {}
    for queue, types in topology.consumes.items():
        routes: dict[str, Route] = {}
        for type_name, handler_route in types.items():
            method = getattr(handlers, handler_route.method, None)
            if not callable(method) or getattr(method, "__isabstractmethod__", False):
                raise MmateError(
                    f"{cls.__name__} does not implement {handler_route.method}() for {type_name} "
                    f"on queue {queue!r}"
                )
            reply_def: MessageDef | None = None
            if handler_route.message.kind == "query":
                reply_name = handler_route.message.reply or ""
                reply_def = topology.messages.get(reply_name)
                if reply_def is None:
                    raise MmateError(
                        f"{type_name}: its reply {reply_name!r} is not among the messages "
                        f"of {topology.name}"
                    )
            routes[type_name] = Route(handler_route.message, method, reply_def)
        table[queue] = routes
    return table


class Serving:
    """The consumers started by one ``Client.serve`` call."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.consumers: list[QueueConsumer] = []
        self._stopped = False
        self._done = asyncio.Event()

    def __repr__(self) -> str:
        return f"<mmate.Serving {[c.queue for c in self.consumers]}>"

    @property
    def handled(self) -> int:
        return sum(c.handled for c in self.consumers)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.consumers)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming, let in-flight handlers finish within ``timeout`` and ack them."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await asyncio.gather(*(c.stop(timeout) for c in self.consumers))
        finally:
            if self in self._client._servings:
                self._client._servings.remove(self)
            self._done.set()

    async def wait(self) -> None:
        """Return once ``stop`` has finished (called by a signal handler or ``Client.close``)."""
        await self._done.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Batch:
    """Collects publishes (``PublishTransport``) and sends them together, all confirms awaited at
    once.

    ``publish`` only encodes and records (it returns before anything is sent); ``send`` (or leaving
    ``async with`` without an exception) publishes them and raises ``BatchPublishError`` naming
    exactly the failed ones. ``request`` is not available in a batch.
    """

    def __init__(self, client: Client, timeout: float | None) -> None:
        self._client = client
        self._timeout = timeout
        self._items: list[Outgoing] = []
        self._drafts: list[Draft] = []
        """With publish interceptors: what they see of each item."""

    def __len__(self) -> int:
        return len(self._items)

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None:
        client = self._client
        out = client._outgoing(route, message, routing_key, options)
        self._items.append(out)
        if client._publish_chain is not None:
            self._drafts.append(client._draft("batch", out, route, message, routing_key, options))

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
        chain = self._client._publish_chain
        if chain is None:
            await self._client._send_many(items, self._timeout)
        else:
            timeout = self._timeout
            await chain.publish_batch(
                drafts, lambda finals: self._client._send_many(finals, timeout)
            )

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


def _implements_publish_transport(client: Client, batch: Batch) -> tuple[PublishTransport, ...]:
    """Never called: mypy checks that both classes satisfy the ``PublishTransport`` protocol."""
    return (client, batch)
