"""``MemoryBroker``: a process-local broker with RabbitMQ 3.10's semantics for what mmate uses.

One broker is one namespace (like one RabbitMQ vhost, named ``/`` in reply texts): exchanges,
queues, bindings, and the links connected to it. ``memory://`` is the process's default broker,
``memory://<name>`` a named one, created on first use; ``MemoryBroker()`` makes a new one with a
unique name (``.url`` connects to it). State lives as long as the broker object is registered
(``close`` unregisters it); nothing survives the process (no persistence).

Time is the broker's ``clock`` (``VirtualClock``): real time, plus what ``advance`` moved it by.
``wait_idle`` waits until nothing is on its way to a consumer, nothing is unacknowledged and no
timer is overdue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from ...errors import BrokerConnectionError, FeatureNotAvailable, MmateError
from ..base import Features, QueueInfo
from . import replies
from .arguments import check_exchange_equivalent, check_queue_equivalent, new_queue_settings
from .channel import MemoryChannel
from .clock import Timer, VirtualClock
from .deadletter import Reason, dead_letter, is_cycle
from .inspect import BindingView, ConsumerView, ExchangeView, MessageView, QueueView
from .link import MemoryLink
from .message import Message
from .queue import MemoryQueue
from .routing import MATCH_MODES, Binding, Exchange, binding_arguments
from .values import check_shortstr, shown

log = logging.getLogger("mmate.memory")

FEATURES = Features(
    name="memory",
    persistence=False,
    clustering=False,
    resource_alarms=False,
    network_faults=False,
    delayed_message_plugin=False,
    management_api=False,
    virtual_time=True,
    amqp_wire=False,
)

_EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
_SYSTEM_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)
DEAD_LETTER_RETRY_SECONDS = 180.0
"""How often a quorum queue retries at-least-once dead letters nobody took yet (RabbitMQ's
``dead_letter_worker_publisher_confirm_timeout`` default)."""
_QUIET_ROUNDS = 10
_MAX_SETTLE_ROUNDS = 10_000


def _token(size: int = 16) -> str:
    return secrets.token_urlsafe(size)[:22]


def name_of(url: str) -> str:
    """The broker name of a ``memory://`` URL (``""``: the default broker)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise MmateError(f"invalid memory broker URL {url!r}: {exc}") from None
    if parts.scheme != "memory":
        raise MmateError(f"{url!r} is not a memory:// URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise MmateError(
            f"memory broker URL {url!r} has more than a name; write memory:// (the default "
            "broker) or memory://<name>"
        )
    return parts.netloc


class MemoryBroker:
    """An in-process broker. See the package docstring for what it models."""

    _brokers: ClassVar[dict[str, MemoryBroker]] = {}

    features: Features = FEATURES

    def __init__(self, name: str | None = None) -> None:
        if name is None:
            name = f"broker-{secrets.token_hex(4)}"
        if name and (name_of(f"memory://{name}") != name):
            raise MmateError(f"{name!r} cannot be a memory broker name (it must fit in a URL)")
        if name in self._brokers:
            raise MmateError(
                f"a memory broker named {name!r} exists; use MemoryBroker.named({name!r})"
            )
        self.name = name
        self.clock = VirtualClock()
        self.pending = 0
        """Deliveries on their way to a consumer callback."""
        self._activity = 0
        self._exchanges: dict[str, Exchange] = {}
        self._queues: dict[str, MemoryQueue] = {}
        self._links: list[MemoryLink] = []
        self._held_timers: dict[str, Timer] = {}
        self._tags = 0
        self._declare_system_exchanges()
        self._brokers[name] = self
        from .backend import MemoryBackend  # a backend is per broker (it carries its clock)

        self.backend = MemoryBackend(self)

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.url}>"

    # -- the registry -------------------------------------------------------------------------

    @classmethod
    def default(cls) -> MemoryBroker:
        """The process's default broker (``memory://``)."""
        return cls.named("")

    @classmethod
    def named(cls, name: str) -> MemoryBroker:
        """The broker ``memory://<name>``, created on first use."""
        broker = cls._brokers.get(name)
        return broker if broker is not None else cls(name)

    @classmethod
    def for_url(cls, url: str) -> MemoryBroker:
        return cls.named(name_of(url))

    @property
    def url(self) -> str:
        return f"memory://{self.name}"

    def close(self) -> None:
        """Close every link to this broker (their ``on_lost`` callbacks are told) and forget
        it: its URL names a new, empty broker afterwards."""
        self._drop_links("the memory broker was closed")
        if self._brokers.get(self.name) is self:
            del self._brokers[self.name]

    def reset(self) -> None:
        """Empty the broker: links closed (``on_lost``), every exchange, queue and message
        gone; the ``amq.*`` exchanges are there again. The clock keeps its time."""
        self._drop_links("the memory broker was reset")
        for queue in list(self._queues.values()):
            queue.close()
        self._queues.clear()
        self._exchanges.clear()
        for timer in self._held_timers.values():
            timer.cancel()
        self._held_timers.clear()
        self._declare_system_exchanges()

    def _drop_links(self, reason: str) -> None:
        for link in list(self._links):
            link.shutdown(BrokerConnectionError(f"{self.url}: {reason}"))

    def _declare_system_exchanges(self) -> None:
        for name, kind in _SYSTEM_EXCHANGES:
            self._exchanges[name] = Exchange(name, kind, True, False, {}, system=True)

    # -- links --------------------------------------------------------------------------------

    def open_link(self, name: str) -> MemoryLink:
        self.reap()
        link = MemoryLink(self, name, asyncio.get_running_loop())
        self._links.append(link)
        self.touched()
        return link

    def link_closed(self, link: MemoryLink) -> None:
        if link in self._links:
            self._links.remove(link)
        for queue in [q for q in self._queues.values() if q.owner is link]:
            self.drop_queue(queue, cancel_consumers=True)
        self.touched()

    def reap(self) -> None:
        """Close links whose event loop is gone (a test's loop closed without closing them):
        their unsettled deliveries return to their queues, as when a client dies."""
        for link in [link for link in self._links if link.loop.is_closed()]:
            link.shutdown(None)

    def channels(self) -> Iterator[MemoryChannel]:
        for link in self._links:
            yield from link.channels()

    def consumer_tag(self) -> str:
        self._tags += 1
        return f"amq.ctag-{_token()}"

    def touched(self) -> None:
        """Something happened (for ``advance`` and ``wait_idle`` to see that work goes on)."""
        self._activity += 1

    # -- exchanges ----------------------------------------------------------------------------

    def declare_exchange(
        self,
        link: MemoryLink,
        name: str,
        type: str,
        *,
        durable: bool,
        auto_delete: bool,
        arguments: dict[str, Any],
        passive: bool,
        doing: str,
    ) -> None:
        check_shortstr(name, f"{doing}: the exchange name")
        if name == "":
            raise replies.default_exchange_refused(doing)
        existing = self._exchanges.get(name)
        if passive:
            if existing is None:
                raise replies.not_found("exchange", name, doing)
            return
        if type == "x-delayed-message":
            raise FeatureNotAvailable(
                f"{doing}: the in-memory broker does not model the delayed-message plugin "
                "(x-delayed-message exchanges); use the delay cascade (delay_mode='cascade')"
            )
        if type not in _EXCHANGE_TYPES:
            error = BrokerConnectionError(
                f"{doing}: {replies.COMMAND_INVALID} COMMAND_INVALID - unknown exchange type "
                f"'{type}' (RabbitMQ closes the connection)"
            )
            link.shutdown(error)
            raise error
        if existing is not None:
            check_exchange_equivalent(
                name,
                (existing.type, existing.durable, existing.auto_delete, existing.arguments),
                (type, durable, auto_delete, arguments),
                doing,
                {
                    "type": type,
                    "durable": durable,
                    "auto_delete": auto_delete,
                    "arguments": arguments,
                },
            )
            return
        if name.startswith("amq."):
            raise replies.access_refused(
                f"exchange name '{name}' contains reserved prefix 'amq.*'", name, doing
            )
        self._exchanges[name] = Exchange(name, type, durable, auto_delete, arguments)

    def delete_exchange(self, name: str, *, doing: str) -> None:
        if name == "":
            raise replies.default_exchange_refused(doing)
        exchange = self._exchanges.get(name)
        if exchange is None:
            return
        if exchange.system:
            raise replies.access_refused(
                f"deletion of system exchange '{name}' in vhost '{replies.VHOST}' not allowed",
                name,
                doing,
            )
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        if self._exchanges.get(exchange.name) is not exchange:
            return
        del self._exchanges[exchange.name]
        exchange.bindings.clear()
        self._unbind_destination("exchange", exchange.name)

    def _unbind_destination(self, kind: str, name: str) -> None:
        """Remove every binding to a deleted queue or exchange (auto-delete sources go)."""
        for source in list(self._exchanges.values()):
            kept = [b for b in source.bindings if not (b.kind == kind and b.destination == name)]
            if len(kept) != len(source.bindings):
                source.bindings[:] = kept
                self._maybe_auto_delete(source)

    def _maybe_auto_delete(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings:
            self._remove_exchange(exchange)

    def exchange_for_publish(self, name: str, doing: str) -> Exchange | None:
        """The exchange a publish goes to (None: the default exchange); 404 when missing."""
        if name == "":
            return None
        exchange = self._exchanges.get(name)
        if exchange is None:
            raise replies.not_found("exchange", name, doing)
        return exchange

    # -- queues -------------------------------------------------------------------------------

    def declare_queue(
        self,
        link: MemoryLink,
        name: str,
        *,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict[str, Any],
        passive: bool,
        doing: str,
    ) -> QueueInfo:
        check_shortstr(name, f"{doing}: the queue name")
        now = self.clock.time()
        existing = self._queues.get(name)
        if passive:
            if existing is None:
                raise replies.not_found("queue", name, doing)
            self._check_owner(existing, link, doing)
            existing.touch(now)
            return self._info(existing)
        if existing is not None:
            if existing.owner is not (link if exclusive else None):
                raise replies.resource_locked(name, doing)
            check_queue_equivalent(
                name,
                existing.settings.kind,
                (existing.durable, existing.auto_delete, existing.arguments),
                (durable, auto_delete, arguments),
                doing,
                {
                    "durable": durable,
                    "exclusive": exclusive,
                    "auto_delete": auto_delete,
                    "arguments": arguments,
                },
            )
            existing.touch(now)
            return self._info(existing)
        if name.startswith("amq."):
            raise replies.access_refused(
                f"queue name '{name}' contains reserved prefix 'amq.*'", name, doing
            )
        settings = new_queue_settings(
            name,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            arguments=arguments,
            doing=doing,
        )
        if name == "":
            name = f"amq.gen-{_token()}"
        queue = MemoryQueue(
            self,
            name,
            durable=durable,
            owner=link if exclusive else None,
            auto_delete=auto_delete,
            arguments=arguments,
            settings=settings,
        )
        self._queues[name] = queue
        queue.touch(now)
        return self._info(queue)

    @staticmethod
    def _info(queue: MemoryQueue) -> QueueInfo:
        return QueueInfo(queue.name, len(queue.ready), queue.consumer_count())

    def _check_owner(self, queue: MemoryQueue, link: MemoryLink, doing: str) -> None:
        if queue.owner is not None and queue.owner is not link:
            raise replies.resource_locked(queue.name, doing)

    def queue_for(self, link: MemoryLink, name: str, doing: str) -> MemoryQueue:
        """The queue an operation uses: 404 when missing, 405 when another link owns it."""
        queue = self._queues.get(name)
        if queue is None:
            raise replies.not_found("queue", name, doing)
        self._check_owner(queue, link, doing)
        return queue

    def delete_queue(self, link: MemoryLink, name: str, *, doing: str) -> int:
        queue = self._queues.get(name)
        if queue is None:
            return 0
        self._check_owner(queue, link, doing)
        return self.drop_queue(queue, cancel_consumers=True)

    def drop_queue(self, queue: MemoryQueue, *, cancel_consumers: bool) -> int:
        """Delete ``queue``: its consumers are cancelled (the broker tells them), its bindings
        go, its messages are dropped; returns how many were ready."""
        if self._queues.get(queue.name) is not queue:
            return 0
        del self._queues[queue.name]
        consumers = list(queue.consumers)
        count = queue.close()
        timer = self._held_timers.pop(queue.name, None)
        if timer is not None:
            timer.cancel()
        for consumer in consumers:
            consumer.cancelled = True
            if cancel_consumers:
                consumer.channel.broker_cancel(consumer)
        self._unbind_destination("queue", queue.name)
        self.touched()
        return count

    # -- bindings -----------------------------------------------------------------------------

    def bind(
        self,
        link: MemoryLink,
        source: str,
        destination: str,
        kind: Literal["queue", "exchange"],
        routing_key: str,
        arguments: dict[str, Any],
        *,
        unbind: bool,
        doing: str,
    ) -> None:
        if source == "" or (kind == "exchange" and destination == ""):
            raise replies.default_exchange_refused(doing)
        exchange = self._exchanges.get(source)
        if kind == "queue":
            target = self._queues.get(destination)
            if unbind:
                if exchange is None or target is None:
                    return
            else:
                if exchange is None:
                    raise replies.not_found("exchange", source, doing)
                if target is None:
                    raise replies.not_found("queue", destination, doing)
                self._check_owner(target, link, doing)
        else:
            for name in (source, destination):
                if name not in self._exchanges:
                    if unbind:
                        return
                    raise replies.not_found("exchange", name, doing)
        assert exchange is not None
        if exchange.type == "headers" and not unbind:
            mode = arguments.get("x-match", "all")
            if mode not in MATCH_MODES:
                text = (
                    f'Invalid x-match field value <<"{shown(mode)}">>; expected all, any, '
                    "all-with-x, or any-with-x"
                )
                raise replies.precondition_failed(text, source, doing)
        binding = Binding(source, destination, kind, routing_key, binding_arguments(arguments))
        if unbind:
            if binding in exchange.bindings:
                if kind == "queue":
                    # RabbitMQ 3.10 (measured): removing an existing binding of another
                    # connection's exclusive queue is 405; one that does not exist passes
                    self._check_owner(self._queues[destination], link, doing)
                exchange.bindings.remove(binding)
                self._maybe_auto_delete(exchange)
        elif binding not in exchange.bindings:
            exchange.bindings.append(binding)

    # -- routing ------------------------------------------------------------------------------

    def route(
        self,
        exchange: Exchange | None,
        keys: tuple[str, ...],
        headers: Mapping[str, Any] | None,
    ) -> list[MemoryQueue]:
        """The queues a message reaches (each once), from ``exchange`` (None: the default)."""
        found: dict[str, MemoryQueue] = {}
        if exchange is None:
            for key in keys:
                queue = self._queues.get(key)
                if queue is not None:
                    found.setdefault(key, queue)
            return list(found.values())
        seen: set[str] = set()
        work = [exchange]
        while work:
            current = work.pop(0)
            if current.name in seen:
                continue
            seen.add(current.name)
            matched = list(current.destinations(keys, headers))
            if not matched:
                alternate = current.arguments.get("alternate-exchange")
                if isinstance(alternate, str) and alternate in self._exchanges:
                    work.append(self._exchanges[alternate])
            for binding in matched:
                if binding.kind == "queue":
                    queue = self._queues.get(binding.destination)
                    if queue is not None:
                        found.setdefault(queue.name, queue)
                else:
                    target = self._exchanges.get(binding.destination)
                    if target is not None:
                        work.append(target)
        return list(found.values())

    # -- dead-lettering -----------------------------------------------------------------------

    def dead_letter(self, queue: MemoryQueue, message: Message, reason: Reason, now: float) -> None:
        """``message`` died in ``queue``: send it to the queue's dead-letter exchange."""
        settings = queue.settings
        self.touched()
        if settings.dead_letter_exchange is None:
            return
        letter = dead_letter(
            message,
            queue=queue.name,
            reason=reason,
            time=datetime.fromtimestamp(now, UTC),
            exchange=settings.dead_letter_exchange,
            routing_key=settings.dead_letter_routing_key,
        )
        if letter is None:
            log.warning(
                "a message dead-lettered from queue %r had a malformed x-death header; "
                "RabbitMQ loses such a message, and so does the memory broker",
                queue.name,
            )
            return
        missing = self._forward(queue, letter, reason, now, None)
        if missing != () and settings.at_least_once:
            queue.held_dead_letters.append((letter, reason, missing))
            self._arm_held(queue)

    def _forward(
        self,
        queue: MemoryQueue,
        letter: Message,
        reason: Reason,
        now: float,
        only: tuple[str, ...] | None,
    ) -> tuple[str, ...] | None:
        """Deliver a dead letter (to the queues named by ``only``, when given). Returns the
        queues that refused it, or None when it reached no queue at all."""
        name = queue.settings.dead_letter_exchange
        if name is None:
            return None
        if only is not None:
            targets = [self._queues[q] for q in only if q in self._queues]
        elif name == "":
            targets = self.route(None, letter.routing_keys, letter.properties.headers)
        elif name in self._exchanges:
            targets = self.route(
                self._exchanges[name], letter.routing_keys, letter.properties.headers
            )
        else:
            return None
        if reason != "rejected" and only is None:
            targets = [target for target in targets if not is_cycle(target.name, letter)]
        if not targets:
            return None
        return tuple(target.name for target in targets if not target.put(letter, now))

    def _arm_held(self, queue: MemoryQueue) -> None:
        if queue.name in self._held_timers:
            return

        def retry() -> None:
            self._held_timers.pop(queue.name, None)
            if queue.deleted:
                return
            held, queue.held_dead_letters = queue.held_dead_letters, []
            now = self.clock.time()
            for letter, reason, only in held:
                missing = self._forward(queue, letter, reason, now, only)
                if missing != ():
                    queue.held_dead_letters.append((letter, reason, missing))
            if queue.held_dead_letters:
                self._arm_held(queue)

        self._held_timers[queue.name] = self.clock.call_later(DEAD_LETTER_RETRY_SECONDS, retry)

    # -- time and idleness --------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Move this broker's clock ``seconds`` forward: every message expiry, queue expiry and
        ``clock.sleep`` due on the way happens at its own moment of virtual time, and the event
        loop runs between them so consumers react at that moment. A one-hour delay takes
        milliseconds."""
        self.reap()
        await self.clock.advance(seconds, self._settle)

    async def _settle(self) -> None:
        """Run the event loop until the broker has seen no activity for a few iterations."""
        quiet = 0
        last = self._activity
        for _ in range(_MAX_SETTLE_ROUNDS):
            await asyncio.sleep(0)
            if self._activity != last or self.pending:
                last = self._activity
                quiet = 0
                continue
            quiet += 1
            if quiet >= _QUIET_ROUNDS:
                return

    def busy(self) -> list[str]:
        """What keeps the broker from being idle (empty: idle)."""
        reasons: list[str] = []
        if self.pending:
            reasons.append(f"{self.pending} deliveries on their way to consumers")
        for queue in self._queues.values():
            unacked = queue.unacked_count()
            if unacked:
                reasons.append(f"queue {queue.name!r} has {unacked} unacknowledged messages")
        due = self.clock.next_due()
        if due is not None and due <= self.clock.time():
            reasons.append("a timer is due")
        return reasons

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait (in real time, up to ``timeout`` seconds) until nothing is on its way to a
        consumer, nothing is unacknowledged and no timer is overdue, and the broker has seen no
        activity for a few loop iterations. Messages waiting in queues without consumers, and
        timers due later (a TTL, a delay), do not count: ``advance`` the clock for those.
        Raises ``TimeoutError`` saying what is still busy."""
        self.reap()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet = 0
        last = self._activity
        while True:
            if self.busy() or self._activity != last:
                quiet = 0
                last = self._activity
            else:
                quiet += 1
                if quiet >= _QUIET_ROUNDS:
                    return
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"memory broker {self.url} is not idle after {timeout:g} s: "
                    + ("; ".join(self.busy()) or "it keeps working")
                )
            await asyncio.sleep(0 if quiet or self.pending else 0.001)

    # -- inspection ---------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    def has_queue(self, name: str) -> bool:
        return name in self._queues

    def has_exchange(self, name: str) -> bool:
        return name == "" or name in self._exchanges

    def queue(self, name: str) -> QueueView:
        """A snapshot of queue ``name`` (``KeyError`` when there is none)."""
        queue = self._queues[name]
        unacked = [
            MessageView.of_entry(entry)
            for channel in self.channels()
            for entry in channel.unacked_entries(queue)
        ]
        sac = queue.settings.single_active_consumer and queue.consumers
        active = queue.consumers[0] if sac else None
        consumers = tuple(
            ConsumerView(
                tag=c.tag,
                channel=c.channel.number,
                link=c.channel.link.name,
                prefetch=c.prefetch,
                no_ack=c.no_ack,
                exclusive=c.exclusive,
                priority=c.priority,
                active=active is None or c is active,
                unacked=c.held,
            )
            for c in queue.consumers
        )
        return QueueView(
            name=queue.name,
            kind=queue.kind,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            arguments=dict(queue.arguments),
            messages=tuple(MessageView.of_entry(entry) for entry in queue.ordered()),
            unacked=tuple(unacked),
            consumers=consumers,
            held_dead_letters=tuple(
                MessageView.of_message(letter) for letter, _, _ in queue.held_dead_letters
            ),
        )

    def queues(self) -> list[QueueView]:
        return [self.queue(name) for name in self.queue_names()]

    def message_count(self, name: str) -> int:
        """Ready messages in queue ``name`` (``KeyError`` when there is none)."""
        return len(self._queues[name].ready)

    def exchanges(self) -> list[ExchangeView]:
        return [
            ExchangeView(x.name, x.type, x.durable, x.auto_delete, dict(x.arguments))
            for x in sorted(self._exchanges.values(), key=lambda x: x.name)
        ]

    def bindings(self) -> list[BindingView]:
        return [
            BindingView(b.source, b.destination, b.kind, b.routing_key, b.argument_map)
            for x in sorted(self._exchanges.values(), key=lambda x: x.name)
            for b in x.bindings
        ]
