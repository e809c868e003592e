"""The transport seam: the few things the runtime needs from a broker, and the values that cross.

Everything above this seam (publishing, consuming, failure handling, delays, operations) talks to
a broker only through these protocols; a backend implements them. Two backends exist:
``_transport.aiormq`` (RabbitMQ over AMQP 0-9-1, the only code that imports aiormq or pamqp) and
``_transport.memory`` (an in-process broker with RabbitMQ's semantics, for tests). A backend is
chosen by the URL's scheme (``backend_for``).

Shape (three protocols, one level each)::

    Backend.connect(url) -> Link          a live connection; lost (not closed by us): on_lost
    Link.channel(confirms) -> Channel     exchanges, queues, bindings, publish, consume, ack, tx
    Channel.consume(queue, callback)      callback(Delivery) for each message

Contracts every backend keeps, so that the runtime behaves the same on each:

* **Errors** are mmate's (``mmate.errors``), never the backend library's: 404
  ``EntityNotFound``, 406 ``PreconditionFailed``, 403 ``AccessRefused``, 405 ``ResourceLocked``
  (each also closes the channel, as in AMQP), a returned mandatory message ``UnroutableError``, a
  broker nack ``NackError``, a channel closed under the caller ``ChannelClosed`` (with the
  broker's ``reply_code`` / ``reply_text`` when it closed it), a lost or refused connection
  ``BrokerConnectionError``. Every error text names the entity and carries the broker's words.
  ``TimeoutError`` (the builtin) when a ``timeout`` given to a call ran out.
* **A closed channel stays closed**: every later call raises ``ChannelClosed``; the runtime opens
  another (``ManagedChannel``). ``is_open`` is False as soon as the broker or the runtime has
  begun closing it; an ack or nack from then on raises ``ChannelClosed`` (sent between the
  runtime's close and the broker's close-ok, RabbitMQ would close the whole connection with 504).
* **Callbacks** (``consume``, ``on_close``, ``on_cancel``, ``on_return``, ``Link.on_lost``) are
  plain functions called in the event loop; they must not block, and their exceptions are logged.
* **Deliveries of one channel** carry delivery tags 1, 2, 3... in delivery order; ``ack`` /
  ``nack`` with ``multiple`` settle every unsettled tag up to the given one. Unsettled deliveries
  go back to their queue (``redelivered`` set) when their channel or link closes.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import MmateError

ExchangeType = Literal["topic", "direct", "fanout", "headers", "x-delayed-message"]


@dataclass(slots=True)
class Properties:
    """The AMQP basic properties of a message (None: not set)."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    """2: persistent, 1: transient."""
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    """Per-message TTL in milliseconds, as a decimal string."""
    message_id: str | None = None
    timestamp: datetime | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None


@dataclass(slots=True, eq=False)
class Delivery:
    """One message handed to a consumer (or got by ``Channel.get``)."""

    body: bytes
    properties: Properties
    exchange: str
    """The exchange it was published to ("" for the default exchange)."""
    routing_key: str
    delivery_tag: int
    redelivered: bool
    channel: Channel
    """The channel it arrived on: it is settled there (``ack`` / ``nack``), and only there."""
    consumer_tag: str = ""
    settled: bool = field(default=False)
    """Set by the runtime once it acked, nacked or gave the message back; a backend never reads
    it."""

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.headers or {}


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What ``declare_queue`` learned: the queue's name and its counts at that moment."""

    name: str
    message_count: int
    consumer_count: int


@dataclass(frozen=True, slots=True)
class Returned:
    """A mandatory message the broker returned (no queue bound for its route)."""

    message_id: str | None
    reply_code: int
    reply_text: str
    exchange: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Features:
    """What a backend can do, for the conformance suite (a test that needs a missing feature is
    skipped on that backend, naming it) and for errors that refuse what a backend cannot model."""

    name: str
    persistence: bool
    """Messages and durable entities survive a broker restart."""
    clustering: bool
    resource_alarms: bool
    """Memory and disk alarms that block publishers."""
    network_faults: bool
    """Connections can be lost (and recovered)."""
    delayed_message_plugin: bool
    management_api: bool
    virtual_time: bool
    """Time can be advanced by the test (``MemoryBroker.advance``)."""
    amqp_wire: bool
    """It speaks AMQP 0-9-1 on a socket: other clients (aiormq, Go, .NET, the RabbitMQ tools)
    see the same exchanges, queues and messages."""


DeliveryCallback = Callable[[Delivery], None]
ReturnCallback = Callable[[Returned], None]
CloseCallback = Callable[[MmateError | None], None]
"""Called once when the channel closed: with the reason, or None when the runtime closed it."""
CancelCallback = Callable[[str], None]
"""Called with the consumer tag when the broker cancelled that consumer (its queue was deleted,
or a node failover)."""
LostCallback = Callable[[str], None]
"""Called once, with the reason, when a link was lost (not closed by the runtime)."""


@runtime_checkable
class Clock(Protocol):
    """The time of a broker: wall-clock time for RabbitMQ; for the in-memory broker, real time
    plus what a test advanced it by. The runtime reads it wherever broker time matters (turning
    ``schedule_at`` into a delay, the cron scheduler's ticks)."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock have passed."""
        ...


@runtime_checkable
class Channel(Protocol):
    """One AMQP channel. Not safe to share between purposes that may close it: a 404 or 406 closes
    the channel it happened on, so declarations use short-lived channels of their own."""

    @property
    def is_open(self) -> bool:
        """Open, and the broker has not begun closing it."""
        ...

    @property
    def close_reason(self) -> MmateError | None:
        """Why it closed (None while open, or when the runtime closed it)."""
        ...

    @property
    def confirms(self) -> bool:
        """Publisher confirms are on: ``publish`` returns only on the broker's ack."""
        ...

    def on_close(self, callback: CloseCallback) -> None: ...

    async def wait_closed(self, timeout: float) -> MmateError | None:
        """Wait up to ``timeout`` seconds for the channel to close (it is closing, say after an
        error); return its ``close_reason``."""
        ...

    # -- topology ---------------------------------------------------------------------------

    async def declare_exchange(
        self,
        name: str,
        type: ExchangeType = "topic",
        *,
        durable: bool = True,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        passive: bool = False,
    ) -> None: ...

    async def declare_queue(
        self,
        name: str,
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        passive: bool = False,
    ) -> QueueInfo:
        """Declare (``passive``: check) a queue. An empty ``name`` asks the broker for one."""
        ...

    async def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def delete_queue(self, name: str) -> int:
        """Delete a queue (its consumers are cancelled); returns how many messages it held."""
        ...

    async def delete_exchange(self, name: str) -> None: ...

    async def purge_queue(self, name: str) -> int: ...

    # -- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        body: bytes,
        properties: Properties,
        *,
        exchange: str,
        routing_key: str,
        mandatory: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Publish one message. On a confirm channel: return once the broker acked it; raise
        ``UnroutableError`` when it was returned (mandatory, no queue bound), ``NackError`` when
        nacked, ``TimeoutError`` after ``timeout`` seconds without either. On a channel without
        confirms: return once written; a returned message goes to the ``on_return`` callbacks.
        Many publishes may be in flight on one channel at once (pipelined)."""
        ...

    def on_return(self, callback: ReturnCallback) -> None:
        """Returned mandatory messages of a channel without confirms (a transaction's)."""
        ...

    # -- consuming --------------------------------------------------------------------------

    async def qos(self, prefetch: int) -> None: ...

    async def consume(
        self,
        queue: str,
        callback: DeliveryCallback,
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a consumer; returns its tag."""
        ...

    async def cancel(self, consumer_tag: str) -> None: ...

    def on_cancel(self, callback: CancelCallback) -> None: ...

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None: ...

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None: ...

    async def get(self, queue: str, *, no_ack: bool = False) -> Delivery | None:
        """The message at the head of ``queue`` (None when it is empty)."""
        ...

    # -- transactions -----------------------------------------------------------------------

    async def tx_select(self) -> None: ...

    async def tx_commit(self) -> None: ...

    async def tx_rollback(self) -> None: ...

    async def close(self) -> None:
        """Close the channel (idempotent); its unsettled deliveries go back to their queues."""
        ...


@runtime_checkable
class Link(Protocol):
    """One open connection to a broker."""

    @property
    def is_closed(self) -> bool: ...

    def on_lost(self, callback: LostCallback) -> None: ...

    async def channel(self, *, confirms: bool) -> Channel: ...

    async def blocked(self) -> str | None:
        """Why the broker blocks this connection's publishers (a resource alarm), or None."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """Opens links to brokers of one kind."""

    features: Features
    clock: Clock

    async def connect(
        self,
        url: str,
        *,
        name: str,
        heartbeat: int,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
    ) -> Link:
        """Open a link to the broker at ``url``. Raises ``BrokerConnectionError`` naming the
        (masked) URL and the broker's reply code and text when it refused."""
        ...
