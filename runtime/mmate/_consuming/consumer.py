"""``QueueConsumer``: consuming one queue and dispatching each message by its envelope ``type`` to
a typed handler method, and what happens when that fails; ``ConsumerSettings``. Every delivery
passes, in order: decoding and the poison checks, the queue's circuit breaker, the interceptors,
the handler (with immediate retries), ``_failures.decide``, carrying the decision out (the moves
through the one confirmed-publish path), the interceptors' ``on_outcome``; it always ends settled
(``_one``). The channel, prefetch and consuming again after a loss are ``loop.ConsumeLoop``'s,
acks ``acks.Acker``'s. The contract: docs/runtime/consuming.md and docs/runtime/failures.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic_core import PydanticSerializationError

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
from .._publishing.confirmed import ConfirmedPublisher, Outgoing
from .._transport.base import Channel, Delivery, Properties
from .._transport.connection import Connection
from .._wire import envelope as codec
from .._wire.envelope import Encoded, Envelope
from .._wire.headers import copied_properties, encodable
from ..errors import (
    DecodeError,
    EntityNotFound,
    MmateError,
    PermanentError,
    PublishError,
    UnroutableError,
)
from .acks import Acker
from .deadlines import Slot, Watchdog
from .dispatch import Route
from .inbox import Inbox
from .loop import ConsumeLoop

log = logging.getLogger("mmate.consumer")

ReplySender = Callable[
    [Envelope, "str | None", MessageDef, "Model | dict[str, Any]"], Awaitable[None]
]
Settle = Literal["ack", "reject", "requeue"]

_auto_ack_warned = False

MIN_REQUEUE_PAUSE = 0.5
"""Seconds a message whose move failed waits before it goes back to its queue, at first."""
MAX_REQUEUE_PAUSE = 30.0
"""... and at most, however long the moves have been failing."""

DEFAULT_MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024
"""Inflate a compressed body to at most this many bytes where its queue sets no
``max_message_bytes`` (16 MiB): a decompression bomb is dead-lettered as ``oversized``."""


def warn_auto_ack_once() -> None:
    global _auto_ack_warned
    if not _auto_ack_warned:
        _auto_ack_warned = True
        log.warning(
            "auto-ack is on: every message in flight is lost if the process dies, and a failed "
            "message whose move to its wait or dead-letter queue fails is lost"
        )


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
    interceptors: Interceptors = field(default_factory=lambda: Interceptors(()))
    """The client's interceptors (``_observation.interceptors``)."""
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    """Decoded-size limit of a compressed body on a queue without ``max_message_bytes``."""


def _target_missing(error: PublishError) -> bool:
    """The move failed because its target does not exist: unroutable (no queue bound, e.g. a
    deleted dead-letter queue) or a 404 for its exchange."""
    return isinstance(error, UnroutableError) or isinstance(error.__cause__, EntityNotFound)


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
        self._mover = ConfirmedPublisher(
            connection, f"failures of {queue}", action="moving", timeout=settings.move_timeout
        )
        self._breaker: HandlerBreaker | None = None
        if settings.breaker is not None:
            self._breaker = HandlerBreaker(
                queue, settings.breaker, pause=self._pause, resume=self._resume
            )
        self._chain = settings.interceptors
        self._watchdog: Watchdog | None = None
        if settings.handler_timeout is not None:
            self._watchdog = Watchdog(settings.handler_timeout, f"mmate:{queue}:deadlines")
        self._buffer: Inbox[Delivery] = Inbox()
        self._workers: list[asyncio.Task[None]] = []
        self._acker: Acker | None = None
        self._stopping = False
        self._loop = ConsumeLoop(
            connection,
            queue,
            self._buffer.put_nowait,
            prefetch=settings.prefetch,
            no_ack=settings.auto_ack,
            redeclare=redeclare,
            on_channel=self._new_channel,
        )
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
        self._failing_since: float | None = None
        """When the current run of failed moves began (the pause before a requeue grows with
        its length); None while moves succeed."""
        self._moved = asyncio.Event()
        """Set (and replaced) when a move succeeds, to wake the requeues waiting out a pause."""

    def __repr__(self) -> str:
        return (
            f"<mmate.QueueConsumer {self.queue} handled={self.handled} failed={self.failed} "
            f"retried={self.retried} dead_lettered={self.dead_lettered}>"
        )

    @property
    def connection(self) -> Connection:
        """The connection this consumer's channel is on (one of several for a consumer group
        spread over connections)."""
        return self._connection

    @property
    def consuming(self) -> bool:
        """Receiving deliveries now: a consumer on an open channel (not paused by the breaker,
        not waiting for a recovery)."""
        return self._loop.consuming and not self._stopping

    @property
    def paused(self) -> bool:
        """Stopped receiving by the circuit breaker."""
        return self._loop.paused

    @property
    def breaker(self) -> HandlerBreaker | None:
        """The queue's circuit breaker (``.state``), or None when disabled."""
        return self._breaker

    async def start(self) -> None:
        if self._settings.auto_ack:
            warn_auto_ack_once()
        if self._queue_def is not None:
            await deadletter.verify_routes(self._connection, self._queue_def)
        await self._loop.start()
        if self._watchdog is not None:
            self._watchdog.start()
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

    def _new_channel(self, channel: Channel) -> None:
        # Acks go in batches (multiple=True) of a quarter of the prefetch, never before a handler
        # finished (acks.py).
        if self._acker is not None:
            self._acker.stop_linger()
        self._acker = Acker(channel, self._settings.prefetch // 4, queue=self.queue)

    async def _pause(self) -> None:
        """Stop receiving deliveries (circuit breaker open); held messages stay unacked."""
        await self._loop.pause()
        log.warning("stopped consuming %s (circuit breaker open)", self.queue)

    async def _resume(self) -> None:
        """Receive deliveries again (circuit breaker half-open)."""
        if self._stopping or self._breaker is None:
            return
        if self._breaker.state is BreakerState.OPEN:
            return  # opened again meanwhile; its own cool-down resumes later
        await self._loop.resume()
        log.info("consuming %s again (circuit breaker half-open)", self.queue)

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        # The worker's slot: its handler deadline (deadlines.py), and who it is for the breaker.
        slot = self._watchdog.slot(task) if self._watchdog is not None else Slot(task)
        while True:
            message = await self._buffer.get()
            try:
                await self._one(message, slot)
            finally:
                self._buffer.task_done()

    async def _one(self, held: Delivery, slot: Slot) -> None:
        """Process one delivery and make sure it ends settled, whatever was raised on the way
        (the decoder, the classifier, an interceptor, a move): the one place that guarantees it."""
        error: BaseException | None = None
        try:
            await self._process(held, slot)
        except Exception as exc:  # stop() cancels workers: the broker requeues what is unsettled
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
            retry.error_text(error),
            exc_info=error,
        )
        props = held.properties
        failure = Failure(
            "internal",
            error,
            self.queue,
            str(props.type or ""),
            str(props.message_id or ""),
            attempt=retry.attempt_of(props.headers, self.queue),
        )
        try:
            await self._carry_out(held, failure, DeadLetter(INTERNAL_ERROR, "permanent"), "")
        except Exception as exc:
            if not held.settled and not self._gone(held):
                # The last resort: it stays in the queue, delivered again after the same growing
                # pause as a failed move, so a message that breaks even this does not spin.
                await self._requeue_later(held, self._what(failure), exc)
                self._observe("requeued", failure, "move-failed", None)
                return
            log.error("dead-lettering a message from %s failed too: %r", self.queue, exc)
        if not held.settled and not self._gone(held):
            await self._settle(held, "requeue")  # a bug of mmate: still never left unsettled

    async def _settle(self, held: Delivery, how: Settle) -> None:
        """Ack, reject or requeue ``held`` (nothing in auto-ack mode); it counts as settled from
        here on, whatever the channel answers: a channel that failed the ack is closed, and the
        broker requeues what it left unacked."""
        held.settled = True
        if self._settings.auto_ack:
            return
        channel = held.channel
        tag = held.delivery_tag
        if not channel.is_open:
            return  # the broker requeues what an old channel left unacked
        acker = self._acker
        try:
            if how == "ack" and acker is not None and acker.channel is channel:
                await acker.ok(tag, idle=self._buffer.empty())
            elif how == "ack":
                await channel.ack(tag)
            else:
                await channel.nack(tag, requeue=how == "requeue")
                if acker is not None and acker.channel is channel:
                    acker.other(tag)
        except MmateError as exc:
            log.warning("could not %s message %s on %s: %s", how, tag, self.queue, exc)

    def _gone(self, held: Delivery) -> bool:
        """Delivered on a channel that died: the broker has requeued it; do nothing more."""
        return not held.channel.is_open and not self._settings.auto_ack

    async def _process(self, held: Delivery, slot: Slot) -> None:
        if self._gone(held):
            return
        props = held.properties
        attempt = retry.attempt_of(props.headers, self.queue)
        mtype, mid = props.type or "", props.message_id or ""
        body = poison.readable_body(
            held.body,
            self._max_bytes,
            self.queue,
            props.headers,
            content_encoding=props.content_encoding,
            inflate_limit=self._settings.max_decompressed_bytes,
        )
        if not isinstance(body, bytes):
            reason, error = body
            await self._fail(
                held,
                Failure("poison", error, self.queue, mtype, mid, attempt=attempt, reason=reason),
            )
            return
        try:
            envelope = codec.parse(body, held.properties)
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
        if breaker is not None and not await breaker.admit(slot):
            await self._settle(held, "requeue")  # stopping while the breaker held it
            return
        try:
            if not self._gone(held):
                await self._handle(
                    held, envelope, route, model, self._context(held, envelope, attempt), slot
                )
        finally:
            if breaker is not None:
                breaker.done(slot)

    async def _call(self, route: Route, model: Model, ctx: MessageContext, slot: Slot) -> Any:
        if self._watchdog is None:
            result = await route.method(model, ctx)
        else:
            slot.deadline = asyncio.get_running_loop().time() + self._watchdog.timeout
            try:
                result = await route.method(model, ctx)
            except BaseException as exc:
                slot.end(exc)  # TimeoutError instead, when the deadline cancelled it
                raise
            slot.end(None)
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
        slot: Slot,
    ) -> Any:
        """The innermost step of the interceptors: the handler, then a query's reply (so that the
        reply is published inside them, e.g. as a child of the handler's trace span)."""
        result = await self._call(route, model, ctx, slot)
        if route.reply is not None:
            await self._reply(envelope, reply_to, route.reply, result)
        return result

    async def _reply(
        self, envelope: Envelope, reply_to: str | None, reply: MessageDef, result: Any
    ) -> None:
        try:
            await self._send_reply(envelope, reply_to, reply, result)
        except PydanticSerializationError as exc:  # the handler's reply cannot be encoded
            raise PermanentError(
                f"the reply of {envelope.type} {envelope.id} cannot be encoded as {reply.name}: "
                f"{retry.safe_text(exc)}",
                exc,
            ) from None
        except Exception as exc:  # the query was handled; its requester may be gone
            log.error("could not send the reply to %s %s: %s", envelope.type, envelope.id, exc)

    async def _handle(
        self,
        held: Delivery,
        envelope: Envelope,
        route: Route,
        model: Model,
        ctx: MessageContext,
        slot: Slot,
    ) -> None:
        props = held.properties
        chain = self._chain
        immediate = 0
        while True:
            try:
                call = partial(
                    self._call_replying, route, model, ctx, envelope, props.reply_to, slot
                )
                await chain.handle(model, ctx, call)
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
                    self._breaker.record("failure" if transient else "success", slot)
                if isinstance(decision, DeadLetter) and route.reply is not None:
                    await self._reply_error(envelope, props.reply_to, route.reply, exc)
                await self._carry_out(held, failure, decision, route.handler, ctx)
                return
        if self._breaker is not None:
            self._breaker.record("success", slot)
        self.handled += 1
        await self._settle(held, "ack")
        if chain.observes:
            chain.outcome(
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

    async def _fail(self, held: Delivery, failure: Failure) -> None:
        """A delivery that never reached a handler (poison)."""
        await self._carry_out(held, failure, decide(failure, self._queue_def), "")

    async def _carry_out(
        self,
        held: Delivery,
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
        what = self._what(failure)
        if isinstance(decision, RetryLater):
            out = await self._retry_move(held, failure, decision, what)
        else:
            assert isinstance(decision, DeadLetter)  # decide() keeps RetryNow in the handler loop
            found = self._dead_letter_move(held, failure, decision, handler)
            if found is None:
                await self._reject(held, failure, what, ctx)
                return
            out = found
        try:
            await self._move(out, what)
        except PublishError as exc:
            await self._requeue_later(held, what, exc)
            self._observe("requeued", failure, "move-failed", ctx)
            return
        self._move_succeeded()
        if isinstance(decision, RetryLater):
            self.retried += 1
            await self._settle(held, "ack")
            self._observe("retried", failure, "", ctx)
        else:
            self.dead_lettered += 1
            await self._settle(held, "ack")
            self._observe("dead_lettered", failure, decision.reason, ctx)

    def _what(self, failure: Failure) -> str:
        """The failed message in log lines: its type, id and queue."""
        return f"{failure.message_type or 'message'} {failure.message_id or '?'} from {self.queue}"

    async def _retry_move(
        self, held: Delivery, failure: Failure, decision: RetryLater, what: str
    ) -> Outgoing:
        """The original body with the next attempt's headers, to its wait queue (or through the
        delay cascade)."""
        props = held.properties
        headers = retry.retry_headers(
            props.headers,
            next_attempt=decision.next_attempt,
            delay_ms=decision.delay_ms,
            error=failure.error,
            now=datetime.now(UTC),
            exchange=held.exchange or "",
            routing_key=held.routing_key or "",
            queue=self.queue,
        )
        properties = copied_properties(props, headers, message_id=failure.message_id)
        to_exchange, to_key = "", decision.wait_queue
        if decision.cascade:
            to_exchange, to_key, properties = await self._through_cascade(
                held, properties, decision, what
            )
        return self._outgoing(held, failure, properties, to_exchange, to_key)

    def _dead_letter_move(
        self, held: Delivery, failure: Failure, decision: DeadLetter, handler: str
    ) -> Outgoing | None:
        """The original body with the dead-letter headers, to the queue's dead-letter route (None:
        the queue has none)."""
        target = deadletter.target_of(self._queue_def)
        if target is None:
            return None
        props = held.properties
        routing_key = held.routing_key or ""
        headers = deadletter.dead_letter_headers(
            props.headers,
            reason=decision.reason,
            error=failure.error,
            handler=handler,
            attempts=failure.attempt,
            now=datetime.now(UTC),
            exchange=held.exchange or "",
            routing_key=routing_key,
            queue=self.queue,
            expiration=props.expiration,
        )
        # A dead-letter exchange without a routing key: the message's original routing key.
        original_key = str(headers.get(deadletter.ORIGINAL_ROUTING_KEY, routing_key))
        to_key = target.routing_key if target.routing_key is not None else original_key
        properties = copied_properties(props, headers, message_id=failure.message_id)
        return self._outgoing(held, failure, properties, target.exchange, to_key)

    @staticmethod
    def _outgoing(
        held: Delivery, failure: Failure, properties: Properties, exchange: str, routing_key: str
    ) -> Outgoing:
        """The move of ``held``: its body byte for byte, with ``properties``."""
        return Outgoing(
            Encoded(
                held.body,
                encodable(properties),
                failure.message_id,
                properties.correlation_id,
                failure.message_type or "message",
            ),
            exchange,
            routing_key,
        )

    async def _reject(
        self, held: Delivery, failure: Failure, what: str, ctx: MessageContext | None
    ) -> None:
        """A message to dead-letter on a queue without a dead-letter route: rejected (the broker
        discards it), said loudly."""
        log.error(
            "%s has no dead-letter route (queue %s has none in the spec); rejecting it, "
            "the broker discards it",
            what,
            self.queue,
        )
        self.rejected += 1
        await self._settle(held, "reject")
        self._observe("rejected", failure, "no-dead-letter-route", ctx)

    async def _move(self, out: Outgoing, what: str) -> None:
        """Move a failed message (confirmed, mandatory). When its target is missing (unroutable,
        or a 404 for the exchange: a dead-letter or wait queue deleted under a running service),
        declare the client's topologies again and move it once more. Raises ``PublishError``."""
        try:
            await self._mover.send(out)
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
        await self._mover.send(out)

    async def _requeue_later(self, held: Delivery, what: str, error: BaseException) -> None:
        """The move failed: the message goes back to its queue (never rejected into nothing),
        after a pause as long as the moves of this consumer have been failing (0.5 s to 30 s),
        so a missing dead-letter queue does not turn into a busy loop. The pause ends early when
        another message's move succeeds (the target is back). It is delivered again then, and
        handled (or moved)."""
        now = asyncio.get_running_loop().time()
        if self._failing_since is None:
            self._failing_since = now
        pause = min(max(now - self._failing_since, MIN_REQUEUE_PAUSE), MAX_REQUEUE_PAUSE)
        log.error(
            "%s could not be moved (%s); it stays in queue %s and is delivered again in %.1f s "
            "at most",
            what,
            error,
            self.queue,
            pause,
        )
        self.requeued += 1
        moved = self._moved
        try:
            async with asyncio.timeout(pause):
                await moved.wait()
        except TimeoutError:
            pass
        await self._settle(held, "requeue")

    def _move_succeeded(self) -> None:
        """A move went through: the run of failures is over; wake the waiting requeues."""
        self._failing_since = None
        self._moved.set()
        self._moved = asyncio.Event()

    def _observe(
        self, result: OutcomeResult, failure: Failure, reason: str, ctx: MessageContext | None
    ) -> None:
        chain = self._chain
        if chain.observes:
            chain.outcome(
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
        held: Delivery,
        properties: Properties,
        decision: RetryLater,
        what: str,
    ) -> tuple[str, str, Properties]:
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
                str(properties.type or ""),
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
        name = retry.safe_text(code) if code else type(exc).__name__
        payload = codec.error_payload(name, retry.safe_text(exc))
        try:
            await self._send_reply(envelope, reply_to, reply, payload)
        except Exception as send_exc:
            log.error(
                "could not send the error reply to %s %s: %s", envelope.type, envelope.id, send_exc
            )

    def _context(self, held: Delivery, envelope: Envelope, attempt: int) -> MessageContext:
        props = held.properties
        headers: dict[str, Any] = dict(envelope.headers)
        if props.headers:
            headers.update(props.headers)
        return MessageContext(
            message_id=envelope.id or props.message_id or "",
            message_type=envelope.type,
            correlation_id=envelope.correlation_id,
            headers=headers,
            redelivered=held.redelivered,
            queue=self.queue,
            exchange=held.exchange or "",
            routing_key=held.routing_key or "",
            delivery_tag=held.delivery_tag or 0,
            timestamp=envelope.timestamp or props.timestamp,
            reply_to=codec.reply_address(envelope, props.reply_to),
            attempt=attempt,
            transport=self._transport,
        )

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming; finish and ack in-flight messages within ``timeout``; close the
        channel."""
        self._stopping = True
        if self._breaker is not None:
            await self._breaker.stop()
        await self._loop.stop()
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
        if self._watchdog is not None:
            await self._watchdog.stop()
        acker = self._acker
        if acker is not None and acker.channel.is_open:
            try:
                await acker.flush()  # the finished messages whose acks wait for a batch
            except MmateError as exc:
                log.warning("could not ack the last messages of %s: %s", self.queue, exc)
        if acker is not None:
            await acker.close()
        await self._loop.close()
        await self._mover.close()
        log.info(
            "stopped consuming %s: %d handled, %d failed (%d retried, %d dead-lettered, "
            "%d rejected, %d requeued)",
            self.queue,
            self.handled,
            self.failed,
            self.retried,
            self.dead_lettered,
            self.rejected,
            self.requeued,
        )
