"""Consuming one queue and dispatching each message by its envelope ``type`` to a typed handler
method.

Contract:

* Each queue has its own channel with ``basic.qos(prefetch)``; deliveries go into a local buffer
served by
  ``concurrency`` worker tasks in delivery order (one worker: strictly one message at a time, in
  order).
* Manual ack (default): a message is acked after its handler returned (and, for a query, after its
reply
  was published). Auto-ack is an explicit opt-in that logs a warning once per process.
* A body that is not a valid envelope, a type without a handler on this queue, a payload failing
  validation, or a handler that raised or timed out never crashes the consumer: ``failure.decide``
  says what to do (currently: nack without requeue, so the broker dead-letters it). A failed query
  handler additionally answers the requester with an error reply (``success: false``), so it sees a
  ``RemoteError`` instead of a timeout.
* The channel closed by the broker (e.g. a broker error) or a consumer cancelled by the broker
(queue
  deleted) is reopened and consumption resumes, with a short backoff, until ``stop``.
* ``stop(timeout)``: cancel the consumer (no new deliveries), let buffered and running handlers
finish and
  ack them, within ``timeout``; what is left is requeued by the broker when the channel closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiormq.abc

from . import codec
from .codec import Envelope
from .connection import Connection
from .context import MessageContext
from .errors import DecodeError, MmateError, translate
from .failure import Action, Failure, Stage, decide
from .model import Model
from .publisher import PublishTransport
from .topology import MessageDef

log = logging.getLogger("mmate.consumer")

HandlerMethod = Callable[[Any, MessageContext], Awaitable[Any]]
ReplySender = Callable[
    [Envelope, "str | None", MessageDef, "Model | dict[str, Any]"], Awaitable[None]
]

_auto_ack_warned = False


def warn_auto_ack_once() -> None:
    global _auto_ack_warned
    if not _auto_ack_warned:
        _auto_ack_warned = True
        log.warning(
            "auto-ack is on: every message in flight is lost if the process dies, and failed "
            "messages cannot be dead-lettered"
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


def _attempt(headers: Mapping[str, Any]) -> int:
    value = headers.get("x-attempt")
    try:
        return max(1, int(value)) if value is not None else 1
    except (TypeError, ValueError):
        return 1


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
    ) -> None:
        if settings.prefetch < 1 or settings.concurrency < 1:
            raise MmateError(f"queue {queue!r}: prefetch and concurrency must be at least 1")
        self.queue = queue
        self._connection = connection
        self._routes = dict(routes)
        self._settings = settings
        self._transport = transport
        self._send_reply = send_reply
        self._buffer: asyncio.Queue[aiormq.abc.DeliveredMessage] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._consumer_tag: str | None = None
        self._stopping = False
        self._restart: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[Any] | None = None
        self.handled = 0
        """Messages whose handler returned (acked in manual mode)."""
        self.failed = 0
        """Messages handed to the failure policy."""

    def __repr__(self) -> str:
        return f"<mmate.QueueConsumer {self.queue} handled={self.handled} failed={self.failed}>"

    async def start(self) -> None:
        if self._settings.auto_ack:
            warn_auto_ack_once()
        try:
            await self._consume()
        except Exception as exc:
            raise translate(exc, f"consuming queue {self.queue!r}") from exc
        for n in range(self._settings.concurrency):
            self._workers.append(
                asyncio.create_task(self._work(), name=f"mmate:{self.queue}:worker{n}")
            )
        log.info(
            "consuming %s (prefetch %d, concurrency %d, %s): %s",
            self.queue,
            self._settings.prefetch,
            self._settings.concurrency,
            "auto-ack" if self._settings.auto_ack else "manual ack",
            ", ".join(sorted(self._routes)),
        )

    async def _consume(self) -> None:
        channel = await self._connection.channel(confirms=False)
        try:
            await channel.basic_qos(prefetch_count=self._settings.prefetch)
            channel.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
            ok = await channel.basic_consume(
                self.queue, self._on_delivery, no_ack=self._settings.auto_ack
            )
        except Exception:
            if not channel.is_closed:
                await channel.close()
            raise
        self._channel = channel
        self._consumer_tag = ok.consumer_tag
        channel.closing.add_done_callback(self._on_channel_closed)

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
        delay = 0.2
        while not self._stopping:
            try:
                await self._consume()
                log.info("consuming %s again", self.queue)
                return
            except Exception as exc:
                log.error("consuming %s again failed (retry in %.1f s): %s", self.queue, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _work(self) -> None:
        while True:
            message = await self._buffer.get()
            try:
                await self._process(message)
            except Exception:  # the worker must survive anything
                log.exception("unexpected error processing a message from %s", self.queue)
            finally:
                self._buffer.task_done()

    async def _settle(self, message: aiormq.abc.DeliveredMessage, action: Action) -> None:
        if self._settings.auto_ack:
            return
        channel = message.channel
        tag = message.delivery_tag
        if tag is None or channel.is_closed:
            return  # the broker requeues what an old channel left unacked
        try:
            if action is Action.ACK:
                await channel.basic_ack(tag)
            else:
                await channel.basic_nack(tag, requeue=action is Action.REQUEUE)
        except Exception as exc:
            log.warning("could not %s message %s on %s: %r", action.value, tag, self.queue, exc)

    async def _fail(
        self,
        message: aiormq.abc.DeliveredMessage,
        stage: Stage,
        error: BaseException,
        message_type: str,
        message_id: str,
    ) -> None:
        self.failed += 1
        redelivered = bool(getattr(message.delivery, "redelivered", False))
        action = decide(Failure(stage, error, self.queue, message_type, message_id, redelivered))
        await self._settle(message, action)

    async def _process(self, message: aiormq.abc.DeliveredMessage) -> None:
        if message.channel.is_closed and not self._settings.auto_ack:
            return  # delivered on a channel that died: the broker has requeued it
        props = message.header.properties
        try:
            envelope = codec.parse(message.body)
        except DecodeError as exc:
            mtype = exc.message_type or props.message_type or ""
            mid = exc.message_id or props.message_id or ""
            await self._fail(message, "decode", exc, mtype, mid)
            return
        route = self._routes.get(envelope.type)
        if route is None:
            error = DecodeError(
                f"no handler for type {envelope.type!r} on queue {self.queue!r}",
                message_type=envelope.type,
                message_id=envelope.id,
            )
            await self._fail(message, "dispatch", error, envelope.type, envelope.id)
            return
        try:
            model = codec.validate(envelope, route.message)
        except DecodeError as exc:
            await self._fail(message, "validate", exc, envelope.type, envelope.id)
            return
        ctx = self._context(message, envelope)
        try:
            if self._settings.handler_timeout is None:
                result = await route.method(model, ctx)
            else:
                async with asyncio.timeout(self._settings.handler_timeout):
                    result = await route.method(model, ctx)
            if route.reply is not None and not isinstance(result, route.reply.model):
                raise MmateError(
                    f"handler of {envelope.type} returned {type(result).__name__}, "
                    f"not {route.reply.name}"
                )
        except Exception as exc:
            if route.reply is not None:
                await self._reply_error(envelope, props.reply_to, route.reply, exc)
            await self._fail(message, "handler", exc, envelope.type, envelope.id)
            return
        if route.reply is not None:
            try:
                await self._send_reply(envelope, props.reply_to, route.reply, result)
            except Exception as exc:  # the query was handled; its requester may be gone
                log.error("could not send the reply to %s %s: %s", envelope.type, envelope.id, exc)
        self.handled += 1
        await self._settle(message, Action.ACK)

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

    def _context(self, message: aiormq.abc.DeliveredMessage, envelope: Envelope) -> MessageContext:
        props = message.header.properties
        headers: dict[str, Any] = dict(envelope.headers)
        if props.headers:
            headers.update(props.headers)
        return MessageContext(
            message_id=envelope.id or props.message_id or "",
            message_type=envelope.type,
            correlation_id=envelope.correlation_id or props.correlation_id,
            headers=headers,
            redelivered=bool(getattr(message.delivery, "redelivered", False)),
            queue=self.queue,
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            delivery_tag=message.delivery_tag or 0,
            timestamp=envelope.timestamp or props.timestamp,
            reply_to=codec.reply_address(envelope, props.reply_to),
            attempt=_attempt(headers),
            transport=self._transport,
        )

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming; finish and ack in-flight messages within ``timeout``; close the
        channel."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        channel = self._channel
        if channel is not None and not channel.is_closed and self._consumer_tag is not None:
            try:
                await channel.basic_cancel(self._consumer_tag)
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
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                log.debug("closing the channel of %s: %r", self.queue, exc)
        log.info(
            "stopped consuming %s: %d handled, %d failed", self.queue, self.handled, self.failed
        )
