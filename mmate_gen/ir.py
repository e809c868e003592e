"""The intermediate model between a validated spec set and the templates.

``mmate_gen.loader`` builds it; ``mmate_gen.render`` and the templates read only this. Every
derived value (snake_case names, kind base fields, queue arguments, dead-letter and wait queues,
retry delays, default routes) is computed once, here, at build time of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .diagnostics import Location

Kind = Literal["command", "event", "query", "reply"]
Scalar = Literal[
    "string", "int", "int64", "float", "decimal", "bool", "datetime", "date", "uuid", "bytes"
]
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]
ArgValue = str | int | float | bool
Compression = Literal["gzip", "zstd"]
DEFAULT_COMPRESS_ABOVE = 1024
"""Bytes of encoded body above which a route with ``compress`` compresses, unless it says."""


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A field's type: a scalar, a list or string-keyed map of another type, or a named enum or
    record."""

    kind: Literal["scalar", "list", "map", "enum", "record"]
    name: str
    """Scalar name (``string``...), enum or record name; ``list``/``map`` for containers."""
    item: TypeRef | None = None
    """Item type of a list, value type of a map."""


@dataclass(frozen=True, slots=True)
class Constraints:
    minimum: float | int | None = None
    maximum: float | int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    json_name: str
    """Name on the wire (camelCase)."""
    py_name: str
    """Python attribute name (snake_case), the alias target."""
    type: TypeRef
    required: bool
    """True when the field has no default and is not optional."""
    nullable: bool
    """``optional: true`` in the spec: the value may be null/None (default None unless given)."""
    has_default: bool
    default: JsonValue
    description: str | None
    constraints: Constraints
    base: bool
    """One of the kind's base fields (docs/interop.md), not written in the spec."""
    loc: Location


@dataclass(frozen=True, slots=True)
class EnumType:
    name: str
    values: tuple[str, ...]
    description: str | None
    spec_file: str
    loc: Location


@dataclass(frozen=True, slots=True)
class RecordType:
    name: str
    fields: tuple[Field, ...]
    description: str | None
    spec_file: str
    loc: Location


@dataclass(frozen=True, slots=True)
class Message:
    name: str
    """Wire type name and Python class name (PascalCase)."""
    py_name: str
    """snake_case of ``name``, used in method names."""
    kind: Kind
    fields: tuple[Field, ...]
    """Base fields of the kind first (in the order of docs/interop.md), then the spec's own
    fields in spec order."""
    description: str | None
    reply: str | None
    """For a query: the reply message's name."""
    version: str
    """Schema version of the spec file that defines it (``x-schema-version``)."""
    spec_file: str
    loc: Location


@dataclass(frozen=True, slots=True)
class Exchange:
    name: str
    type: Literal["topic", "direct", "fanout", "headers"]
    durable: bool
    auto_delete: bool
    builtin: bool
    """One of the six Mmate exchanges of docs/interop.md (declared implicitly)."""
    loc: Location | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    backoff: Literal["exponential", "linear", "fixed"]
    initial_delay_ms: int
    max_delay_ms: int
    jitter: bool
    delays_ms: tuple[int, ...]
    """Delay before each retry: len == attempts - 1."""
    immediate: int
    unknown_errors: Literal["transient", "permanent"]


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    role: Literal["main", "dead-letter", "wait"]
    queue_type: Literal["classic", "quorum"]
    durable: bool
    exclusive: bool
    auto_delete: bool
    fifo: bool
    arguments: tuple[tuple[str, ArgValue], ...]
    """Computed AMQP queue arguments, sorted by key."""
    prefetch: int
    concurrency: int
    retry: RetryPolicy | None
    dead_letter_queue: str | None
    wait_queues: tuple[tuple[int, str], ...]
    """(delay ms, wait queue name), sorted by delay."""
    max_message_bytes: int | None
    origin: str | None
    """For dead-letter and wait queues: the main queue they serve."""
    loc: Location
    description: str | None = None
    """As written in the spec (main queues only)."""
    consumers: int = 1
    """AMQP consumers one process runs on the queue (``consumers``; 1 for derived queues)."""
    go_compatible: bool = False
    """Declared as Go Mmate declares its service queue: no arguments but
    ``x-single-active-consumer`` in FIFO mode; its dead-letter and wait queues are still
    derived."""
    service: str | None = None
    """The service whose ``service_queue`` this is (Go's ``<service>-queue``), else None."""


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str
    arguments: tuple[tuple[str, ArgValue], ...]
    loc: Location


@dataclass(frozen=True, slots=True)
class KeyPart:
    """One piece of a routing-key template: literal text, or a field whose value is substituted."""

    text: str
    field: Field | None = None


@dataclass(frozen=True, slots=True)
class PublishRoute:
    message: str
    exchange: str
    routing_key: str
    """Template text as in the spec (or the Go default), e.g.
    ``evt.{aggregateId}.OrderCreatedEvent``."""
    key_parts: tuple[KeyPart, ...]
    persistent: bool
    explicit: bool
    """False when exchange and key are the kind's Go defaults."""
    loc: Location
    priority: int | None = None
    """Default AMQP priority of messages on the route (the publish option overrides it)."""
    compress: Compression | None = None
    """Codec for bodies above ``compress_above`` bytes; None: never compressed."""
    compress_above: int = DEFAULT_COMPRESS_ABOVE
    max_message_bytes: int | None = None
    """The smallest ``max_message_bytes`` of the spec queues the route can reach (None: none has
    one)."""


@dataclass(frozen=True, slots=True)
class Consume:
    queue: str
    handles: tuple[str, ...]
    loc: Location


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    """As in the spec (``order-service``)."""
    py_name: str
    """snake_case module name (``order_service``)."""
    class_prefix: str
    """PascalCase (``OrderService``), prefix of the generated Publisher/Handlers classes."""
    publishes: tuple[PublishRoute, ...]
    consumes: tuple[Consume, ...]
    spec_file: str
    loc: Location
    description: str | None = None
    """As written in the spec; goes into the docstrings of its Publisher and Handlers classes."""


@dataclass(frozen=True, slots=True)
class ExternalService:
    """A service outside the specs (a Go or .NET one) named for what it publishes: its routes count
    when checking that handled messages reach their queues; nothing is generated for it."""

    name: str
    publishes: tuple[PublishRoute, ...]
    spec_file: str
    loc: Location
    description: str | None = None


@dataclass(frozen=True, slots=True)
class SpecSet:
    """A whole validated spec directory. Every tuple is in a deterministic order (sorted by
    name)."""

    root: str
    """The specs directory as shown in headers and errors (its basename, e.g. ``specs``)."""
    files: tuple[str, ...]
    enums: tuple[EnumType, ...]
    records: tuple[RecordType, ...]
    messages: tuple[Message, ...]
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    """Main queues and their derived dead-letter and wait queues."""
    bindings: tuple[Binding, ...]
    services: tuple[Service, ...]
    external_services: tuple[ExternalService, ...] = ()
    """Publishers outside the specs, sorted by name; nothing is generated for them."""
