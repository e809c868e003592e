"""Consuming one queue and dispatching each message by its envelope ``type`` to a typed handler
method; what happens when that fails.

Contract:

* Each queue has its own channel with ``basic.qos(prefetch)``; deliveries go into a local buffer
  served by ``concurrency`` worker tasks in delivery order (one worker: strictly one message at a
  time, in order).
* Manual ack (default): a message is acked after its handler returned (and, for a query, after its
  reply was published). Auto-ack is an explicit opt-in that logs a warning once per process.
* Before consuming, ``start`` checks that the queue's dead-letter route and retry wait queues exist
  (``deadletter.verify_routes``); a missing one is an error, not a silent drop later.
* Layers, in this order for every delivery: poison checks (``poison.check_body``, envelope parse,
  handler lookup, payload validation) -> the per-queue circuit breaker (``handler_breaker``, waits
  while open) -> the client's interceptors (``interceptors``, outermost first) -> the handler
  (and a query's reply), with immediate retries through the interceptors again ->
  ``failure.decide`` -> carrying the decision out -> the interceptors' ``on_outcome``. A failure
  never crashes the consumer.
* Carrying out a decision: the original body, byte for byte, with its properties and the retry
  headers (``retry``) goes to the chosen wait queue, or with the dead-letter headers
  (``deadletter``) to the queue's dead-letter route, through ``republish.Republisher``
  (confirmed, mandatory); only after the broker confirmed it is the original acked. When the move's
  target is missing (a deleted dead-letter or wait queue), the client's topologies are declared
  again and the move is tried once more; if it still fails (unroutable, nacked, no confirm, channel
  or connection lost), the original goes back to its queue after a pause that doubles with every
  consecutive failure (0.5 s to 30 s): a message is never acked before it was safely moved, and
  never rejected into a dead-letter route that may not exist. A failed query is answered with an
  error reply only when it is dead-lettered (not while it is being retried).
* Every delivery ends settled (``QueueConsumer._one``): whatever is raised on the way (decoder,
  classifier, interceptor, move), an unsettled delivery is dead-lettered as ``internal-error``, or
  requeued when even that fails.
* The channel closed (with a lost connection, or by the broker on an error) or a consumer cancelled
  by the broker (queue deleted) is reopened and consumption resumes with the same settings
  (``raw_consumer.consume_again``): after a lost connection, once ``connection.py`` has recovered
  it; a deleted queue is declared again from the client's topologies first.
* ``stop(timeout)``: cancel the consumer (no new deliveries), let buffered and running handlers
  finish and ack them, within ``timeout``; what is left is requeued by the broker when the channel
  closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import aiormq.abc
from pamqp.commands import Basic

from .._contract.context import MessageContext
from .._contract.model import Model
from .._contract.publisher import PublishTransport
from .._contract.topology import MessageDef, QueueDef
from .._delays import cascade as delay
from .._delays.relay import DelayService
from .._failures import deadletter, poison, retry
from .._failures.breaker import BreakerState
from .._failures.decide import DeadLetter, Decision, Failure, RetryLater, RetryNow, decide
from .._failures.handler_breaker import HandlerBreaker, HandlerBreakerOptions
from .._failures.poison import INTERNAL_ERROR
from .._observation.interceptors import Interceptors, Outcome, OutcomeResult
from .._publishing.confirmed import Outgoing
from .._publishing.republish import Republisher, copied_properties
from .._transport.connection import Connection, stray_cancel
from .._wire import envelope as codec
from .._wire.envelope import Encoded, Envelope
from ..errors import (
    DecodeError,
    EntityNotFound,
    MmateError,
    PublishError,
    UnroutableError,
    classify,
    translate,
)
from .acks import Acker
from .raw import consume_again

log = logging.getLogger("mmate.consumer")

HandlerMethod = Callable[[Any, MessageContext], Awaitable[Any]]
ReplySender = Callable[
    [Envelope, "str | None", MessageDef, "Model | dict[str, Any]"], Awaitable[None]
]
Settle = Literal["ack", "reject", "requeue"]

_auto_ack_warned = False


def warn_auto_ack_once() -> None:
    global _auto_ack_warned
    if not _auto_ack_warned:
        _auto_ack_warned = True
        log.warning(
            "auto-ack is on: every message in flight is lost if the process dies, and a failed "
            "message whose move to its wait or dead-letter queue fails is lost"
        )


@dataclass(frozen=True, slots=True)
class Route:
    """One dispatch-table entry: a message type on a queue and the bound handler method."""

    message: MessageDef
    method: HandlerMethod
    reply: MessageDef | None = None
    """For a query: the reply contract the method returns."""


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    prefetch: int = 10
    concurrency: int = 10
    auto_ack: bool = False
    handler_timeout: float | None = 600.0
    """Below RabbitMQ's ``consumer_timeout`` (30 min by default), which would cancel the
    consumer."""
    queue_def: QueueDef | None = None
    """The spec's queue: retry policy, dead-letter route, wait queues, size limit."""
    breaker: HandlerBreakerOptions | None = None
    """The per-queue circuit breaker (None: none)."""
    move_timeout: float = 10.0
    """Seconds to wait for the confirm of a move to a wait or dead-letter queue."""
    delays: DelayService | None = None
    """The client's delay cascade, for a ``RetryAfter`` longer than every wait queue (None: such
    a retry uses the longest wait queue)."""
    interceptors: Interceptors | None = None
    """The client's interceptors (``mmate.interceptors``; None: none)."""


class Held:
    """One delivery on its way through the consumer, and whether it was settled: acked, nacked,
    rejected, or left to the broker because its channel died (the broker requeues it). The worker
    loop (``QueueConsumer._work``) checks ``settled`` after every delivery: nothing leaves the
    consumer unsettled."""

    __slots__ = ("message", "settled")

    def __init__(self, message: aiormq.abc.DeliveredMessage) -> None:
        self.message = message
        self.settled = False

    @property
    def properties(self) -> Basic.Properties:
        return self.message.header.properties

    @property
    def body(self) -> bytes:
        return self.message.body


def _target_missing(error: PublishError) -> bool:
    """The move failed because its target does not exist: unroutable (no queue bound, e.g. a
    deleted dead-letter queue) or a 404 for its exchange."""
    cause = error.__cause__
    return isinstance(error, UnroutableError) or (
        cause is not None and classify(cause) is EntityNotFound
    )


def handler_name(method: HandlerMethod) -> str:
    """``Class.method`` of a bound handler method (for ``x-mmate-handler``)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__name__}.{name}" if owner is not None else name


class QueueConsumer:
    """Consumes one queue. Build with the dispatch table of that queue; ``start`` then ``stop``."""

    def __init__(
        self,
        connection: Connection,
        queue: str,
        routes: Mapping[str, Route],
        settings: ConsumerSettings,
        *,
        transport: PublishTransport,
        send_reply: ReplySender,
        redeclare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if settings.prefetch < 1 or settings.concurrency < 1:
            raise MmateError(f"queue {queue!r}: prefetch and concurrency must be at least 1")
        self.queue = queue
        self._connection = connection
        self._routes = dict(routes)
        self._settings = settings
        self._queue_def = settings.queue_def
        self._max_bytes = settings.queue_def.max_message_bytes if settings.queue_def else None
        self._transport = transport
        self._send_reply = send_reply
        self._redeclare = redeclare
        self._mover = Republisher(connection, f"failures of {queue}", timeout=settings.move_timeout)
        self._breaker: HandlerBreaker | None = None
        if settings.breaker is not None:
            self._breaker = HandlerBreaker(
                queue, settings.breaker, pause=self._pause, resume=self._resume
            )
        chain = settings.interceptors
        self._handle_chain = chain if chain is not None and chain.handles else None
        self._observers = chain if chain is not None and chain.observes else None
        self._buffer: asyncio.Queue[aiormq.abc.DeliveredMessage] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._acker: Acker | None = None
        self._consumer_tag: str | None = None
        self._stopping = False
        self._paused = False
        self._pause_lock = asyncio.Lock()
        self._restart: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[Any] | None = None
        self.handled = 0
        """Messages whose handler returned (acked in manual mode)."""
        self.failed = 0
        """Deliveries that failed (each counted once, whatever happened next)."""
        self.retried = 0
        """Failed deliveries moved to a wait queue (confirmed)."""
        self.dead_lettered = 0
        """Failed deliveries moved to the dead-letter route with stamped headers (confirmed)."""
        self.rejected = 0
        """Failed deliveries nacked without requeue (the queue has no dead-letter route)."""
        self.immediate_retries = 0
        """In-process immediate retries of a handler."""
        self.requeued = 0
        """Failed deliveries returned to the queue because their move failed (delivered again
        after a pause)."""
        self._move_failures = 0
        """Consecutive failed moves (the pause before a requeue grows with them)."""

    def __repr__(self) -> str:
        return (
            f"<mmate.QueueConsumer {self.queue} handled={self.handled} failed={self.failed} "
            f"retried={self.retried} dead_lettered={self.dead_lettered}>"
        )

    @property
    def consuming(self) -> bool:
        """Receiving deliveries now: a consumer on an open channel (not paused by the breaker,
        not waiting for a recovery)."""
        channel = self._channel
        return (
            channel is not None
            and not channel.is_closed
            and self._consumer_tag is not None
            and not self._stopping
        )

    @property
    def paused(self) -> bool:
        """Stopped receiving by the circuit breaker."""
        return self._paused

    @property
    def breaker(self) -> HandlerBreaker | None:
        """The queue's circuit breaker (``.state``), or None when disabled."""
        return self._breaker

    async def start(self) -> None:
        if self._settings.auto_ack:
            warn_auto_ack_once()
        if self._queue_def is not None:
            await deadletter.verify_routes(self._connection, self._queue_def)
        try:
            await self._consume()
        except Exception as exc:
            raise translate(exc, f"consuming queue {self.queue!r}") from exc
        for n in range(self._settings.concurrency):
            self._workers.append(
                asyncio.create_task(self._work(), name=f"mmate:{self.queue}:worker{n}")
            )
        policy = self._queue_def.retry if self._queue_def else None
        log.info(
            "consuming %s (prefetch %d, concurrency %d, %s, %s): %s",
            self.queue,
            self._settings.prefetch,
            self._settings.concurrency,
            "auto-ack" if self._settings.auto_ack else "manual ack",
            f"{policy.attempts} attempts" if policy else "no retries",
            ", ".join(sorted(self._routes)),
        )

    async def _consume(self) -> None:
        # A connection being recovered: wait for it (stop cancels the wait), however long.
        channel = await self._connection.channel(confirms=False, wait=math.inf)
        try:
            await channel.basic_qos(prefetch_count=self._settings.prefetch)
            channel.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
            tag = None
            if not self._paused:
                ok = await channel.basic_consume(
                    self.queue, self._on_delivery, no_ack=self._settings.auto_ack
                )
                tag = ok.consumer_tag
        except BaseException:  # cancelled (stop) included: no consumer left behind
            if not channel.is_closed:
                await channel.close()
            raise
        self._channel = channel
        # Acks go in batches (multiple=True) of a quarter of the prefetch, never before a handler
        # finished (acks.py).
        self._acker = Acker(channel, self._settings.prefetch // 4)
        self._consumer_tag = tag
        channel.closing.add_done_callback(self._on_channel_closed)

    async def _pause(self) -> None:
        """Stop receiving deliveries (circuit breaker open); held messages stay unacked."""
        async with self._pause_lock:
            self._paused = True
            channel, tag = self._channel, self._consumer_tag
            if channel is not None and not channel.is_closed and tag is not None:
                await channel.basic_cancel(tag)
                self._consumer_tag = None
            log.warning("stopped consuming %s (circuit breaker open)", self.queue)

    async def _resume(self) -> None:
        """Receive deliveries again (circuit breaker half-open)."""
        async with self._pause_lock:
            if self._stopping or self._breaker is None:
                return
            if self._breaker.state is BreakerState.OPEN:
                return  # opened again meanwhile; its own cool-down resumes later
            self._paused = False
            channel = self._channel
            if channel is None or channel.is_closed:
                self._schedule_restart()
            elif self._consumer_tag is None:
                ok = await channel.basic_consume(
                    self.queue, self._on_delivery, no_ack=self._settings.auto_ack
                )
                self._consumer_tag = ok.consumer_tag
            log.info("consuming %s again (circuit breaker half-open)", self.queue)

    async def _on_delivery(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._buffer.put_nowait(message)

    def _on_channel_closed(self, _: object) -> None:
        if not self._stopping:
            log.warning("channel of queue %s closed; consuming again", self.queue)
            self._schedule_restart()

    async def _on_broker_cancel(self, _: object) -> None:
        if not self._stopping:
            log.warning("broker cancelled the consumer of %s; consuming again", self.queue)
            channel = self._channel
            if channel is not None and not channel.is_closed:
                # Not inline: this callback runs inside the channel's reader, which must stay free
                # to read the broker's Close-Ok. Closing triggers the restart (_on_channel_closed).
                self._closer = asyncio.create_task(channel.close())

    def _schedule_restart(self) -> None:
        if self._restart is None or self._restart.done():
            self._restart = asyncio.create_task(self._restart_loop())

    async def _restart_loop(self) -> None:
        await consume_again(
            self._connection,
            self.queue,
            self._consume,
            lambda: self._stopping,
            redeclare=self._redeclare,
        )

    async def _work(self) -> None:
        while True:
            message = await self._buffer.get()
            try:
                await self._one(Held(message))
            finally:
                self._buffer.task_done()

    async def _one(self, held: Held) -> None:
        """Process one delivery and make sure it ends settled, whatever was raised on the way
        (the decoder, the classifier, an interceptor, a move): the one place that guarantees it."""
        error: BaseException | None = None
        try:
            await self._process(held)
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise  # stop() cancels the workers; the broker requeues what is unsettled
            error = exc
        if held.settled or self._gone(held):
            if error is not None:
                log.error(
                    "unexpected error after settling a message from %s: %r", self.queue, error
                )
            return
        if error is None:
            error = MmateError("the consumer left the message unsettled (a bug of mmate)")
        log.error(
            "unexpected error processing a message from %s, dead-lettering it: %s",
            self.queue,
            f"{type(error).__name__}: {error}",
            exc_info=error,
        )
        props = held.properties
        failure = Failure(
            "internal",
            error,
            self.queue,
            str(props.message_type or ""),
            str(props.message_id or ""),
            attempt=retry.attempt_of(props.headers, self.queue),
        )
        try:
            await self._carry_out(held, failure, DeadLetter(INTERNAL_ERROR, "permanent"), "")
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise
            log.error("dead-lettering a message from %s failed too: %r", self.queue, exc)
        if not held.settled:
            await self._settle(held, "requeue")  # the last resort: it stays in the queue

    async def _settle(self, held: Held, how: Settle) -> None:
        """Ack, reject or requeue ``held`` (nothing in auto-ack mode); it counts as settled from
        here on, whatever the channel answers: a channel that failed the ack is closed, and the
        broker requeues what it left unacked."""
        held.settled = True
        if self._settings.auto_ack:
            return
        message = held.message
        channel = message.channel
        tag = message.delivery_tag
        if tag is None or channel.is_closed:
            return  # the broker requeues what an old channel left unacked
        acker = self._acker
        try:
            if how == "ack" and acker is not None and acker.channel is channel:
                await acker.ok(tag, idle=self._buffer.empty())
            elif how == "ack":
                await channel.basic_ack(tag)
            else:
                await channel.basic_nack(tag, requeue=how == "requeue")
                if acker is not None and acker.channel is channel:
                    acker.other(tag)
        except Exception as exc:
            log.warning("could not %s message %s on %s: %r", how, tag, self.queue, exc)

    def _gone(self, held: Held) -> bool:
        """Delivered on a channel that died: the broker has requeued it; do nothing more."""
        return held.message.channel.is_closed and not self._settings.auto_ack

    async def _process(self, held: Held) -> None:
        if self._gone(held):
            return
        props = held.properties
        attempt = retry.attempt_of(props.headers, self.queue)
        mtype, mid = props.message_type or "", props.message_id or ""
        bad = poison.check_body(held.body, self._max_bytes, self.queue, props.headers)
        if bad is not None:
            reason, error = bad
            await self._fail(
                held,
                Failure("poison", error, self.queue, mtype, mid, attempt=attempt, reason=reason),
            )
            return
        try:
            envelope = codec.parse(held.body)
        except DecodeError as exc:
            failure = Failure(
                "decode",
                exc,
                self.queue,
                exc.message_type or mtype,
                exc.message_id or mid,
                attempt=attempt,
            )
            await self._fail(held, failure)
            return
        route = self._routes.get(envelope.type)
        if route is None:
            error = DecodeError(
                f"no handler for type {envelope.type!r} on queue {self.queue!r}",
                message_type=envelope.type,
                message_id=envelope.id,
            )
            await self._fail(
                held,
                Failure("dispatch", error, self.queue, envelope.type, envelope.id, attempt=attempt),
            )
            return
        try:
            model = codec.validate(envelope, route.message)
        except DecodeError as exc:
            await self._fail(
                held,
                Failure("validate", exc, self.queue, envelope.type, envelope.id, attempt=attempt),
            )
            return
        breaker = self._breaker
        if breaker is not None and not await breaker.admit():
            await self._settle(held, "requeue")  # stopping while the breaker held it
            return
        try:
            if not self._gone(held):
                await self._handle(
                    held, envelope, route, model, self._context(held, envelope, attempt)
                )
        finally:
            if breaker is not None:
                breaker.done()

    async def _call(self, route: Route, model: Model, ctx: MessageContext) -> Any:
        if self._settings.handler_timeout is None:
            result = await route.method(model, ctx)
        else:
            async with asyncio.timeout(self._settings.handler_timeout):
                result = await route.method(model, ctx)
        if route.reply is not None and not isinstance(result, route.reply.model):
            raise MmateError(
                f"handler of {ctx.message_type} returned {type(result).__name__}, "
                f"not {route.reply.name}"
            )
        return result

    async def _call_replying(
        self,
        route: Route,
        model: Model,
        ctx: MessageContext,
        envelope: Envelope,
        reply_to: str | None,
    ) -> Any:
        """The innermost step of the interceptors: the handler, then a query's reply (so that the
        reply is published inside them, e.g. as a child of the handler's trace span)."""
        result = await self._call(route, model, ctx)
        if route.reply is not None:
            await self._reply(envelope, reply_to, route.reply, result)
        return result

    async def _reply(
        self, envelope: Envelope, reply_to: str | None, reply: MessageDef, result: Any
    ) -> None:
        try:
            await self._send_reply(envelope, reply_to, reply, result)
        except Exception as exc:  # the query was handled; its requester may be gone
            log.error("could not send the reply to %s %s: %s", envelope.type, envelope.id, exc)

    async def _handle(
        self,
        held: Held,
        envelope: Envelope,
        route: Route,
        model: Model,
        ctx: MessageContext,
    ) -> None:
        props = held.properties
        chain = self._handle_chain
        immediate = 0
        while True:
            try:
                if chain is None:
                    result = await self._call(route, model, ctx)
                else:
                    call = partial(self._call_replying, route, model, ctx, envelope, props.reply_to)
                    result = await chain.handle(model, ctx, call)
                break
            except Exception as exc:
                failure = Failure(
                    "handler",
                    exc,
                    self.queue,
                    envelope.type,
                    envelope.id,
                    redelivered=ctx.redelivered,
                    attempt=ctx.attempt,
                    immediate_done=immediate,
                )
                decision = decide(
                    failure, self._queue_def, cascade=self._settings.delays is not None
                )
                if isinstance(decision, RetryNow):
                    immediate += 1
                    self.immediate_retries += 1
                    model = codec.validate(envelope, route.message)  # a fresh copy
                    continue
                if self._breaker is not None:
                    transient = isinstance(decision, RetryLater) or decision.kind == "transient"
                    self._breaker.record("failure" if transient else "success")
                if isinstance(decision, DeadLetter) and route.reply is not None:
                    await self._reply_error(envelope, props.reply_to, route.reply, exc)
                await self._carry_out(held, failure, decision, handler_name(route.method), ctx)
                return
        if self._breaker is not None:
            self._breaker.record("success")
        if route.reply is not None and chain is None:  # with interceptors: sent inside them
            await self._reply(envelope, props.reply_to, route.reply, result)
        self.handled += 1
        await self._settle(held, "ack")
        if self._observers is not None:
            self._observers.outcome(
                Outcome(
                    result="handled",
                    queue=self.queue,
                    message_type=envelope.type,
                    message_id=envelope.id,
                    attempt=ctx.attempt,
                    stage=None,
                    reason="",
                    error=None,
                    context=ctx,
                )
            )

    async def _fail(self, held: Held, failure: Failure) -> None:
        """A delivery that never reached a handler (poison)."""
        await self._carry_out(held, failure, decide(failure, self._queue_def), "")

    async def _carry_out(
        self,
        held: Held,
        failure: Failure,
        decision: Decision,
        handler: str,
        ctx: MessageContext | None = None,
    ) -> None:
        """Move the message where ``decision`` says; ack only once the move was confirmed; then
        tell the interceptors (``ctx``: the handler's context, None for poison)."""
        self.failed += 1
        if self._gone(held):
            return
        props = held.properties
        now = datetime.now(UTC)
        exchange, routing_key = held.message.exchange or "", held.message.routing_key or ""
        what = f"{failure.message_type or 'message'} {failure.message_id or '?'} from {self.queue}"
        if isinstance(decision, RetryLater):
            headers = retry.retry_headers(
                props.headers,
                next_attempt=decision.next_attempt,
                delay_ms=decision.delay_ms,
                error=failure.error,
                now=now,
                exchange=exchange,
                routing_key=routing_key,
            )
            to_exchange, to_key = "", decision.wait_queue
        else:
            assert isinstance(decision, DeadLetter)
            target = deadletter.target_of(self._queue_def)
            if target is None:
                log.error(
                    "%s has no dead-letter route (queue %s has none in the spec); rejecting it, "
                    "the broker discards it",
                    what,
                    self.queue,
                )
                self.rejected += 1
                await self._settle(held, "reject")
                self._observe("rejected", failure, "no-dead-letter-route", ctx)
                return
            headers = deadletter.dead_letter_headers(
                props.headers,
                reason=decision.reason,
                error=failure.error,
                handler=handler,
                attempts=failure.attempt,
                now=now,
                exchange=exchange,
                routing_key=routing_key,
                queue=self.queue,
                expiration=props.expiration,
            )
            to_exchange = target.exchange
            # A dead-letter exchange without a routing key: the message's original routing key.
            original_key = str(headers.get(deadletter.ORIGINAL_ROUTING_KEY, routing_key))
            to_key = target.routing_key if target.routing_key is not None else original_key
        properties = copied_properties(props, headers, message_id=failure.message_id)
        if isinstance(decision, RetryLater) and decision.cascade:
            to_exchange, to_key, properties = await self._through_cascade(
                held, properties, decision, what
            )
        properties = codec.encodable(properties)
        try:
            await self._move(held, properties, to_exchange, to_key, what)
        except PublishError as exc:
            await self._requeue_later(held, what, exc)
            self._observe("requeued", failure, "move-failed", ctx)
            return
        self._move_failures = 0
        if isinstance(decision, RetryLater):
            self.retried += 1
        else:
            self.dead_lettered += 1
        await self._settle(held, "ack")
        if isinstance(decision, RetryLater):
            self._observe("retried", failure, "", ctx)
        else:
            self._observe("dead_lettered", failure, decision.reason, ctx)

    async def _move(
        self, held: Held, properties: Basic.Properties, exchange: str, routing_key: str, what: str
    ) -> None:
        """Move ``held`` (confirmed, mandatory). When its target is missing (unroutable, or a 404
        for the exchange: a dead-letter or wait queue deleted under a running service), declare
        the client's topologies again and move it once more. Raises ``PublishError``."""
        try:
            await self._mover.move(
                held.body, properties, exchange=exchange, routing_key=routing_key, what=what
            )
            return
        except PublishError as exc:
            if self._redeclare is None or not _target_missing(exc):
                raise
            log.warning(
                "moving %s failed because its target is missing (%s); declaring the topology "
                "again and moving it once more",
                what,
                exc,
            )
        try:
            await self._redeclare()
        except Exception as exc:
            log.error("declaring the topology of %s again failed: %s", self.queue, exc)
        await self._mover.move(
            held.body, properties, exchange=exchange, routing_key=routing_key, what=what
        )

    async def _requeue_later(self, held: Held, what: str, error: PublishError) -> None:
        """The move failed: the message goes back to its queue (never rejected into nothing),
        after a pause that doubles with every consecutive failed move (0.5 s to 30 s), so a
        missing dead-letter queue does not turn into a busy loop. It is delivered again later,
        and handled (or moved) then."""
        self._move_failures += 1
        pause = min(0.5 * 2 ** (self._move_failures - 1), 30.0)
        log.error(
            "%s could not be moved (%s); it stays in queue %s and is delivered again in %.1f s",
            what,
            error,
            self.queue,
            pause,
        )
        self.requeued += 1
        await asyncio.sleep(pause)
        await self._settle(held, "requeue")

    def _observe(
        self, result: OutcomeResult, failure: Failure, reason: str, ctx: MessageContext | None
    ) -> None:
        observers = self._observers
        if observers is not None:
            observers.outcome(
                Outcome(
                    result=result,
                    queue=self.queue,
                    message_type=failure.message_type,
                    message_id=failure.message_id,
                    attempt=failure.attempt,
                    stage=failure.stage,
                    reason=reason,
                    error=failure.error,
                    context=ctx,
                )
            )

    async def _through_cascade(
        self,
        held: Held,
        properties: Basic.Properties,
        decision: RetryLater,
        what: str,
    ) -> tuple[str, str, Basic.Properties]:
        """Exchange, routing key and properties of a retry through the delay cascade, back to this
        queue; the longest wait queue instead when the cascade cannot be declared."""
        delays = self._settings.delays
        try:
            if delays is None:
                raise MmateError("no delay cascade")
            await delays.ensure()
            encoded = Encoded(
                held.body,
                properties,
                str(properties.message_id or ""),
                properties.correlation_id,
                str(properties.message_type or ""),
            )
            out = delay.delayed(
                Outgoing(encoded, "", self.queue),
                decision.delay_ms // 1000,
                delays.topology,
                delays.mode,
            )
        except MmateError as exc:
            waits = self._queue_def.wait_queues if self._queue_def else {}
            longest = max(waits)
            log.error(
                "%s: the delay cascade is not available (%s); retrying after %d ms instead",
                what,
                exc,
                longest,
            )
            return "", waits[longest], properties
        return out.exchange, out.routing_key, out.encoded.properties

    async def _reply_error(
        self, envelope: Envelope, reply_to: str | None, reply: MessageDef, exc: Exception
    ) -> None:
        code = getattr(exc, "code", None)
        payload = codec.error_payload(str(code) if code else type(exc).__name__, str(exc))
        try:
            await self._send_reply(envelope, reply_to, reply, payload)
        except Exception as send_exc:
            log.error(
                "could not send the error reply to %s %s: %s", envelope.type, envelope.id, send_exc
            )

    def _context(self, held: Held, envelope: Envelope, attempt: int) -> MessageContext:
        props = held.properties
        headers: dict[str, Any] = dict(envelope.headers)
        if props.headers:
            headers.update(props.headers)
        return MessageContext(
            message_id=envelope.id or props.message_id or "",
            message_type=envelope.type,
            correlation_id=envelope.correlation_id or props.correlation_id,
            headers=headers,
            redelivered=bool(getattr(held.message.delivery, "redelivered", False)),
            queue=self.queue,
            exchange=held.message.exchange or "",
            routing_key=held.message.routing_key or "",
            delivery_tag=held.message.delivery_tag or 0,
            timestamp=envelope.timestamp or props.timestamp,
            reply_to=codec.reply_address(envelope, props.reply_to),
            attempt=attempt,
            transport=self._transport,
        )

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming; finish and ack in-flight messages within ``timeout``; close the
        channel."""
        self._stopping = True
        restart, self._restart = self._restart, None
        if restart is not None and restart is not asyncio.current_task():
            restart.cancel()
            with contextlib.suppress(BaseException):
                await restart
        if self._breaker is not None:
            await self._breaker.stop()
        channel = self._channel
        if channel is not None and not channel.is_closed and self._consumer_tag is not None:
            try:
                # Bounded: on a connection silently cut, nothing answers until heartbeats fail.
                await asyncio.wait_for(channel.basic_cancel(self._consumer_tag), 5)
            except Exception as exc:
                log.debug("cancelling the consumer of %s: %r", self.queue, exc)
        try:
            await asyncio.wait_for(self._buffer.join(), timeout)
        except TimeoutError:
            log.warning(
                "stopping %s: %d messages still in flight after %g s; the broker requeues them",
                self.queue,
                self._buffer.qsize() + sum(1 for w in self._workers if not w.done()),
                timeout,
            )
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        acker = self._acker
        if acker is not None and not acker.channel.is_closed:
            try:
                await acker.flush()  # the finished messages whose acks wait for a batch
            except Exception as exc:
                log.warning("could not ack the last messages of %s: %r", self.queue, exc)
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                log.debug("closing the channel of %s: %r", self.queue, exc)
        await self._mover.close()
        log.info(
            "stopped consuming %s: %d handled, %d failed (%d retried, %d dead-lettered, "
            "%d rejected)",
            self.queue,
            self.handled,
            self.failed,
            self.retried,
            self.dead_lettered,
            self.rejected,
        )
