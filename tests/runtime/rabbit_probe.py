"""A small aiormq adapter with the seam's ``Link`` / ``Channel`` shape, so that one test runs on
the in-memory broker and on RabbitMQ unchanged and proves that both behave alike.

It is a test probe, not a backend: it maps aiormq's results and exceptions onto the seam's values
and mmate's errors, the way the seam's contract describes, and nothing more (no recovery, no
publish window). The runtime's real RabbitMQ backend is ``_transport.aiormq``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiormq
import aiormq.abc
import aiormq.exceptions as amqp
from mmate._transport.base import (
    CancelCallback,
    CloseCallback,
    Delivery,
    DeliveryCallback,
    Properties,
    QueueInfo,
    ReturnCallback,
)
from mmate.errors import (
    AccessRefused,
    BrokerConnectionError,
    ChannelClosed,
    EntityNotFound,
    MmateError,
    NackError,
    PreconditionFailed,
    ResourceLocked,
    TopologyError,
    UnroutableError,
)
from pamqp.commands import Basic

_CODES: tuple[tuple[type[Exception], type[TopologyError], int], ...] = (
    (amqp.ChannelNotFoundEntity, EntityNotFound, 404),
    (amqp.ChannelAccessRefused, AccessRefused, 403),
    (amqp.ChannelLockedResource, ResourceLocked, 405),
    (amqp.ChannelPreconditionFailed, PreconditionFailed, 406),
)


def _reply(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _error(exc: BaseException, doing: str) -> MmateError:
    for source, target, code in _CODES:
        if isinstance(exc, source):
            text = f"{doing}: {code} {_reply(exc)}"
            if target is PreconditionFailed:
                return PreconditionFailed(text, entity="", wanted={}, broker_reply=_reply(exc))
            return target(text, entity="", broker_reply=_reply(exc))
    if isinstance(exc, amqp.AMQPConnectionError):
        return BrokerConnectionError(f"{doing}: {_reply(exc)}")
    return MmateError(f"{doing}: {type(exc).__name__}: {exc}")


def _properties(p: Properties) -> Basic.Properties:
    return Basic.Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=p.headers,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=p.timestamp,
        message_type=p.type,
        user_id=p.user_id,
        app_id=p.app_id,
    )


def _seam_properties(p: Basic.Properties) -> Properties:
    return Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=dict(p.headers) if p.headers is not None else None,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=p.timestamp,
        type=p.message_type,
        user_id=p.user_id,
        app_id=p.app_id,
    )


class RabbitChannel:
    def __init__(self, channel: aiormq.abc.AbstractChannel, confirms: bool) -> None:
        self._channel = channel
        self._confirms = confirms
        self._reason: MmateError | None = None
        self._closed_by_us = False
        self._close_callbacks: list[CloseCallback] = []
        self._cancel_callbacks: list[CancelCallback] = []
        channel.closing.add_done_callback(self._on_closing)
        channel.on_consumer_cancel_callbacks.add(self._on_cancel_frame)

    def _on_closing(self, future: asyncio.Future[Any]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None and not self._closed_by_us:
            self._reason = _error(exc, "channel closed by the broker")
        for callback in self._close_callbacks:
            callback(self._reason)

    async def _on_cancel_frame(self, frame: Any) -> None:
        for callback in self._cancel_callbacks:
            callback(frame.consumer_tag)

    @property
    def is_open(self) -> bool:
        return not self._channel.is_closed

    @property
    def close_reason(self) -> MmateError | None:
        return self._reason

    @property
    def confirms(self) -> bool:
        return self._confirms

    def on_close(self, callback: CloseCallback) -> None:
        self._close_callbacks.append(callback)

    def on_return(self, callback: ReturnCallback) -> None:
        raise NotImplementedError("returns without confirms are not probed through aiormq")

    def on_cancel(self, callback: CancelCallback) -> None:
        self._cancel_callbacks.append(callback)

    async def wait_closed(self, timeout: float) -> MmateError | None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._channel.closing), timeout)
        return self._reason

    async def _run(self, doing: str, call: Callable[[], Awaitable[Any]]) -> Any:
        if self._channel.is_closed:
            reason = self._reason
            code, text = (0, "") if reason is None else _code_and_text(reason)
            raise ChannelClosed(f"{doing}: channel closed", reply_code=code, reply_text=text)
        try:
            return await call()
        except (amqp.AMQPError, amqp.ChannelInvalidStateError) as exc:
            await asyncio.sleep(0.01)  # let aiormq record the close
            if isinstance(exc, amqp.ChannelInvalidStateError) and self._reason is not None:
                code, text = _code_and_text(self._reason)
                raise ChannelClosed(
                    f"{doing}: channel closed", reply_code=code, reply_text=text
                ) from None
            raise _error(exc, doing) from None

    async def declare_exchange(
        self,
        name: str,
        type: str = "topic",
        *,
        durable: bool = True,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        passive: bool = False,
    ) -> None:
        await self._run(
            f"declare exchange {name!r}",
            lambda: self._channel.exchange_declare(
                name,
                exchange_type=type,
                durable=durable,
                auto_delete=auto_delete,
                arguments=dict(arguments or {}),
                passive=passive,
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
        ok = await self._run(
            f"declare queue {name!r}",
            lambda: self._channel.queue_declare(
                name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=dict(arguments or {}),
                passive=passive,
            ),
        )
        return QueueInfo(ok.queue, ok.message_count, ok.consumer_count)

    async def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        await self._run(
            f"bind queue {queue!r}",
            lambda: self._channel.queue_bind(
                queue, exchange, routing_key=routing_key, arguments=dict(arguments or {})
            ),
        )

    async def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        await self._run(
            f"unbind queue {queue!r}",
            lambda: self._channel.queue_unbind(
                queue, exchange, routing_key=routing_key, arguments=dict(arguments or {})
            ),
        )

    async def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        await self._run(
            f"bind exchange {destination!r}",
            lambda: self._channel.exchange_bind(
                destination, source, routing_key=routing_key, arguments=dict(arguments or {})
            ),
        )

    async def delete_queue(self, name: str) -> int:
        ok = await self._run(f"delete queue {name!r}", lambda: self._channel.queue_delete(name))
        return int(ok.message_count)

    async def delete_exchange(self, name: str) -> None:
        await self._run(f"delete exchange {name!r}", lambda: self._channel.exchange_delete(name))

    async def purge_queue(self, name: str) -> int:
        ok = await self._run(f"purge queue {name!r}", lambda: self._channel.queue_purge(name))
        return int(ok.message_count)

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
        doing = f"publish to {exchange!r} with routing key {routing_key!r}"
        try:
            await self._run(
                doing,
                lambda: self._channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=_properties(properties),
                    mandatory=mandatory,
                    timeout=timeout,
                ),
            )
        except MmateError as error:
            text = str(error)
            if "Basic.Return" in text:
                raise UnroutableError(text, exchange=exchange, routing_key=routing_key) from None
            if "Basic.Nack" in text:
                raise NackError(text, exchange=exchange, routing_key=routing_key) from None
            raise

    async def qos(self, prefetch: int) -> None:
        await self._run("qos", lambda: self._channel.basic_qos(prefetch_count=prefetch))

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
            callback(self._delivery(message))

        ok = await self._run(
            f"consume from queue {queue!r}",
            lambda: self._channel.basic_consume(
                queue,
                on_message,
                no_ack=no_ack,
                exclusive=exclusive,
                arguments=dict(arguments or {}),
            ),
        )
        return str(ok.consumer_tag)

    def _delivery(self, message: aiormq.abc.DeliveredMessage) -> Delivery:
        frame = message.delivery
        return Delivery(
            body=message.body,
            properties=_seam_properties(message.header.properties),
            exchange=frame.exchange,
            routing_key=frame.routing_key,
            delivery_tag=frame.delivery_tag,
            redelivered=frame.redelivered,
            channel=self,  # type: ignore[arg-type]
            consumer_tag=getattr(frame, "consumer_tag", "") or "",
        )

    async def cancel(self, consumer_tag: str) -> None:
        await self._run("cancel", lambda: self._channel.basic_cancel(consumer_tag))

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        await self._run("ack", lambda: self._channel.basic_ack(delivery_tag, multiple=multiple))

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        await self._run(
            "nack",
            lambda: self._channel.basic_nack(delivery_tag, multiple=multiple, requeue=requeue),
        )

    async def get(self, queue: str, *, no_ack: bool = False) -> Delivery | None:
        message = await self._run(
            f"get from queue {queue!r}", lambda: self._channel.basic_get(queue, no_ack=no_ack)
        )
        if isinstance(message.delivery, Basic.GetEmpty):
            return None
        return self._delivery(message)

    async def tx_select(self) -> None:
        await self._run("tx.select", self._channel.tx_select)

    async def tx_commit(self) -> None:
        await self._run("tx.commit", self._channel.tx_commit)

    async def tx_rollback(self) -> None:
        await self._run("tx.rollback", self._channel.tx_rollback)

    async def close(self) -> None:
        self._closed_by_us = True
        if not self._channel.is_closed:
            await self._channel.close()


def _code_and_text(error: MmateError) -> tuple[int, str]:
    if isinstance(error, TopologyError):
        for _, target, code in _CODES:
            if isinstance(error, target):
                return code, error.broker_reply
    return 0, str(error)


class RabbitLink:
    def __init__(self, connection: aiormq.abc.AbstractConnection) -> None:
        self._connection = connection

    @property
    def is_closed(self) -> bool:
        return self._connection.is_closed

    async def channel(self, *, confirms: bool) -> RabbitChannel:
        channel = await self._connection.channel(publisher_confirms=confirms)
        return RabbitChannel(channel, confirms)

    async def close(self) -> None:
        await self._connection.close()


async def connect(url: str) -> RabbitLink:
    return RabbitLink(await aiormq.connect(url))
