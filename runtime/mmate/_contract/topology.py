"""Topology and route types: what generated ``topology.py`` modules are made of.

The generator computes every value here (queue arguments included) from the spec; the runtime only
reads them. All types are frozen: a topology is a constant of the program.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .model import Model

Kind = Literal["command", "event", "query", "reply"]
ExchangeType = Literal["topic", "direct", "fanout", "headers"]
QueueRole = Literal["main", "dead-letter", "wait"]
Compression = Literal["gzip", "zstd"]
DEFAULT_COMPRESS_ABOVE = 1024
"""Bytes of encoded body above which a route with ``compress`` compresses (the spec's default)."""
HeaderValue = str | int | float | bool
"""A value of an AMQP header or queue argument that every Mmate implementation reads."""


@dataclass(frozen=True, slots=True)
class ExchangeDef:
    """An exchange to declare."""

    name: str
    type: ExchangeType = "topic"
    durable: bool = True
    auto_delete: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a queue retries a transiently failed message.

    ``attempts`` counts every delivery to a handler, the first included; ``delays_ms[n]`` is the
    wait before attempt ``n + 2``, already shaped by ``backoff`` and capped at ``max_delay_ms``.
    """

    attempts: int
    backoff: Literal["exponential", "linear", "fixed"]
    initial_delay_ms: int
    max_delay_ms: int
    jitter: bool
    delays_ms: tuple[int, ...]
    immediate: int = 0
    unknown_errors: Literal["transient", "permanent"] = "transient"


@dataclass(frozen=True, slots=True)
class QueueDef:
    """A queue to declare, with the arguments the spec implies (computed by the generator)."""

    name: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: Mapping[str, HeaderValue] = field(default_factory=dict)
    role: QueueRole = "main"
    prefetch: int = 10
    concurrency: int = 10
    retry: RetryPolicy | None = None
    dead_letter_queue: str | None = None
    """Name of the queue this queue's rejected messages end up in, or None if it has no dead-letter
    route."""
    wait_queues: Mapping[int, str] = field(default_factory=dict)
    """Retry delay in milliseconds -> the wait queue (fixed TTL, dead-letters back here) serving
    it."""
    max_message_bytes: int | None = None
    consumers: int = 1
    """AMQP consumers one process runs on this queue (a consumer group), each on its own channel
    with its own ``prefetch``. On a queue with single active consumer only one of them receives
    at a time; the others stand by."""
    go_compatible: bool = False
    """Declared exactly as Go Mmate declares its service queue: no arguments but
    ``x-single-active-consumer`` in FIFO mode. Retries still go through ``wait_queues`` and dead
    letters are moved to ``dead_letter_queue`` by the client; the broker has no dead-letter route
    for it (``broker_dead_letter`` is False) unless a RabbitMQ policy adds one."""

    @property
    def broker_dead_letter(self) -> bool:
        """Whether the broker itself dead-letters what this queue rejects (its declared arguments
        name a dead-letter exchange). False for a ``go_compatible`` queue and for one declared
        without dead-lettering: rejecting a message there drops it, so a failed dead-letter move
        must requeue instead. A RabbitMQ policy can add a route the arguments do not show; this
        property does not assume one."""
        return "x-dead-letter-exchange" in self.arguments


@dataclass(frozen=True, slots=True)
class BindingDef:
    """A binding from an exchange to a queue."""

    exchange: str
    queue: str
    routing_key: str = ""
    arguments: Mapping[str, HeaderValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageDef:
    """A message contract: its wire type name, kind, model class and schema version."""

    name: str
    kind: Kind
    model: type[Model]
    version: str
    reply: str | None = None
    """For a query: the wire type name of its reply."""


@dataclass(frozen=True, slots=True)
class PublishRoute:
    """Where a service publishes one message type."""

    message: MessageDef
    exchange: str
    routing_key: str
    """The spec's routing-key template (for messages and docs); generated code fills it per
    message."""
    persistent: bool = True
    priority: int | None = None
    """Default AMQP priority (0-255) of messages on this route; the ``priority`` publish option
    overrides it. None: no priority property."""
    compress: Compression | None = None
    """Compress bodies larger than ``compress_above`` bytes with this codec (``content_encoding``
    says which). Go Mmate cannot read a compressed body. None: never compress."""
    compress_above: int = DEFAULT_COMPRESS_ABOVE
    """Encoded body size in bytes above which ``compress`` applies."""
    max_message_bytes: int | None = None
    """The smallest ``max_message_bytes`` of the spec's queues this route can reach (None when
    none sets one): a larger message would be dead-lettered unread there, so the publisher can
    refuse it first."""


@dataclass(frozen=True, slots=True)
class HandlerRoute:
    """Which handler method receives one message type on a queue."""

    message: MessageDef
    method: str


@dataclass(frozen=True, slots=True)
class ServiceTopology:
    """Everything one service declares, publishes and consumes."""

    name: str
    exchanges: tuple[ExchangeDef, ...]
    queues: tuple[QueueDef, ...]
    bindings: tuple[BindingDef, ...]
    publishes: Mapping[str, PublishRoute]
    """Wire type name -> route."""
    consumes: Mapping[str, Mapping[str, HandlerRoute]]
    """Queue name -> wire type name -> handler route."""
    messages: Mapping[str, MessageDef]
    """Every message this service publishes, handles or receives as a reply, by wire type name."""
