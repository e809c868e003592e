"""Request/reply: the client's reply queue, and sending a handler's reply back to the requester.

The requester side (``ReplyQueue``): one real, exclusive, auto-delete queue per client named
``<service>.reply.<8 hex>`` (not ``amq.rabbitmq.reply-to``: a Go responder reads ``payload.replyTo``
and could not answer it, docs/interop.md). It is declared on first use, consumed on its own channel
with auto-ack (a reply whose requester died has no one to go back to), and replies are matched to
waiting requests by the reply's correlation id (the envelope's ``correlationId``, else the AMQP
``correlation_id``, else a correlation header: ``codec.correlation_of``). Replies
nobody waits for (late, after a timeout) are logged and dropped; so are replies that cannot be
read, and a request whose correlation id such a reply carried says so when it times out.

After a lost connection (the queue, exclusive, went with it): the queue is declared and consumed
again during the recovery, before publishing resumes, under the same name (a new one while the
broker still holds the old connection and so the old queue, ``recover``). Requests whose query had
been confirmed before the loss fail at once with ``BrokerConnectionError`` (their reply may have
been lost with the old queue; the query may have been handled; send again if that is safe); a
request whose query was not yet confirmed is re-sent by the publisher and keeps waiting. When the
queue is deleted under a running client (an operator; it is exclusive to our connection), the
broker cancels its consumer: confirmed requests fail at once with ``EntityNotFound``, and the queue
is declared and consumed again under the same name.

The responder side (``send_reply``): the reply goes through the default exchange to the address from
``payload.replyTo``, else the ``reply_to`` property, else top-level ``replyTo``, with the request's
correlation id. Task safety: all methods may be called concurrently from tasks of one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import TypeVar

from .._contract.model import Model
from .._transport.base import Channel, Delivery
from .._transport.connection import Connection, ManagedChannel
from .._transport.recovery import ConnectionEvent
from .._wire import envelope as codec
from .._wire.envelope import Envelope
from ..errors import (
    BrokerConnectionError,
    DecodeError,
    EntityNotFound,
    MmateError,
    RemoteError,
    ResourceLocked,
)

log = logging.getLogger("mmate.reply")

R = TypeVar("R", bound=Model)


class ReplyQueue:
    """The reply queue of one client and the requests waiting on it."""

    def __init__(self, connection: Connection, service: str) -> None:
        self._service = service
        self.name = f"{service}.reply.{secrets.token_hex(4)}"
        self._pending: dict[str, asyncio.Future[Envelope]] = {}
        self._sent: set[str] = set()
        self._unreadable: dict[str, str] = {}
        """Waiting requests -> why a reply carrying their correlation id could not be read."""
        self._used = False
        self._rebuild: asyncio.Task[None] | None = None
        self._channel: ManagedChannel = connection.managed(
            "replies", confirms=False, on_open=self._setup
        )
        connection.on_state(self._on_state)
        connection.on_reconnect(self.recover)

    def _on_state(self, event: ConnectionEvent) -> None:
        if event.state != "lost":
            return
        self._fail_sent(
            lambda correlation_id: BrokerConnectionError(
                f"the connection to {event.url} was lost ({event.error}) while request "
                f"{correlation_id} waited for its reply on {self.name}; the query may "
                "have been handled; send it again if that is safe"
            )
        )

    def _fail_sent(self, error: Callable[[str], MmateError]) -> None:
        """Fail every waiting request whose query was confirmed with ``error(correlation_id)``:
        its reply cannot come any more."""
        for correlation_id in list(self._sent):
            future = self._pending.pop(correlation_id, None)
            if future is not None and not future.done():
                future.set_exception(error(correlation_id))
        self._sent.clear()

    async def recover(self) -> None:
        """Declare and consume the reply queue again after a reconnect (if it was in use).

        When the broker still holds the old connection (after a silent cut it notices later than
        we do), the old exclusive queue is locked (405): the client moves to a new name. Replies
        to requests sent before then go to the old queue and are lost; those requests time out.
        """
        if not self._used:
            return
        try:
            await self.ensure()
        except ResourceLocked:
            old, self.name = self.name, f"{self._service}.reply.{secrets.token_hex(4)}"
            log.warning(
                "reply queue %s is still locked by the old connection; using %s", old, self.name
            )
            await self.ensure()

    async def _setup(self, channel: Channel) -> None:
        await channel.declare_queue(self.name, exclusive=True, auto_delete=True, durable=False)
        channel.on_cancel(lambda _tag: self._on_cancelled(channel))
        await channel.consume(self.name, self._on_reply, no_ack=True)

    def _on_cancelled(self, channel: Channel) -> None:
        """The broker cancelled the reply consumer: the queue was deleted (by an operator; it is
        exclusive to this connection). Requests whose query was confirmed fail at once (their
        reply may have come while there was no queue: the broker dropped it), and the queue is
        declared and consumed again under the same name, so the requests still on their way and
        those after it get their replies."""
        self._fail_sent(
            lambda correlation_id: EntityNotFound(
                f"reply queue {self.name} was deleted while request {correlation_id} waited "
                "for its reply; the query may have been handled; send it again if that is safe"
            )
        )
        log.warning("reply queue %s was deleted; declaring it again", self.name)
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.create_task(self._declare_again(channel))

    async def _declare_again(self, channel: Channel) -> None:
        await channel.close()  # ensure() then opens a new channel, and _setup declares again
        try:
            await self.ensure()
        except MmateError as exc:  # the next request's ensure() tries again, and says why
            log.error("declaring reply queue %s again failed: %s", self.name, exc)

    async def ensure(self) -> str:
        """Declare and consume the reply queue if not yet (or again after a channel loss)."""
        self._used = True
        await self._channel.get()  # errors name the queue (declaring queue '<name>': ...)
        return self.name

    def in_use(self, correlation_id: str) -> bool:
        return correlation_id in self._pending

    def expect(self, correlation_id: str) -> asyncio.Future[Envelope]:
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        return future

    def sent(self, correlation_id: str) -> None:
        """The request's query was confirmed: a lost connection now fails it (module docstring)."""
        if correlation_id in self._pending:
            self._sent.add(correlation_id)

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)
        self._sent.discard(correlation_id)
        self._unreadable.pop(correlation_id, None)

    def unreadable(self, correlation_id: str) -> str:
        """Why a reply with this waiting request's correlation id was dropped ("" if none)."""
        return self._unreadable.get(correlation_id, "")

    def _on_reply(self, message: Delivery) -> None:
        props = message.properties
        try:
            envelope = codec.parse(message.body, props)
        except DecodeError as exc:
            # Dropped, not failing the request: a valid reply may still come (a garbled copy
            # must not beat it); the request's timeout then says what was dropped.
            log.error("undecodable reply on %s dropped: %s", self.name, exc)
            correlation_id = codec.correlation_of(None, props, None)
            if correlation_id is not None and correlation_id in self._pending:
                self._unreadable[correlation_id] = str(exc)[:300]
            return
        correlation_id = envelope.correlation_id or ""
        future = self._pending.pop(correlation_id, None)
        self._sent.discard(correlation_id)
        if future is None or future.done():
            log.warning(
                "reply %s (%s) with correlation id %r has no waiting request (late?); dropped",
                envelope.id,
                envelope.type,
                correlation_id,
            )
            return
        future.set_result(envelope)

    async def close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(MmateError("the client was closed while waiting for a reply"))
        self._pending.clear()
        self._sent.clear()
        self._unreadable.clear()
        if self._rebuild is not None and not self._rebuild.done():
            self._rebuild.cancel()
            await asyncio.gather(self._rebuild, return_exceptions=True)
        await self._channel.close()


def reply_model(
    envelope: Envelope,
    expected: str | None,
    reply: type[R],
    correlation_id: str,
    *,
    query_type: str = "",
) -> R:
    """The reply to a ``query_type`` request as its model. A reply with ``success: false`` is the
    responder's error, whatever its type (Go answers a failed query with type ``<Query>Error``):
    ``RemoteError`` with the peer's code and text. A success reply of another type than
    ``expected`` (the query's reply contract) is ``DecodeError``, never a half-filled model; so is
    one that fails validation. Both name the query, the correlation id and the reply's type."""
    failure = codec.reply_failure(envelope)
    if failure is None:
        if expected is not None and envelope.type != expected:
            asked = f"{query_type} request" if query_type else "request"
            raise DecodeError(
                f"reply {envelope.id} to {asked} {correlation_id} has type {envelope.type!r}, "
                f"expected {expected!r}",
                message_type=envelope.type,
                message_id=envelope.id,
            )
        try:
            model = reply.model_validate(envelope.payload)
        except ValueError as exc:
            raise DecodeError(
                f"reply {envelope.type} {envelope.id} fails validation as {reply.__name__}: {exc}",
                message_type=envelope.type,
                message_id=envelope.id,
            ) from None
        if getattr(model, "success", None) is not False:
            return model
        # ``"false"`` or ``0`` on the wire, which the model reads as False: an error reply all
        # the same, never a model handed over as if the query had succeeded.
        failure = codec.reply_error(envelope)
    raise RemoteError(
        failure[0],
        failure[1],
        reply_type=envelope.type,
        correlation_id=correlation_id,
        query_type=query_type,
    )
