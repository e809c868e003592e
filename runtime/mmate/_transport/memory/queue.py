"""``MemoryQueue`` and its ``Consumer``s: a queue of the in-memory broker with RabbitMQ 3.10's
rules for delivery order (classic priority, quorum returns first), expiry at the head on the
broker's clock, length limits and overflow modes, prefetch, consumer priority and the single
active consumer. The rules, as the tests check them: docs/testing.md (Queues, Consuming).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..base import DeliveryCallback
from .arguments import QueueSettings
from .clock import Timer
from .deadletter import Reason
from .message import Message, QueueEntry

if TYPE_CHECKING:
    from .broker import MemoryBroker
    from .channel import MemoryChannel
    from .link import MemoryLink

_SOFT_LIMIT = 0.8


class Consumer:
    """A consumer of a queue on one channel."""

    __slots__ = (
        "callback",
        "cancelled",
        "channel",
        "exclusive",
        "held",
        "no_ack",
        "prefetch",
        "priority",
        "queue",
        "tag",
    )

    def __init__(
        self,
        tag: str,
        channel: MemoryChannel,
        queue: MemoryQueue,
        callback: DeliveryCallback,
        *,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        priority: int,
    ) -> None:
        self.tag = tag
        self.channel = channel
        self.queue = queue
        self.callback = callback
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.priority = priority
        self.held = 0
        """Messages handed to it (or on their way) and not yet settled."""
        self.cancelled = False

    def has_room(self) -> bool:
        return self.no_ack or self.prefetch == 0 or self.held < self.prefetch


class _ClassicReady:
    """Ready messages of a classic queue: by priority, then publish order."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, QueueEntry]] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, entry: QueueEntry) -> None:
        heapq.heappush(self._heap, (-entry.priority, entry.seq, entry))
        self.bytes += entry.message.size

    push_back = push

    def peek(self) -> QueueEntry | None:
        return self._heap[0][2] if self._heap else None

    def pop(self) -> QueueEntry:
        entry = heapq.heappop(self._heap)[2]
        self.bytes -= entry.message.size
        return entry

    drop_one = pop

    def clear(self) -> list[QueueEntry]:
        entries = self.ordered()
        self._heap.clear()
        self.bytes = 0
        return entries

    def ordered(self) -> list[QueueEntry]:
        return [item[2] for item in sorted(self._heap, key=lambda item: item[:2])]


class _QuorumReady:
    """Ready messages of a quorum queue: those given back first, then publish order."""

    def __init__(self) -> None:
        self._returns: deque[QueueEntry] = deque()
        self._messages: deque[QueueEntry] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._returns) + len(self._messages)

    def push(self, entry: QueueEntry) -> None:
        self._messages.append(entry)
        self.bytes += entry.message.size

    def push_back(self, entry: QueueEntry) -> None:
        self._returns.append(entry)
        self.bytes += entry.message.size

    def peek(self) -> QueueEntry | None:
        if self._returns:
            return self._returns[0]
        return self._messages[0] if self._messages else None

    def pop(self) -> QueueEntry:
        entry = self._returns.popleft() if self._returns else self._messages.popleft()
        self.bytes -= entry.message.size
        return entry

    def drop_one(self) -> QueueEntry:
        entry = self._messages.popleft() if self._messages else self._returns.popleft()
        self.bytes -= entry.message.size
        return entry

    def clear(self) -> list[QueueEntry]:
        entries = self.ordered()
        self._returns.clear()
        self._messages.clear()
        self.bytes = 0
        return entries

    def ordered(self) -> list[QueueEntry]:
        return [*self._returns, *self._messages]


class MemoryQueue:
    """One queue. Its methods are synchronous and take ``now`` (clock time, seconds)."""

    def __init__(
        self,
        broker: MemoryBroker,
        name: str,
        *,
        durable: bool,
        owner: MemoryLink | None,
        auto_delete: bool,
        arguments: dict[str, Any],
        settings: QueueSettings,
    ) -> None:
        self.broker = broker
        self.name = name
        self.durable = durable
        self.owner = owner
        """The link of an exclusive queue."""
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.settings = settings
        self.consumers: list[Consumer] = []
        """In the order they started (the first is the single active consumer)."""
        self._turn: deque[Consumer] = deque()
        self.ready: _ClassicReady | _QuorumReady = (
            _QuorumReady() if settings.kind == "quorum" else _ClassicReady()
        )
        self.deleted = False
        self.held_dead_letters: list[tuple[Message, Reason, tuple[str, ...] | None]] = []
        """At-least-once dead letters not delivered yet (quorum): the letter, why it died, and
        the queues that still have to take it (None: route it again)."""
        self._seq = 0
        self._dispatching = False
        self._overflowing = False
        self._expiry: Timer | None = None
        self._unused: Timer | None = None

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def exclusive(self) -> bool:
        return self.owner is not None

    def consumer_count(self) -> int:
        if self.settings.kind == "quorum" and self.settings.single_active_consumer:
            return min(len(self.consumers), 1)  # RabbitMQ 3.10 counts only the active one
        return len(self.consumers)

    def unacked_count(self) -> int:
        return sum(channel.unacked_in(self) for channel in self.broker.channels())

    # -- publishing ---------------------------------------------------------------------------

    def entry(self, message: Message, now: float) -> QueueEntry:
        self._seq += 1
        limit = self.settings.max_priority
        priority = 0 if limit is None else min(message.properties.priority or 0, limit)
        ttls = [t for t in (message.ttl, self.settings.message_ttl) if t is not None]
        expires_at = now + min(ttls) / 1000 if ttls else None
        return QueueEntry(message, self._seq, priority, expires_at)

    def put(self, message: Message, now: float) -> bool:
        """Enqueue a routed message; False when the queue refused it (``reject-publish``)."""
        entry = self.entry(message, now)
        if self._refuses(message):
            if self.settings.overflow == "reject-publish-dlx":
                self.broker.dead_letter(self, message, "maxlen", now)
            return False
        if not len(self.ready):
            consumer = self._next_consumer()
            if consumer is not None:
                consumer.channel.deliver(consumer, entry)
                self._after_take()
                return True
        self.ready.push(entry)
        self._after_growth(now)
        self.dispatch(now)
        return True

    def _over(self) -> bool:
        limit, limit_bytes = self.settings.max_length, self.settings.max_length_bytes
        return (limit is not None and len(self.ready) > limit) or (
            limit_bytes is not None and self.ready.bytes > limit_bytes
        )

    def _refuses(self, message: Message) -> bool:
        settings = self.settings
        if settings.overflow == "drop-head":
            return False
        if settings.kind == "quorum":
            return self._overflowing
        limit, limit_bytes = settings.max_length, settings.max_length_bytes
        return (limit is not None and len(self.ready) + 1 > limit) or (
            limit_bytes is not None and self.ready.bytes + message.size > limit_bytes
        )

    def _after_growth(self, now: float) -> None:
        if not self._over():
            return
        if self.settings.overflow == "drop-head":
            while len(self.ready) and self._over():
                self._die(self.ready.drop_one(), "maxlen", now)
        elif self.settings.kind == "quorum":
            self._overflowing = True

    def _after_take(self) -> None:
        if not self._overflowing:
            return
        limit, limit_bytes = self.settings.max_length, self.settings.max_length_bytes
        low = limit is None or len(self.ready) <= math.floor(limit * _SOFT_LIMIT)
        low_bytes = limit_bytes is None or self.ready.bytes <= math.floor(limit_bytes * _SOFT_LIMIT)
        if low and low_bytes:
            self._overflowing = False

    # -- delivering ---------------------------------------------------------------------------

    def _next_consumer(self) -> Consumer | None:
        if not self.consumers:
            return None
        if self.settings.single_active_consumer:
            active = self.consumers[0]
            return active if active.has_room() else None
        best: Consumer | None = None
        for consumer in self._turn:
            if consumer.has_room() and (best is None or consumer.priority > best.priority):
                best = consumer
        if best is not None and len(self._turn) > 1:
            self._turn.remove(best)
            self._turn.append(best)
        return best

    def _take(self, now: float) -> QueueEntry | None:
        """The head, after expiring the expired heads (None: nothing ready)."""
        while True:
            head = self.ready.peek()
            if head is None:
                return None
            self.ready.pop()
            if head.expires_at is not None and head.expires_at <= now:
                self._die(head, "expired", now)
                continue
            return head

    def dispatch(self, now: float) -> None:
        """Expire what is due at the head and hand ready messages to consumers with room."""
        if self._dispatching or self.deleted:
            return
        self._dispatching = True
        try:
            while len(self.ready):
                consumer = self._next_consumer()
                if consumer is None:
                    self._expire_heads(now)
                    break
                entry = self._take(now)
                if entry is None:
                    break
                consumer.channel.deliver(consumer, entry)
            self._after_take()
        finally:
            self._dispatching = False
        self._arm_expiry()

    def get(self, now: float) -> QueueEntry | None:
        """The head for ``basic.get`` (None: empty)."""
        self.touch(now)
        entry = self._take(now)
        self._after_take()
        self._arm_expiry()
        return entry

    def _expire_heads(self, now: float) -> None:
        while True:
            head = self.ready.peek()
            if head is None or head.expires_at is None or head.expires_at > now:
                return
            self._die(self.ready.pop(), "expired", now)

    def _die(self, entry: QueueEntry, reason: Reason, now: float) -> None:
        self.broker.dead_letter(self, entry.message, reason, now)

    def _arm_expiry(self) -> None:
        head = self.ready.peek()
        when = head.expires_at if head is not None and not self.deleted else None
        if self._expiry is not None:
            if when is not None and self._expiry.when == when and not self._expiry.cancelled:
                return
            self._expiry.cancel()
            self._expiry = None
        if when is not None:
            self._expiry = self.broker.clock.call_at(when, self._expiry_due)

    def _expiry_due(self) -> None:
        self._expiry = None
        self.broker.touched()
        self.dispatch(self.broker.clock.time())

    # -- settling -----------------------------------------------------------------------------

    def give_back(self, entries: list[QueueEntry], now: float, *, delivered: bool = True) -> None:
        """Requeue ``entries`` (in this order): nack with requeue, a closed channel. With
        ``delivered`` False they never reached a consumer (its cancel overtook them)."""
        if self.deleted:
            return
        for entry in entries:
            if delivered:
                entry.redelivered = True
                if self.settings.kind == "quorum":
                    entry.delivery_count += 1
                    limit = self.settings.delivery_limit
                    if limit is not None and entry.delivery_count > limit:
                        self._die(entry, "delivery_limit", now)
                        continue
            self.ready.push_back(entry)
        if self.settings.overflow == "drop-head":
            self._after_growth(now)
        self.dispatch(now)

    def reject(self, entry: QueueEntry, now: float) -> None:
        """A nack without requeue: dead-letter as ``rejected`` (or drop)."""
        if not self.deleted:
            self._die(entry, "rejected", now)

    # -- consumers ----------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer, now: float) -> None:
        self.consumers.append(consumer)
        self._turn.append(consumer)
        if self._unused is not None:
            self._unused.cancel()
            self._unused = None
        self.dispatch(now)

    def remove_consumer(
        self, consumer: Consumer, now: float, *, dispatch: bool, cancelled: bool
    ) -> bool:
        """``consumer`` goes: cancelled by the client (``cancelled``) or with its channel; with
        ``dispatch`` the queue then hands its messages to whoever has room. True when it did not,
        as RabbitMQ 3.10 does not for the active consumer of a classic single-active-consumer
        queue: the queue waits until that consumer's channel closes (``MemoryChannel.shutdown``
        dispatches it then)."""
        was_active = bool(self.consumers) and self.consumers[0] is consumer
        consumer.cancelled = True
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self._turn.remove(consumer)
        if self.deleted:
            return False
        if self.auto_delete and not self.consumers:
            self.broker.drop_queue(self, cancel_consumers=False)
            return False
        if not self.consumers:
            self.touch(now)
        quirk = (
            cancelled
            and was_active
            and self.settings.single_active_consumer
            and self.settings.kind == "classic"
        )
        if dispatch and not quirk:
            self.dispatch(now)
        return quirk

    # -- queue expiry (x-expires) -------------------------------------------------------------

    def touch(self, now: float) -> None:
        """The queue was used (declared, got from): its ``x-expires`` starts again."""
        if self.settings.expires is None or self.consumers or self.deleted:
            return
        if self._unused is not None:
            self._unused.cancel()
        self._unused = self.broker.clock.call_at(
            now + self.settings.expires / 1000, self._unused_due
        )

    def _unused_due(self) -> None:
        self._unused = None
        if not self.consumers and not self.deleted:
            self.broker.touched()
            self.broker.drop_queue(self, cancel_consumers=True)

    # -- removal ------------------------------------------------------------------------------

    def purge(self) -> int:
        entries = self.ready.clear()
        self._after_take()
        self._arm_expiry()
        return len(entries)

    def close(self) -> int:
        """The queue is deleted: forget its messages and timers; returns the ready count."""
        count = len(self.ready)
        self.deleted = True
        self.ready.clear()
        self.held_dead_letters.clear()
        for timer in (self._expiry, self._unused):
            if timer is not None:
                timer.cancel()
        self._expiry = self._unused = None
        return count

    def ordered(self) -> Iterator[QueueEntry]:
        """The ready messages in delivery order."""
        return iter(self.ready.ordered())
