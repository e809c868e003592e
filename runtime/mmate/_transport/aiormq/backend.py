"""The RabbitMQ backend of the transport seam, over aiormq: ``AiormqBackend`` opens an
``AiormqLink`` (one aiormq connection), whose ``AiormqChannel`` implements ``base.Channel``.

Every aiormq call is wrapped so that only mmate's errors come out (``errors.translate``), and
every value that crosses is the seam's (``Properties``, ``Delivery``...). Two places rely on
aiormq's internals, because aiormq offers no public way, and nowhere else does:

* ``AiormqChannel.is_open`` reads the channel's ``_close_exception``: aiormq answers the broker's
  ``channel.close`` at once but marks the channel closed a moment later; a frame written in
  between makes the broker close the whole connection (504 CHANNEL_ERROR).
* returns of mandatory publishes on a channel without confirms (a transaction's) reach
  ``on_return`` through the channel's ``confirmations`` / ``message_id_delivery_tag``, where aiormq
  looks returned messages up (it drops them otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import weakref
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiormq
import aiormq.abc
import aiormq.exceptions
from pamqp.commands import Basic

from ...errors import BrokerConnectionError, ChannelClosed, MmateError, NackError
from ..base import (
    Backend,
    CancelCallback,
    Channel,
    Clock,
    CloseCallback,
    Delivery,
    DeliveryCallback,
    ExchangeType,
    Features,
    Link,
    LostCallback,
    Properties,
    QueueInfo,
    ReturnCallback,
    Returned,
)
from ..urls import mask
from . import frames, open_refusal
from .errors import reply_of, stray_cancel, translate
from .properties import from_pamqp, to_pamqp
from .urls import aiormq_url

log = logging.getLogger("mmate.transport")

T = TypeVar("T")

FEATURES = Features(
    name="rabbitmq",
    persistence=True,
    clustering=True,
    resource_alarms=True,
    network_faults=True,
    delayed_message_plugin=True,
    management_api=True,
    virtual_time=False,
    amqp_wire=True,
)

FRAME_BUFFER = 1024
"""Frames aiormq may queue between a connection's reader and one channel's reader (aiormq's
default is 10). With 10, the connection's reader stops after three deliveries and waits for the
channel to take a frame, so a consumer pays a task switch and a future for nearly every frame;
with room for a few hundred deliveries the reader decodes everything one socket read holds
before the channel runs (consume throughput up 15-20 %, bench/RESULTS.md). Memory stays bounded
by the prefetch, as before: aiormq turns each delivery into a task as soon as its channel reads
it, so the queue never held back what the broker had sent."""

# Keys under which returned-message futures are registered on a channel without confirms:
# negative, so they never collide with aiormq's own delivery tags.
_return_keys = itertools.count(-1, -1)


class _BlockedReasons(logging.Filter):
    """Remembers why the broker blocked a connection (``connection.blocked`` carries a reason such
    as "low on memory"). aiormq keeps it to itself and only logs it, so its log record is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == "Connection %r was blocked by: %r" and isinstance(args, tuple):
            with contextlib.suppress(TypeError, IndexError):
                self.reasons[args[0]] = str(args[1])
        return True


_blocked = _BlockedReasons()
logging.getLogger("aiormq.connection").addFilter(_blocked)


def _run_callback(what: str, callback: Any, *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("a %s callback failed", what)


class SystemClock:
    """Wall-clock time (RabbitMQ's)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AiormqChannel:
    """``base.Channel`` over one ``aiormq.Channel``."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, confirms: bool) -> None:
        self._channel = channel
        self._confirms = confirms
        self._close_callbacks: list[CloseCallback] = []
        self._return_callbacks: list[ReturnCallback] = []
        self._cancel_callbacks: list[CancelCallback] = []
        self._reason: MmateError | None = None
        self._reply: tuple[int, str] = (0, "")
        """The broker's reply code and text when it closed the channel."""
        self._closed_by_us = False
        self._returns: dict[str, int] = {}
        """Message id -> key of a mandatory publish on a channel without confirms."""
        self._publishing: set[asyncio.Task[Any]] = set()
        """Tasks inside ``basic_publish``: the channel's close wakes them (``_on_closing``)."""
        self._woken: set[asyncio.Task[Any]] = set()
        channel.closing.add_done_callback(self._on_closing)
        channel.on_consumer_cancel_callbacks.add(self._on_cancel)

    def __repr__(self) -> str:
        return f"<mmate AiormqChannel {self._channel!r}>"

    # -- state ----------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        # Not open either once our own close started: between our Channel.Close and the broker's
        # CloseOk the broker may already have freed the channel, and any frame written there
        # (an ack of a handler that just finished) makes it close the whole connection with
        # 504 CHANNEL_ERROR "expected 'channel.open'".
        channel = self._channel
        return (
            not self._closed_by_us
            and not channel.is_closed
            and getattr(channel, "_close_exception", None) is None
        )

    @property
    def close_reason(self) -> MmateError | None:
        return self._reason

    @property
    def confirms(self) -> bool:
        return self._confirms

    def on_close(self, callback: CloseCallback) -> None:
        if self._channel.is_closed:
            _run_callback("channel close", callback, self._reason)
        else:
            self._close_callbacks.append(callback)

    def _on_closing(self, done: asyncio.Future[Any]) -> None:
        error = None if done.cancelled() else done.exception()
        if error is not None and not self._closed_by_us:
            if isinstance(error, asyncio.CancelledError):
                self._reason = BrokerConnectionError("the channel closed with its connection")
            else:
                self._reason = translate(error, "the channel was closed")
                self._reply = reply_of(error)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            _run_callback("channel close", callback, self._reason)
        # aiormq fails the confirms it waits for, but not a publish still waiting for room in
        # the dead connection's frame buffer: that one would wait out its whole timeout and be
        # reported as a lost confirm instead of being sent again at once.
        for task in self._publishing:
            if not task.done():
                self._woken.add(task)
                task.cancel()

    async def wait_closed(self, timeout: float) -> MmateError | None:
        if not self._channel.is_closed:
            closing = self._channel.closing
            await asyncio.wait({closing}, timeout=timeout)
            if not closing.done():
                closing.cancel()  # only this observer
        return self._reason

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise
            if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
                raise self._closed(what) from None
            raise translate(exc, what) from None

    def _closed(self, what: str) -> ChannelClosed:
        """The error of a call on a channel that is closed already."""
        reason = self._reason
        code, text = self._reply
        return ChannelClosed(
            f"{what}: the channel is closed" + (f" ({reason})" if reason is not None else ""),
            reply_code=code,
            reply_text=text,
        )

    # -- topology -------------------------------------------------------------------------------

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
        await self._call(
            f"declaring exchange {name!r}",
            self._channel.exchange_declare(
                exchange=name,
                exchange_type=type,
                passive=passive,
                durable=durable,
                auto_delete=auto_delete,
                arguments=dict(arguments) if arguments else None,
            ),
        )

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
        ok = await self._call(
            f"declaring queue {name!r}",
            self._channel.queue_declare(
                queue=name,
                passive=passive,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=dict(arguments) if arguments else None,
            ),
        )
        return QueueInfo(str(ok.queue), int(ok.message_count or 0), int(ok.consumer_count or 0))

    async def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        await self._call(
            f"binding queue {queue!r} to exchange {exchange!r} with {routing_key!r}",
            self._channel.queue_bind(
                queue=queue,
                exchange=exchange,
                routing_key=routing_key,
                arguments=dict(arguments) if arguments else None,
            ),
        )

    async def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        await self._call(
            f"unbinding queue {queue!r} from exchange {exchange!r} ({routing_key!r})",
            self._channel.queue_unbind(
                queue=queue,
                exchange=exchange,
                routing_key=routing_key,
                arguments=dict(arguments) if arguments else None,
            ),
        )

    async def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        await self._call(
            f"binding exchange {destination!r} to exchange {source!r} with {routing_key!r}",
            self._channel.exchange_bind(
                destination=destination,
                source=source,
                routing_key=routing_key,
                arguments=dict(arguments) if arguments else None,
            ),
        )

    async def delete_queue(self, name: str) -> int:
        ok = await self._call(f"deleting queue {name!r}", self._channel.queue_delete(name))
        return int(getattr(ok, "message_count", 0) or 0)

    async def delete_exchange(self, name: str) -> None:
        await self._call(f"deleting exchange {name!r}", self._channel.exchange_delete(name))

    async def purge_queue(self, name: str) -> int:
        ok = await self._call(f"purging queue {name!r}", self._channel.queue_purge(name))
        return int(getattr(ok, "message_count", 0) or 0)

    # -- publishing -----------------------------------------------------------------------------

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
        pamqp_properties = to_pamqp(properties)
        channel = self._channel
        if not self._confirms and mandatory and self._return_callbacks:
            self._expect_return(channel, pamqp_properties, exchange, routing_key)
        task = asyncio.current_task()
        if task is not None:
            self._publishing.add(task)
        try:
            # ``wait`` is a parameter of aiormq's Channel.basic_publish, missing from its
            # abstract type. Not waiting for the socket buffer to drain after every frame: the
            # confirm is what counts, and the caller's in-flight window bounds unflushed bytes.
            result = await channel.basic_publish(  # type: ignore[call-arg]
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=pamqp_properties,
                mandatory=mandatory,
                timeout=timeout,
                wait=False,
            )
        except TimeoutError:
            raise
        except (Exception, asyncio.CancelledError) as exc:
            where = f"exchange {exchange or '(default)'!r} with routing key {routing_key!r}"
            if task is not None and task in self._woken:
                # Our own wake-up from _on_closing (it lands in this await: the task was waiting
                # inside basic_publish); a cancel of the caller's own still wins.
                self._woken.discard(task)
                if task.uncancel() > 0:
                    raise
                if isinstance(self._reason, BrokerConnectionError):
                    raise BrokerConnectionError(f"publishing to {where}: {self._reason}") from None
                raise self._closed(f"publishing to {where}") from None
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise
            if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
                raise self._closed(f"publishing to {where}") from None
            raise translate(exc, f"publishing to {where}") from None
        finally:
            if task is not None:
                self._publishing.discard(task)  # a woken task left _woken in the except above
        if isinstance(result, Basic.Nack):  # pragma: no cover - aiormq raises DeliveryError
            raise NackError(f"publishing to exchange {exchange!r}: nacked")

    def on_return(self, callback: ReturnCallback) -> None:
        self._return_callbacks.append(callback)

    def _expect_return(
        self, channel: aiormq.abc.AbstractChannel, props: Basic.Properties, exchange: str, key: str
    ) -> None:
        """Make aiormq hand a returned message of this publish to ``on_return`` (the module
        docstring says why this needs its lookup tables)."""
        if props.message_id is None:
            return
        tag = next(_return_keys)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        message_id = str(props.message_id)
        confirmations = channel.confirmations  # type: ignore[attr-defined]
        lookup = channel.message_id_delivery_tag  # type: ignore[attr-defined]
        lookup[message_id] = tag
        confirmations[tag] = future
        self._returns[message_id] = tag

        def returned(done: asyncio.Future[Any]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is None:
                return
            code, text = reply_of(error)
            event = Returned(message_id, code, text, exchange, key)
            for callback in list(self._return_callbacks):
                _run_callback("return", callback, event)

        future.add_done_callback(returned)

    def _forget_returns(self) -> None:
        """After a commit or rollback every return has arrived: drop the lookup entries."""
        confirmations = getattr(self._channel, "confirmations", {})
        lookup = getattr(self._channel, "message_id_delivery_tag", {})
        for message_id, tag in self._returns.items():
            future = confirmations.pop(tag, None)
            if lookup.get(message_id) == tag:
                del lookup[message_id]
            if future is not None and not future.done():
                future.cancel()
        self._returns.clear()

    # -- consuming ------------------------------------------------------------------------------

    async def qos(self, prefetch: int) -> None:
        await self._call("setting the prefetch", self._channel.basic_qos(prefetch_count=prefetch))

    async def consume(
        self,
        queue: str,
        callback: DeliveryCallback,
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            try:
                callback(self._delivery(message))
            except Exception:
                log.exception("the delivery callback of queue %s failed", queue)

        ok = await self._call(
            f"consuming queue {queue!r}",
            self._channel.basic_consume(
                queue,
                on_message,
                no_ack=no_ack,
                exclusive=exclusive,
                arguments=dict(arguments) if arguments else None,
            ),
        )
        return str(ok.consumer_tag)

    def _delivery(self, message: aiormq.abc.DeliveredMessage) -> Delivery:
        deliver = message.delivery
        return Delivery(
            body=message.body,
            properties=from_pamqp(message.header.properties),
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            delivery_tag=message.delivery_tag or 0,
            redelivered=bool(getattr(deliver, "redelivered", False)),
            channel=self,
            consumer_tag=str(getattr(deliver, "consumer_tag", "") or ""),
        )

    async def cancel(self, consumer_tag: str) -> None:
        await self._call(
            f"cancelling consumer {consumer_tag!r}", self._channel.basic_cancel(consumer_tag)
        )

    def on_cancel(self, callback: CancelCallback) -> None:
        self._cancel_callbacks.append(callback)

    def _on_cancel(self, frame: Basic.Cancel) -> None:
        for callback in list(self._cancel_callbacks):
            _run_callback("consumer cancel", callback, str(frame.consumer_tag or ""))

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        if self._closed_by_us:
            raise self._closed(f"acking delivery {delivery_tag}")
        await self._call(
            f"acking delivery {delivery_tag}",
            self._channel.basic_ack(delivery_tag, multiple=multiple),
        )

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        if self._closed_by_us:
            raise self._closed(f"nacking delivery {delivery_tag}")
        await self._call(
            f"nacking delivery {delivery_tag}",
            self._channel.basic_nack(delivery_tag, multiple=multiple, requeue=requeue),
        )

    async def get(self, queue: str, *, no_ack: bool = False) -> Delivery | None:
        message = await self._call(
            f"getting a message from queue {queue!r}",
            self._channel.basic_get(queue, no_ack=no_ack),
        )
        if not isinstance(message.delivery, Basic.GetOk):
            return None
        return self._delivery(message)

    # -- transactions ---------------------------------------------------------------------------

    async def tx_select(self) -> None:
        await self._call("starting a transaction", self._channel.tx_select())

    async def tx_commit(self) -> None:
        try:
            await self._call("committing the transaction", self._channel.tx_commit())
        finally:
            self._forget_returns()

    async def tx_rollback(self) -> None:
        try:
            await self._call("rolling the transaction back", self._channel.tx_rollback())
        finally:
            self._forget_returns()

    async def close(self) -> None:
        self._closed_by_us = True
        self._forget_returns()
        if not self._channel.is_closed:
            try:
                await self._channel.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing a channel: %r", exc)


class AiormqLink:
    """``base.Link`` over one aiormq connection."""

    def __init__(self, connection: aiormq.abc.AbstractConnection, masked_url: str) -> None:
        self._connection = connection
        self._url = masked_url
        self._closing_by_us = False
        self._lost_callbacks: list[LostCallback] = []
        connection.closing.add_done_callback(self._on_closing)

    @property
    def is_closed(self) -> bool:
        return self._connection.is_closed

    def on_lost(self, callback: LostCallback) -> None:
        self._lost_callbacks.append(callback)

    def _on_closing(self, done: asyncio.Future[Any]) -> None:
        if self._closing_by_us:
            return
        error = None if done.cancelled() else done.exception()
        text = "closed" if error is None else str(error).split("Unexpected connection close")[0]
        reason = text.strip() or type(error).__name__
        for callback in list(self._lost_callbacks):
            _run_callback("connection lost", callback, reason)

    async def channel(self, *, confirms: bool) -> AiormqChannel:
        try:
            channel = await self._connection.channel(
                publisher_confirms=confirms, frame_buffer_size=FRAME_BUFFER
            )
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise
            raise translate(exc, f"opening a channel on {self._url}") from None
        return AiormqChannel(channel, confirms)

    async def blocked(self) -> str | None:
        connection = self._connection
        if connection.is_closed:
            return None
        try:
            await asyncio.wait_for(connection.ready(), 0.05)  # returns at once unless blocked
        except TimeoutError:
            return _blocked.reasons.get(connection) or "a resource alarm (memory or disk)"
        return None

    async def close(self) -> None:
        self._closing_by_us = True
        if not self._connection.is_closed:
            try:
                await self._connection.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing %s: %r", self._url, exc)


class AiormqBackend:
    """Links to RabbitMQ (``amqp://`` and ``amqps://`` URLs)."""

    features: Features = FEATURES
    clock: Clock = SystemClock()

    async def connect(
        self,
        url: str,
        *,
        name: str,
        heartbeat: int,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
    ) -> AiormqLink:
        masked = mask(url)
        frames.install()  # one hostile frame must not kill the connection (frames.py)
        full = aiormq_url(url, heartbeat=heartbeat, connection_name=name)
        try:
            connection = await asyncio.wait_for(aiormq.connect(full, context=ssl_context), timeout)
        except TimeoutError:
            raise BrokerConnectionError(
                f"connecting to {masked}: no answer within {timeout:g} s"
            ) from None
        except Exception as exc:
            refused = None
            if "Connection.Close" in str(exc):  # aiormq lost the broker's words: ask again
                refused = await open_refusal.ask(full, ssl_context, timeout)
            if refused is not None:
                code, text = refused
                raise BrokerConnectionError(
                    f"connecting to {masked}: the broker refused to open the connection: "
                    f"{code} {text}"
                ) from None
            error = translate(exc, f"connecting to {masked}")
            text = str(error).replace(full, masked).replace(url, masked)
            if not isinstance(error, BrokerConnectionError):
                text += " (does the vhost exist, and may this user use it?)"
            raise BrokerConnectionError(text) from None
        return AiormqLink(connection, masked)


def _implements_the_seam(b: AiormqBackend, link: AiormqLink, c: AiormqChannel) -> tuple[Any, ...]:
    """Never called: mypy checks that the three classes satisfy the seam's protocols."""
    backend: Backend = b
    lk: Link = link
    channel: Channel = c
    return backend, lk, channel
