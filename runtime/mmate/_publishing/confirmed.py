"""Confirmed, mandatory publishing on one channel, pipelined.

Contract: ``send`` returns only after the broker confirmed the message (``basic.ack``); an
unroutable message (``mandatory`` is always set) raises ``UnroutableError``, a ``basic.nack`` raises
``NackError``, no confirm within the timeout raises ``PublishTimeout``. Many tasks may call ``send``
concurrently: their publishes go out back to back on the publishing channel and wait for their
confirms together, up to ``max_in_flight`` unconfirmed at once (a semaphore; further callers wait
for a slot, inside their timeout). ``send_many`` publishes a list that way and raises
``BatchPublishError`` listing exactly the failed ones.

A publish whose confirm was lost with its channel or connection (``_lost_in_transit``) is sent
again, the same bytes with the same message id, once the channel is back (after a recovery of the
connection, ``connection.py``), as long as its timeout has not run out; its caller returns only on
a real confirm. The broker may therefore get it twice (at least once; consumers can deduplicate by
message id). Once the timeout has run out, ``PublishTimeout`` says that it may or may not have
arrived. A publish never returns without a confirm.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import aiormq.abc
import aiormq.exceptions
from pamqp.commands import Basic

from .._transport.connection import Connection, ManagedChannel, stray_cancel, usable
from .._wire.envelope import Encoded
from ..errors import (
    BatchFailure,
    BatchPublishError,
    BrokerConnectionError,
    MmateError,
    NackError,
    PublishError,
    PublishTimeout,
    UnroutableError,
    broker_reply,
    classify,
)

log = logging.getLogger("mmate.publish")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An encoded message and where it goes."""

    encoded: Encoded
    exchange: str
    routing_key: str


def publish_error(
    exc: BaseException, *, action: str, what: str, exchange: str, routing_key: str, where: str
) -> PublishError:
    """The ``PublishError`` for a failed publish, by the one aiormq -> mmate table (``errors``).

    ``action`` says what was being done (``publishing``, ``moving``), ``what`` names the message and
    ``where`` its destination; every publish path of the runtime words its errors through here.
    ``exc`` may be aiormq's stray ``CancelledError`` (``stray_cancel``): a lost connection.
    """
    if not isinstance(exc, Exception):
        exc = BrokerConnectionError("the connection was lost (missed heartbeats)")
    kind = classify(exc)
    if kind is UnroutableError:
        text = f"{action} {what}: unroutable, no queue is bound to {where} ({broker_reply(exc)})"
    elif kind is NackError:
        text = f"{action} {what}: the broker nacked it on {where}"
    else:
        kind = PublishError
        detail = str(exc) if isinstance(exc, MmateError) else broker_reply(exc)
        # 404 on a missing exchange closes the channel; it is reopened on the next publish.
        text = f"{action} {what} to {where} failed: {detail}"
    return kind(text, exchange=exchange, routing_key=routing_key)


def as_publish_error(error: Exception) -> PublishError:
    """A non-mmate exception from a batch member, as the ``PublishError`` a batch reports."""
    wrapped = PublishError(f"{type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _lost_in_transit(exc: BaseException, out: Outgoing) -> bool:
    """The publish failed because its channel or the connection went away, not because of the
    message: a closed channel (``ChannelInvalidStateError``), a lost connection (also aiormq's
    stray ``CancelledError`` after missed heartbeats), or the broker closing the shared channel
    over another message (an error naming another exchange: the innocent messages in flight on
    that channel get the same error). A broker error about the message itself (naming its
    exchange, or none, such as a size limit; unroutable; nack) is not."""
    if isinstance(exc, aiormq.exceptions.ChannelClosed):
        text = str(exc)
        return "exchange '" in text and f"exchange '{out.exchange or 'amq.default'}'" not in text
    return stray_cancel(exc) or isinstance(
        exc, (aiormq.exceptions.ChannelInvalidStateError, ConnectionError, BrokerConnectionError)
    )


def _where(exchange: str, routing_key: str) -> str:
    return f"exchange {exchange or '(default)'!r} with routing key {routing_key!r}"


class ConfirmedPublisher:
    """Publishes with confirms and ``mandatory`` on one managed channel.

    Hot path (a free slot in the window, the channel open): no task, lock or timer of its own; the
    timeout is aiormq's, which covers the write and the confirm; no drain per frame
    (``wait=False``: the window bounds what can sit in the socket buffer). A publish that waits
    for a slot or for the channel to be (re)opened has one timer over everything instead.
    """

    def __init__(
        self, connection: Connection, *, max_in_flight: int = 1000, timeout: float = 10.0
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._connection = connection
        self._channel: ManagedChannel = connection.managed("publishing", confirms=True)
        self._open: aiormq.abc.AbstractChannel | None = None
        """The channel the last ``get`` returned, used while it is open and no ``get`` waits."""
        self._getting = 0
        self._window = asyncio.Semaphore(max_in_flight)
        self.timeout = timeout
        self.resent = 0
        """Publishes sent again because their channel was lost before the confirm."""

    async def close(self) -> None:
        self._open = None
        await self._channel.close()

    async def _reopened(self) -> aiormq.abc.AbstractChannel:
        """The channel through ``ManagedChannel.get``, which reopens a closed one and lets callers
        that queued meanwhile go first, in arrival order."""
        self._getting += 1
        try:
            # Bounded by the caller's timeout (the publish's), not by the connect timeout.
            channel = await self._channel.get(wait=math.inf)
        finally:
            self._getting -= 1
        self._open = channel
        return channel

    async def send(self, out: Outgoing, *, timeout: float | None = None) -> None:
        """Publish one message and wait for its confirm (see module docstring for the errors)."""
        limit = self.timeout if timeout is None else timeout
        window = self._window
        channel = self._open
        sent = False
        try:
            if window.locked() or not usable(channel) or self._getting:
                # Waits for a slot or the channel: one timer over the wait, write and confirm.
                async with asyncio.timeout(limit), window:
                    channel = await self._reopened()
                    sent = True
                    result = await self._publish(channel, out, None)
            else:
                await window.acquire()  # a free slot: returns at once
                sent = True
                try:
                    result = await self._publish(channel, out, limit)  # aiormq's timer
                finally:
                    window.release()
        except TimeoutError:
            raise await self._timeout_error(out, limit, sent=sent) from None
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                raise  # a real cancellation of the caller
            if not _lost_in_transit(exc, out) or not self._connection.wanted:
                raise self._error(out, exc) from exc
            # The hot path keeps no start time: the resend gets the whole timeout again.
            result = await self._resend(out, limit)
        if isinstance(result, Basic.Nack):  # pragma: no cover - aiormq raises DeliveryError
            raise NackError(
                f"the broker nacked {out.encoded.type} {out.encoded.message_id} to "
                f"{_where(out.exchange, out.routing_key)}",
                exchange=out.exchange,
                routing_key=out.routing_key,
            )

    async def _resend(self, out: Outgoing, limit: float) -> object:
        """Send ``out`` again until confirmed, its channel lost each time, within ``limit``."""
        self.resent += 1
        log.debug(
            "%s %s: its channel was lost before the confirm; sending it again",
            out.encoded.type,
            out.encoded.message_id,
        )
        pause = 0.01
        try:
            async with asyncio.timeout(limit):
                while True:
                    try:
                        async with self._window:
                            channel = await self._reopened()
                            return await self._publish(channel, out, None)
                    except (Exception, asyncio.CancelledError) as exc:
                        if isinstance(exc, asyncio.CancelledError) and not stray_cancel(exc):
                            raise
                        if not _lost_in_transit(exc, out) or not self._connection.wanted:
                            raise self._error(out, exc) from exc
                    # Channel killed again by other messages' errors: do not spin on it.
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
        except TimeoutError:
            raise await self._timeout_error(out, limit, sent=True) from None

    async def _timeout_error(self, out: Outgoing, limit: float, *, sent: bool) -> PublishTimeout:
        where = _where(out.exchange, out.routing_key)
        what = f"{out.encoded.type} {out.encoded.message_id} to {where}"
        blocked = await self._connection.blocked()
        arrived = "it may have reached the broker" if sent else "nothing was published"
        if blocked is not None:
            text = (
                f"{what}: no confirm within {limit:g} s, the broker is blocking publishers "
                f"({blocked}; see the alarms in `rabbitmqctl status`); {arrived}"
            )
        elif not self._connection.is_up:
            text = (
                f"{what}: no confirm within {limit:g} s, the broker connection is down "
                f"({self._connection.describe_outage()}); {arrived}"
            )
        else:
            text = f"{what}: no confirm within {limit:g} s"
        return PublishTimeout(text, exchange=out.exchange, routing_key=out.routing_key)

    @staticmethod
    def _error(out: Outgoing, exc: BaseException) -> PublishError:
        return publish_error(
            exc,
            action="publishing",
            what=f"{out.encoded.type} {out.encoded.message_id}",
            exchange=out.exchange,
            routing_key=out.routing_key,
            where=_where(out.exchange, out.routing_key),
        )

    @staticmethod
    async def _publish(
        channel: aiormq.abc.AbstractChannel, out: Outgoing, timeout: float | None
    ) -> object:
        encoded = out.encoded
        # ``wait`` is a parameter of aiormq's Channel.basic_publish, missing from its abstract type.
        return await channel.basic_publish(  # type: ignore[call-arg]
            encoded.body,
            exchange=out.exchange,
            routing_key=out.routing_key,
            properties=encoded.properties,
            mandatory=True,
            timeout=timeout,
            # Not waiting for the socket buffer to drain after every frame: the confirm is what
            # counts, and the in-flight window already bounds the unflushed bytes.
            wait=False,
        )

    async def send_many(self, items: Sequence[Outgoing], *, timeout: float | None = None) -> None:
        """Publish all ``items`` pipelined and await every confirm; report exactly which failed."""
        results = await asyncio.gather(
            *(self.send(item, timeout=timeout) for item in items), return_exceptions=True
        )
        failures: list[BatchFailure] = []
        for index, (item, result) in enumerate(zip(items, results, strict=True)):
            if isinstance(result, BaseException):
                if not isinstance(result, MmateError):
                    if not isinstance(result, Exception):
                        raise result
                    result = as_publish_error(result)
                failures.append(BatchFailure(index, item.encoded.message_id, result))
        if failures:
            raise BatchPublishError(failures, len(items))
