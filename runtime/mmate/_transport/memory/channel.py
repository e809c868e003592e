"""A channel of the in-memory broker: the seam's ``Channel``.

AMQP's asynchronous methods stay asynchronous: ``basic.publish`` on a channel without confirms and
``basic.ack`` / ``nack`` return at once, and an error they cause (a missing exchange, an unknown
delivery tag) closes the channel afterwards, as RabbitMQ does (the next call raises
``ChannelClosed`` with the reply code and text). Synchronous methods (declarations, ``get``,
``consume``, ``tx_commit``, a publish on a confirm channel) raise the error themselves and close
the channel too.

Deliveries are handed to consumer callbacks from the event loop (``loop.call_soon``), one at a
time and in order, never inside the call that caused them. Delivery tags count 1, 2, 3... per
channel in the order deliveries are handed over. ``qos(prefetch)`` applies, as RabbitMQ applies
``basic.qos`` with ``global=false``, to each consumer started on the channel afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ...errors import (
    FeatureNotAvailable,
    MmateError,
    NackError,
    TopologyError,
    UnroutableError,
)
from ..base import (
    CancelCallback,
    CloseCallback,
    Delivery,
    DeliveryCallback,
    ExchangeType,
    Properties,
    QueueInfo,
    ReturnCallback,
    Returned,
)
from . import replies
from .message import Message, QueueEntry, published
from .queue import Consumer, MemoryQueue
from .values import check_shortstr, delivered_properties, field_table

if TYPE_CHECKING:
    from .broker import MemoryBroker
    from .link import MemoryLink

log = logging.getLogger("mmate.memory")

_UNMODELLED_CONSUMER_ARGUMENTS = {
    "x-stream-offset": "stream queues",
    "x-stream-filter": "stream queues",
    "x-credit": "credit-based flow control",
}


@dataclass(slots=True)
class _Held:
    """An unsettled delivery: which queue it came from, by which consumer (None: ``get``)."""

    queue: MemoryQueue
    entry: QueueEntry
    consumer: Consumer | None


@dataclass(slots=True)
class _TxPublish:
    message: Message
    queues: list[MemoryQueue]
    mandatory: bool


@dataclass(slots=True)
class _TxSettle:
    kind: Literal["ack", "requeue", "reject"]
    tags: list[tuple[int, _Held]]


def _where(exchange: str, routing_key: str) -> str:
    return f"exchange {exchange or '(default)'!r} with routing key {routing_key!r}"


class MemoryChannel:
    """One channel of a ``MemoryLink``."""

    def __init__(self, link: MemoryLink, number: int, *, confirms: bool) -> None:
        self._link = link
        self._broker: MemoryBroker = link.broker
        self.number = number
        self._confirms = confirms
        self._open = True
        self._reason: MmateError | None = None
        self._closed: asyncio.Future[None] | None = None
        self._on_close: list[CloseCallback] = []
        self._on_return: list[ReturnCallback] = []
        self._on_cancel: list[CancelCallback] = []
        self._next_tag = 1
        self._unacked: dict[int, _Held] = {}
        self._outbox: deque[tuple[Consumer, QueueEntry]] = deque()
        self._consumers: dict[str, Consumer] = {}
        self._stalled: list[MemoryQueue] = []
        """Queues that wait for this channel to close before they deliver again (their single
        active consumer was cancelled here)."""
        self._prefetch = 0
        self._tx = False
        self._tx_publishes: list[_TxPublish] = []
        self._tx_settles: list[_TxSettle] = []

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<MemoryChannel {self.number} of {self._link.name!r} on {self._broker.url} {state}>"

    # -- state --------------------------------------------------------------------------------

    @property
    def link(self) -> MemoryLink:
        return self._link

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def close_reason(self) -> MmateError | None:
        return self._reason

    @property
    def confirms(self) -> bool:
        return self._confirms

    def on_close(self, callback: CloseCallback) -> None:
        self._on_close.append(callback)

    def on_return(self, callback: ReturnCallback) -> None:
        self._on_return.append(callback)

    def on_cancel(self, callback: CancelCallback) -> None:
        self._on_cancel.append(callback)

    async def wait_closed(self, timeout: float) -> MmateError | None:
        if not self._open:
            return self._reason
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        return self._reason

    def _check(self, doing: str) -> None:
        if not self._open:
            raise replies.channel_closed(self.number, self._reason, doing)
        self._broker.touched()

    def _fail(self, error: MmateError) -> None:
        """The broker closes this channel because of ``error``."""
        self.shutdown(error)

    # -- topology -----------------------------------------------------------------------------

    async def declare_exchange(
        self,
        name: str,
        type: ExchangeType = "topic",
        *,
        durable: bool = True,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        passive: bool = False,
    ) -> None:
        doing = f"{'check' if passive else 'declare'} exchange {name!r}"
        self._check(doing)
        try:
            self._broker.declare_exchange(
                self._link,
                name,
                type,
                durable=durable,
                auto_delete=auto_delete,
                arguments=field_table(arguments or {}, f"{doing}: argument"),
                passive=passive,
                doing=doing,
            )
        except TopologyError as error:
            self._fail(error)
            raise

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
        doing = f"{'check' if passive else 'declare'} queue {name!r}"
        self._check(doing)
        try:
            return self._broker.declare_queue(
                self._link,
                name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=field_table(arguments or {}, f"{doing}: argument"),
                passive=passive,
                doing=doing,
            )
        except TopologyError as error:
            self._fail(error)
            raise

    async def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        doing = f"bind queue {queue!r} to {_where(exchange, routing_key)}"
        await self._bind(doing, exchange, queue, "queue", routing_key, arguments, unbind=False)

    async def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        doing = f"unbind queue {queue!r} from {_where(exchange, routing_key)}"
        await self._bind(doing, exchange, queue, "queue", routing_key, arguments, unbind=True)

    async def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        doing = f"bind exchange {destination!r} to {_where(source, routing_key)}"
        await self._bind(
            doing, source, destination, "exchange", routing_key, arguments, unbind=False
        )

    async def _bind(
        self,
        doing: str,
        source: str,
        destination: str,
        kind: Literal["queue", "exchange"],
        routing_key: str,
        arguments: Mapping[str, Any] | None,
        *,
        unbind: bool,
    ) -> None:
        self._check(doing)
        check_shortstr(routing_key, f"{doing}: the routing key")
        try:
            self._broker.bind(
                self._link,
                source,
                destination,
                kind,
                routing_key,
                field_table(arguments or {}, f"{doing}: argument"),
                unbind=unbind,
                doing=doing,
            )
        except TopologyError as error:
            self._fail(error)
            raise

    async def delete_queue(self, name: str) -> int:
        doing = f"delete queue {name!r}"
        self._check(doing)
        try:
            return self._broker.delete_queue(self._link, name, doing=doing)
        except TopologyError as error:
            self._fail(error)
            raise

    async def delete_exchange(self, name: str) -> None:
        doing = f"delete exchange {name!r}"
        self._check(doing)
        try:
            self._broker.delete_exchange(name, doing=doing)
        except TopologyError as error:
            self._fail(error)
            raise

    async def purge_queue(self, name: str) -> int:
        doing = f"purge queue {name!r}"
        self._check(doing)
        try:
            return self._broker.queue_for(self._link, name, doing).purge()
        except TopologyError as error:
            self._fail(error)
            raise

    # -- publishing ---------------------------------------------------------------------------

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
        doing = f"publish to {_where(exchange, routing_key)}"
        self._check(doing)
        check_shortstr(exchange, f"{doing}: the exchange name")
        check_shortstr(routing_key, f"{doing}: the routing key")
        try:
            message = published(body, properties, exchange, routing_key, doing)
            target = self._broker.exchange_for_publish(exchange, doing)
        except TopologyError as error:
            self._fail(error)
            if self._confirms:
                raise
            return  # basic.publish has no reply: the error arrives as the channel's close
        queues = self._broker.route(target, message.routing_keys, message.properties.headers)
        if self._tx:
            self._tx_publishes.append(_TxPublish(message, queues, mandatory))
            return
        now = self._broker.clock.time()
        refused = [queue.name for queue in queues if not queue.put(message, now)]
        if not queues and mandatory:
            returned = self._returned(message)
            if self._confirms:
                await asyncio.sleep(0)
                raise UnroutableError(
                    f"{doing}: {returned.reply_code} {returned.reply_text}: the message was "
                    "returned (mandatory), no queue is bound for it",
                    exchange=exchange,
                    routing_key=routing_key,
                )
            self._report_returns([returned], later=True)
        await asyncio.sleep(0)
        if self._confirms and refused:
            names = ", ".join(repr(name) for name in refused)
            raise NackError(
                f"{doing}: the broker nacked the message: queue {names} is full and refuses "
                "publishes (x-overflow reject-publish)",
                exchange=exchange,
                routing_key=routing_key,
            )

    def _returned(self, message: Message) -> Returned:
        return Returned(
            message_id=message.properties.message_id,
            reply_code=replies.NO_ROUTE,
            reply_text="NO_ROUTE",
            exchange=message.exchange,
            routing_key=message.routing_key,
        )

    def _report_returns(self, returned: list[Returned], *, later: bool) -> None:
        for item in returned:
            for callback in list(self._on_return):
                if later:
                    self._link.loop.call_soon(self._call, callback, item)
                else:
                    self._call(callback, item)

    @staticmethod
    def _call(callback: Any, argument: Any) -> None:
        try:
            callback(argument)
        except Exception:
            log.exception("a memory broker channel callback failed")

    # -- consuming ----------------------------------------------------------------------------

    async def qos(self, prefetch: int) -> None:
        doing = f"qos prefetch {prefetch}"
        self._check(doing)
        if not 0 <= prefetch <= 65535:
            raise MmateError(f"{doing}: the prefetch count is a number from 0 to 65535")
        self._prefetch = prefetch

    async def consume(
        self,
        queue: str,
        callback: DeliveryCallback,
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        doing = f"consume from queue {queue!r}"
        self._check(doing)
        args = field_table(arguments or {}, f"{doing}: argument")
        for key, feature in _UNMODELLED_CONSUMER_ARGUMENTS.items():
            if key in args:
                raise FeatureNotAvailable(
                    f"{doing}: the in-memory broker does not model {feature} ({key})"
                )
        if queue == "amq.rabbitmq.reply-to":
            raise FeatureNotAvailable(
                f"{doing}: the in-memory broker does not model direct reply-to"
            )
        priority = args.get("x-priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            priority = 0
        try:
            target = self._broker.queue_for(self._link, queue, doing)
            if any(c.exclusive for c in target.consumers) or (exclusive and target.consumers):
                raise replies.access_refused(
                    f"{replies.queue_ref(queue)} in exclusive use", queue, doing
                )
        except TopologyError as error:
            self._fail(error)
            raise
        tag = self._broker.consumer_tag()
        consumer = Consumer(
            tag,
            self,
            target,
            callback,
            no_ack=no_ack,
            exclusive=exclusive,
            prefetch=self._prefetch,
            priority=priority,
        )
        self._consumers[tag] = consumer
        target.add_consumer(consumer, self._broker.clock.time())
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        self._check(f"cancel consumer {consumer_tag!r}")
        consumer = self._consumers.pop(consumer_tag, None)
        if (
            consumer is not None
            and consumer.queue.remove_consumer(
                consumer, self._broker.clock.time(), dispatch=True, cancelled=True
            )
            and consumer.queue not in self._stalled
        ):
            self._stalled.append(consumer.queue)

    def deliver(self, consumer: Consumer, entry: QueueEntry) -> None:
        """Called by a queue: hand ``entry`` to ``consumer`` from the event loop, in order."""
        consumer.held += 1
        self._outbox.append((consumer, entry))
        loop = self._link.loop
        if not loop.is_closed():  # else the link is reaped and the entry given back
            self._broker.pending += 1
            loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._broker.pending -= 1
        if not self._outbox:
            return  # the channel closed and gave its messages back meanwhile
        consumer, entry = self._outbox.popleft()
        self._broker.touched()
        if consumer.cancelled:  # its cancel overtook the message: it goes back unseen
            consumer.held -= 1
            consumer.queue.give_back([entry], self._broker.clock.time(), delivered=False)
            return
        tag = self._take_tag()
        if consumer.no_ack:
            consumer.held -= 1
        else:
            self._unacked[tag] = _Held(consumer.queue, entry, consumer)
        delivery = self._delivery(consumer.queue, entry, tag, consumer.tag, got=False)
        self._call(consumer.callback, delivery)

    def _take_tag(self) -> int:
        tag = self._next_tag
        self._next_tag += 1
        return tag

    def _delivery(
        self, queue: MemoryQueue, entry: QueueEntry, tag: int, consumer_tag: str, *, got: bool
    ) -> Delivery:
        message = entry.message
        extra = None
        if queue.kind == "quorum" and (got or entry.delivery_count > 0):
            extra = {"x-delivery-count": entry.delivery_count}
        return Delivery(
            body=message.body,
            properties=delivered_properties(message.properties, extra),
            exchange=message.exchange,
            routing_key=message.routing_key,
            delivery_tag=tag,
            redelivered=entry.redelivered,
            channel=self,
            consumer_tag=consumer_tag,
        )

    def broker_cancel(self, consumer: Consumer) -> None:
        """Called when the broker cancels ``consumer`` (its queue was deleted)."""
        consumer.cancelled = True
        if self._consumers.pop(consumer.tag, None) is None or not self._open:
            return
        for callback in list(self._on_cancel):
            self._link.loop.call_soon(self._call, callback, consumer.tag)

    async def get(self, queue: str, *, no_ack: bool = False) -> Delivery | None:
        doing = f"get from queue {queue!r}"
        self._check(doing)
        try:
            target = self._broker.queue_for(self._link, queue, doing)
        except TopologyError as error:
            self._fail(error)
            raise
        entry = target.get(self._broker.clock.time())
        if entry is None:
            return None
        tag = self._take_tag()
        if not no_ack:
            self._unacked[tag] = _Held(target, entry, None)
        return self._delivery(target, entry, tag, "", got=True)

    # -- settling -----------------------------------------------------------------------------

    def _collect(self, tag: int, multiple: bool, doing: str) -> list[tuple[int, _Held]] | None:
        """The unsettled deliveries ``tag`` settles, as RabbitMQ collects them (None and the
        channel closed: unknown delivery tag)."""
        if multiple and tag == 0:
            taken = list(self._unacked.items())
            self._unacked.clear()
            return taken
        if tag not in self._unacked:
            text = f"unknown delivery tag {tag}"
            self._fail(replies.precondition_failed(text, "", doing))
            return None
        if not multiple:
            return [(tag, self._unacked.pop(tag))]
        taken = [(t, held) for t, held in self._unacked.items() if t <= tag]
        for t, _ in taken:
            del self._unacked[t]
        return taken

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        doing = f"ack delivery tag {delivery_tag}"
        self._check(doing)
        taken = self._collect(delivery_tag, multiple, doing)
        if taken is not None:
            self._settle(_TxSettle("ack", taken))

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        doing = f"nack delivery tag {delivery_tag}"
        self._check(doing)
        taken = self._collect(delivery_tag, multiple, doing)
        if taken is not None:
            self._settle(_TxSettle("requeue" if requeue else "reject", taken))

    def _settle(self, settle: _TxSettle, *, now_in_tx: bool = False) -> None:
        if self._tx and not now_in_tx:
            self._tx_settles.append(settle)
            return
        now = self._broker.clock.time()
        wake: list[MemoryQueue] = []
        back: dict[int, tuple[MemoryQueue, list[QueueEntry]]] = {}
        for _, held in settle.tags:
            consumer = held.consumer
            if consumer is not None:
                consumer.held -= 1
                if not consumer.cancelled and consumer.queue not in wake:
                    wake.append(consumer.queue)
            if settle.kind == "requeue":
                back.setdefault(id(held.queue), (held.queue, []))[1].append(held.entry)
            elif settle.kind == "reject":
                held.queue.reject(held.entry, now)
        for queue, entries in back.values():
            queue.give_back(entries, now)
        for queue in wake:
            queue.dispatch(now)

    # -- transactions -------------------------------------------------------------------------

    async def tx_select(self) -> None:
        doing = "tx.select"
        self._check(doing)
        if self._confirms:
            error = replies.precondition_failed("cannot switch from confirm to tx mode", "", doing)
            self._fail(error)
            raise error
        self._tx = True

    def _require_tx(self, doing: str) -> None:
        if not self._tx:
            error = replies.precondition_failed("channel is not transactional", "", doing)
            self._fail(error)
            raise error

    async def tx_commit(self) -> None:
        doing = "tx.commit"
        self._check(doing)
        self._require_tx(doing)
        publishes, self._tx_publishes = self._tx_publishes, []
        settles, self._tx_settles = self._tx_settles, []
        now = self._broker.clock.time()
        returned: list[Returned] = []
        refused = False
        for publish in publishes:
            alive = [queue for queue in publish.queues if not queue.deleted]
            for queue in alive:
                if not queue.put(publish.message, now):
                    refused = True  # a reject-publish queue was full: the others still take it
            if not publish.queues and publish.mandatory:
                returned.append(self._returned(publish.message))
        self._report_returns(returned, later=False)
        for settle in settles:
            self._settle(settle, now_in_tx=True)
        if refused:
            # RabbitMQ 3.10 (measured): the commit fails with 406, closing the channel, after
            # applying the acks and delivering some of the rest (from one message to all; here
            # all of it).
            error = replies.precondition_failed("partial tx completion", "", doing)
            self._fail(error)
            raise error
        await asyncio.sleep(0)

    async def tx_rollback(self) -> None:
        doing = "tx.rollback"
        self._check(doing)
        self._require_tx(doing)
        self._tx_publishes.clear()
        settles, self._tx_settles = self._tx_settles, []
        restored = dict(self._unacked)
        for settle in settles:
            restored.update(settle.tags)
        self._unacked = dict(sorted(restored.items()))

    # -- closing ------------------------------------------------------------------------------

    async def close(self) -> None:
        self.shutdown(None)
        await asyncio.sleep(0)  # channel.close waits for close-ok: the caller yields

    def shutdown(self, reason: MmateError | None) -> None:
        """Close the channel (``reason``: why the broker closed it; None: the client did). Its
        consumers go and its unsettled deliveries return to their queues."""
        if not self._open:
            return
        self._open = False
        self._reason = reason
        self._broker.touched()
        now = self._broker.clock.time()
        for settle in self._tx_settles:
            self._unacked.update(settle.tags)
        self._tx_settles.clear()
        self._tx_publishes.clear()
        consumers = list(self._consumers.values())
        self._consumers.clear()
        for consumer in consumers:
            consumer.cancelled = True
        back: dict[int, tuple[MemoryQueue, list[QueueEntry]]] = {}
        for _, held in sorted(self._unacked.items()):
            back.setdefault(id(held.queue), (held.queue, []))[1].append(held.entry)
        self._unacked.clear()
        for consumer, entry in self._outbox:
            if not consumer.no_ack:
                back.setdefault(id(consumer.queue), (consumer.queue, []))[1].append(entry)
        self._outbox.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer, now, dispatch=False, cancelled=False)
        for queue, entries in back.values():
            queue.give_back(entries, now)
        for queue in [consumer.queue for consumer in consumers] + self._stalled:
            queue.dispatch(now)
        self._stalled.clear()
        self._link.forget(self)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        loop = self._link.loop
        for callback in list(self._on_close):
            if not loop.is_closed():
                loop.call_soon(self._call, callback, reason)

    # -- inspection ---------------------------------------------------------------------------

    def unacked_in(self, queue: MemoryQueue) -> int:
        return sum(1 for held in self._unacked.values() if held.queue is queue) + sum(
            1 for consumer, _ in self._outbox if consumer.queue is queue
        )

    def unacked_entries(self, queue: MemoryQueue) -> list[QueueEntry]:
        return [held.entry for held in self._unacked.values() if held.queue is queue]

    @property
    def consumer_tags(self) -> list[str]:
        return list(self._consumers)
