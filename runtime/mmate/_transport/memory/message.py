"""A message in the broker, and one queue's copy of it."""

from __future__ import annotations

from dataclasses import dataclass

from ..._wire.expiration import parse_expiration
from ...errors import MmateError
from ..base import Properties
from . import replies
from .values import stored_properties


@dataclass(frozen=True, slots=True)
class Message:
    """A published (or dead-lettered) message. Shared by every queue it was routed to and never
    changed: deliveries get copies of its properties."""

    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    routing_keys: tuple[str, ...]
    """The keys it routes on: its routing key, then those of its ``CC`` and ``BCC`` headers."""
    ttl: int | None
    """Its ``expiration`` in milliseconds (None: none)."""

    @property
    def size(self) -> int:
        return len(self.body)


class QueueEntry:
    """One queue's copy of a message: where it stands in that queue and what happened to it
    there."""

    __slots__ = ("delivery_count", "expires_at", "message", "priority", "redelivered", "seq")

    def __init__(self, message: Message, seq: int, priority: int, expires_at: float | None):
        self.message = message
        self.seq = seq
        self.priority = priority
        self.expires_at = expires_at
        self.redelivered = False
        self.delivery_count = 0
        """Quorum queues: how often it was given back (``x-delivery-count``)."""


def _header_keys(headers: dict[str, object], name: str, doing: str) -> list[str]:
    value = headers.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        kind = "longstr" if isinstance(value, str) else type(value).__name__
        text = f'invalid message: {{unacceptable_type_in_header,"{name}",{kind}}}'
        raise replies.precondition_failed(text, "", doing)
    return [key for key in value if isinstance(key, str)]


def published(
    body: bytes, properties: Properties, exchange: str, routing_key: str, doing: str
) -> Message:
    """The message of a ``basic.publish`` (validated as RabbitMQ validates it: 406 for an
    invalid ``expiration`` or ``CC`` / ``BCC`` header)."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise MmateError(f"{doing}: the body must be bytes, got {type(body).__name__}")
    stored = stored_properties(properties)
    ttl: int | None = None
    if stored.expiration is not None:
        parsed = parse_expiration(stored.expiration)
        if isinstance(parsed, str):
            text = f"invalid expiration '{stored.expiration}': {parsed}"
            raise replies.precondition_failed(text, "", doing)
        ttl = parsed
        if ttl is None:
            stored.expiration = None
    keys = [routing_key]
    if stored.headers:
        keys += _header_keys(stored.headers, "CC", doing)
        keys += _header_keys(stored.headers, "BCC", doing)
        stored.headers.pop("BCC", None)
    return Message(bytes(body), stored, exchange, routing_key, tuple(keys), ttl)
