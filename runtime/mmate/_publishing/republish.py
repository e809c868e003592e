"""Moving a received message to a wait queue or a dead-letter queue without changing its body.

Contract: ``move`` publishes the original body byte for byte with the original AMQP properties and
the given headers, ``mandatory`` and with a publisher confirm, on a confirm channel of its own
(one per consuming queue, reopened after the broker closed it), and returns only once the broker
confirmed it. It raises ``UnroutableError`` (returned: the route reaches no queue), ``NackError``,
``PublishTimeout`` or ``PublishError``; the caller then must not ack the original.

Properties kept: content type and encoding, delivery mode, priority, correlation id, reply-to,
message id (the envelope's id when the property was empty, as aiormq would invent one), timestamp,
type, app id. Dropped: ``expiration`` (the target decides how long it waits; a dead letter must not
expire) and ``user_id`` (the broker refuses one that is not the publishing connection's user).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pamqp.commands import Basic

from .._transport.connection import Connection, ManagedChannel, stray_cancel
from ..errors import (
    NackError,
    PublishTimeout,
)
from .confirmed import publish_error


def copied_properties(
    original: Basic.Properties,
    headers: Mapping[str, Any],
    *,
    expiration: str | None = None,
    message_id: str | None = None,
) -> Basic.Properties:
    """The original message's properties with other ``headers`` and ``expiration``.

    Used wherever the runtime republishes a message it received (moves, retries, the delay relay,
    replays). ``user_id`` is never copied: RabbitMQ refuses a ``user_id`` that is not the publishing
    connection's user, and the original may come from another service's user.
    """
    return Basic.Properties(
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers=dict(headers),
        delivery_mode=original.delivery_mode,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        expiration=expiration,
        message_id=original.message_id or message_id or None,
        timestamp=original.timestamp,
        message_type=original.message_type,
        app_id=original.app_id,
        cluster_id=original.cluster_id,
    )


class Republisher:
    """Confirmed, mandatory publishes of raw bodies on one channel of its own."""

    def __init__(self, connection: Connection, purpose: str, *, timeout: float = 10.0) -> None:
        self._channel: ManagedChannel = connection.managed(purpose, confirms=True)
        self.timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def move(
        self,
        body: bytes,
        properties: Basic.Properties,
        *,
        exchange: str,
        routing_key: str,
        what: str,
    ) -> None:
        """Publish and wait for the confirm; ``what`` names the message in errors."""
        where = f"exchange {exchange or '(default)'!r} with routing key {routing_key!r}"
        try:
            async with asyncio.timeout(self.timeout):
                channel = await self._channel.get()
                result = await channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                )
        except TimeoutError:
            raise PublishTimeout(
                f"moving {what} to {where}: no confirm within {self.timeout:g} s",
                exchange=exchange,
                routing_key=routing_key,
            ) from None
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise
            raise publish_error(
                exc,
                action="moving",
                what=what,
                exchange=exchange,
                routing_key=routing_key,
                where=where,
            ) from exc
        if isinstance(result, Basic.Nack):  # pragma: no cover - aiormq raises DeliveryError
            raise NackError(
                f"moving {what}: the broker nacked it on {where}",
                exchange=exchange,
                routing_key=routing_key,
            )
