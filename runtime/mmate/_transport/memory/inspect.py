"""Read-only views of the in-memory broker's state, for test harnesses and assertions.

Views are snapshots: taking one copies what it shows, so a test can keep it and compare it
later, and changing it changes nothing in the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..base import Properties
from .message import Message, QueueEntry
from .values import delivered_properties


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message in a queue (ready, unacknowledged, or held as a dead letter)."""

    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    redelivered: bool = False
    delivery_count: int = 0
    """Quorum queues: how often it was given back."""
    expires_at: datetime | None = None
    """When it expires once it is at the head of its queue (None: no TTL)."""

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.headers or {}

    @classmethod
    def of_entry(cls, entry: QueueEntry) -> MessageView:
        message = entry.message
        expires = entry.expires_at
        return cls(
            body=message.body,
            properties=delivered_properties(message.properties, None),
            exchange=message.exchange,
            routing_key=message.routing_key,
            redelivered=entry.redelivered,
            delivery_count=entry.delivery_count,
            expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
        )

    @classmethod
    def of_message(cls, message: Message) -> MessageView:
        return cls(
            body=message.body,
            properties=delivered_properties(message.properties, None),
            exchange=message.exchange,
            routing_key=message.routing_key,
        )


@dataclass(frozen=True, slots=True)
class ConsumerView:
    tag: str
    channel: int
    link: str
    prefetch: int
    no_ack: bool
    exclusive: bool
    priority: int
    active: bool
    """It gets messages (False: waiting behind the single active consumer)."""
    unacked: int


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    kind: str
    """``classic`` or ``quorum``."""
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: Mapping[str, Any]
    messages: tuple[MessageView, ...]
    """Ready messages, in the order they would be delivered."""
    unacked: tuple[MessageView, ...]
    consumers: tuple[ConsumerView, ...]
    held_dead_letters: tuple[MessageView, ...] = ()
    """Quorum at-least-once dead letters not yet delivered (their dead-letter exchange routes
    them nowhere yet)."""

    @property
    def message_count(self) -> int:
        """Ready messages (what ``declare_queue`` reports)."""
        return len(self.messages)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)


@dataclass(frozen=True, slots=True)
class ExchangeView:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BindingView:
    source: str
    destination: str
    destination_kind: str
    """``queue`` or ``exchange``."""
    routing_key: str
    arguments: Mapping[str, Any]
