"""The one confirmed-publish path: every message the runtime publishes with a publisher confirm
goes through ``ConfirmedPublisher.send`` (user publishes, batches, retry and dead-letter moves,
DLQ replays, the delay relay, the scheduler's records).

Contract: ``send`` returns only after the broker confirmed the message (``basic.ack``); an
unroutable message (``mandatory``, the default) raises ``UnroutableError``, a ``basic.nack`` that
persists raises ``NackError``, no confirm within the timeout raises ``PublishTimeout``. Many tasks
may call ``send`` concurrently: their publishes go out back to back on the publisher's channel and
wait for their confirms together, up to ``max_in_flight`` unconfirmed at once (a semaphore;
further callers wait for a slot, inside their timeout). ``send_many`` publishes a list that way
and raises ``BatchPublishError`` listing exactly the failed ones.

Sent again, the same bytes with the same message id, within the timeout, until confirmed:

* a publish whose confirm was lost with its channel or connection (``_lost_in_transit``), once
  the channel is back (after a recovery of the connection, ``_transport.connection``);
* a publish the broker nacked: a nack is the broker refusing the message now (a quorum queue
  without a leader during a failover, an overflowing queue), so it is sent again on a fresh
  channel after a short backoff (0.05 s doubling to 1 s), and ``NackError`` is raised only when
  the timeout runs out with the broker still nacking.

The broker may therefore get a message twice (at least once; consumers can deduplicate by message
id). Once the timeout has run out, ``PublishTimeout`` says whether it may have arrived. A publish
never returns without a confirm. The hot path keeps no start time: a re-send gets the whole
timeout again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from .._transport.base import Channel
from .._transport.connection import Connection, ManagedChannel
from .._wire.envelope import Encoded
from ..errors import (
    BatchFailure,
    BatchPublishError,
    BrokerConnectionError,
    ChannelClosed,
    ChannelTimeout,
    EntityNotFound,
    MmateError,
    NackError,
    PublishError,
    PublishTimeout,
    TopologyError,
    UnroutableError,
)

log = logging.getLogger("mmate.publish")

_NACK_PAUSE = (0.05, 1.0)
"""First and longest pause before a nacked message is sent again."""


@dataclass(slots=True)  # built per message: frozen, it would cost about 2 us more
class Outgoing:
    """An encoded message and where it goes."""

    encoded: Encoded
    exchange: str
    routing_key: str
    mandatory: bool = True
    """False only where the broker would return every message (the delayed-message plugin's
    exchange routes when the delay is over)."""


def where(exchange: str, routing_key: str) -> str:
    return f"exchange {exchange or '(default)'!r} with routing key {routing_key!r}"


def publish_error(
    exc: BaseException, *, action: str, what: str, exchange: str, routing_key: str
) -> PublishError:
    """The ``PublishError`` for a failed publish: ``action`` says what was being done
    (``publishing``, ``moving``...), ``what`` names the message; every publish path of the
    runtime words its errors through here."""
    place = where(exchange, routing_key)
    if isinstance(exc, UnroutableError):
        text = f"{action} {what}: unroutable, no queue is bound to {place}"
        reply = str(exc).rpartition(": ")[2]
        return UnroutableError(f"{text} ({reply})", exchange=exchange, routing_key=routing_key)
    if isinstance(exc, NackError):
        return NackError(
            f"{action} {what}: the broker nacked it on {place}",
            exchange=exchange,
            routing_key=routing_key,
        )
    # 404 on a missing exchange closes the channel; it is reopened on the next publish.
    return PublishError(
        f"{action} {what} to {place} failed: {exc}", exchange=exchange, routing_key=routing_key
    )


def as_publish_error(error: Exception) -> PublishError:
    """A non-mmate exception from a batch member, as the ``PublishError`` a batch reports."""
    wrapped = PublishError(f"{type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _lost_in_transit(exc: BaseException, out: Outgoing) -> bool:
    """The publish failed because its channel or the connection went away, not because of the
    message: a lost connection, a channel closed with it, or the broker closing the shared channel
    over another message (an error naming another exchange: the innocent messages in flight on
    that channel get the same error). A broker error about the message itself (naming its
    exchange, or none, such as a size limit; unroutable; nack) is not. The broker names the
    default exchange ``amq.default``; a 404 naming it is about a publish that named
    ``amq.default`` itself (the default exchange always exists), never about one to ``""``."""
    if isinstance(exc, ChannelClosed | TopologyError):
        if isinstance(exc, ChannelClosed) and not exc.reply_code:
            return True  # closed with its connection, or by us
        text = str(exc)
        not_found = isinstance(exc, EntityNotFound) or (
            isinstance(exc, ChannelClosed) and exc.reply_code == 404
        )
        if not out.exchange and not_found:
            return True
        return "exchange '" in text and f"exchange '{out.exchange or 'amq.default'}'" not in text
    return isinstance(exc, BrokerConnectionError)


class ConfirmedPublisher:
    """Publishes with confirms on one managed channel (``purpose`` names it in logs and errors).

    Hot path (a free slot in the window, the channel open): no task, lock or timer of its own;
    the backend's timeout covers the write and the confirm. A publish that waits for a slot or for
    the channel to be (re)opened has one timer over everything instead, and with a
    ``channel_timeout`` a second one over that wait alone (``ChannelTimeout`` when it runs out:
    nothing was published).
    """

    def __init__(
        self,
        connection: Connection,
        purpose: str = "publishing",
        *,
        action: str = "publishing",
        max_in_flight: int = 1000,
        timeout: float = 10.0,
        channel_timeout: float | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if channel_timeout is not None and channel_timeout <= 0:
            raise ValueError(f"channel_timeout must be positive, got {channel_timeout}")
        self._connection = connection
        self._purpose = purpose
        self._max_in_flight = max_in_flight
        self.channel_timeout = channel_timeout
        self._action = action
        self._channel: ManagedChannel = connection.managed(purpose, confirms=True)
        self._open: Channel | None = None
        """The channel the last ``get`` returned, used while it is open and no ``get`` waits."""
        self._getting = 0
        self._window = asyncio.Semaphore(max_in_flight)
        self.timeout = timeout
        self.resent = 0
        """Publishes sent again because their channel was lost before the confirm, or nacked."""
        self.confirmed = 0
        """Publishes the broker confirmed through this publisher."""

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def purpose(self) -> str:
        return self._purpose

    def can_send_now(self) -> bool:
        """A ``send`` now takes the hot path: a free slot, the channel open, nobody waiting."""
        channel = self._open
        return (
            not self._window.locked()
            and channel is not None
            and channel.is_open
            and not self._getting
        )

    async def close(self) -> None:
        self._open = None
        await self._channel.close()

    async def _reopened(self) -> Channel:
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
        """Publish one message and wait for its confirm (see the module docstring)."""
        limit = self.timeout if timeout is None else timeout
        window = self._window
        channel = self._open
        sent = False
        try:
            if window.locked() or channel is None or not channel.is_open or self._getting:
                # Waits for a slot or the channel: one timer over the wait, write and confirm.
                async with asyncio.timeout(limit):
                    channel = await self._slot_and_channel(out)
                    try:
                        sent = True
                        await self._publish(channel, out, None)
                    finally:
                        window.release()
            else:
                await window.acquire()  # a free slot: returns at once
                sent = True
                try:
                    await self._publish(channel, out, limit)  # the backend's timer
                finally:
                    window.release()
            self.confirmed += 1
        except TimeoutError:
            raise await self._timeout_error(out, limit, sent=sent) from None
        except ChannelTimeout:
            raise
        except MmateError as exc:
            if not self._again(exc, out):
                raise self._error(out, exc) from exc
            await self._resend(out, limit, exc)

    async def _slot_and_channel(self, out: Outgoing) -> Channel:
        """A slot in the window (released by the caller) and the open channel, within
        ``channel_timeout`` when one is set."""
        wait = self.channel_timeout
        if wait is None:
            return await self._acquire()
        try:
            async with asyncio.timeout(wait):
                return await self._acquire()
        except TimeoutError:
            raise self._channel_timeout_error(out, wait) from None

    async def _acquire(self) -> Channel:
        await self._window.acquire()
        try:
            return await self._reopened()
        except BaseException:
            self._window.release()
            raise

    def _channel_timeout_error(self, out: Outgoing, wait: float) -> ChannelTimeout:
        if not self._connection.is_up:
            why = f"the connection is down ({self._connection.describe_outage()})"
        elif self._window.locked():
            why = f"all {self._max_in_flight} slots for unconfirmed publishes were taken"
        else:
            why = "the channel was still being opened"
        place = where(out.exchange, out.routing_key)
        return ChannelTimeout(
            f"{self._action} {out.encoded.type} {out.encoded.message_id} to {place}: no "
            f"{self._purpose} channel within the channel timeout of {wait:g} s: {why}; "
            "nothing was published",
            exchange=out.exchange,
            routing_key=out.routing_key,
        )

    def _again(self, exc: MmateError, out: Outgoing) -> bool:
        """Send it again: nacked, or lost in transit while the connection is wanted."""
        if not self._connection.wanted:
            return False
        return isinstance(exc, NackError) or _lost_in_transit(exc, out)

    async def _resend(self, out: Outgoing, limit: float, first: MmateError) -> None:
        """Send ``out`` again until confirmed (module docstring), within ``limit``."""
        self.resent += 1
        encoded = out.encoded
        log.debug("%s %s: %s; sending it again", encoded.type, encoded.message_id, first)
        error = first
        pause = _NACK_PAUSE[0]
        try:
            async with asyncio.timeout(limit):
                while True:
                    if isinstance(error, NackError):
                        await self._fresh_channel()
                    try:
                        async with self._window:
                            channel = await self._reopened()
                            await self._publish(channel, out, None)
                        self.confirmed += 1
                        return
                    except MmateError as exc:
                        if not self._again(exc, out):
                            raise self._error(out, exc) from exc
                        error = exc
                    # Nacked again, or the channel killed again by other messages' errors: do
                    # not spin on it.
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _NACK_PAUSE[1])
        except TimeoutError:
            if isinstance(error, NackError):
                raise self._error(out, error) from None
            raise await self._timeout_error(out, limit, sent=True) from None

    async def _fresh_channel(self) -> None:
        """Replace the channel after a nack: a channel opened while a quorum queue had no leader
        can go on being nacked after the leader is back (RabbitMQ 3.10)."""
        channel = self._open
        if channel is not None and channel.is_open:
            self._open = None
            await self._channel.close()

    async def _timeout_error(self, out: Outgoing, limit: float, *, sent: bool) -> PublishTimeout:
        place = where(out.exchange, out.routing_key)
        what = f"{self._action} {out.encoded.type} {out.encoded.message_id} to {place}"
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

    def _error(self, out: Outgoing, exc: MmateError) -> PublishError:
        return publish_error(
            exc,
            action=self._action,
            what=f"{out.encoded.type} {out.encoded.message_id}",
            exchange=out.exchange,
            routing_key=out.routing_key,
        )

    def _publish(self, channel: Channel, out: Outgoing, timeout: float | None) -> Awaitable[None]:
        """The channel's publish of ``out`` (returned, not awaited here: one coroutine less per
        message in flight; the caller counts it ``confirmed``)."""
        encoded = out.encoded
        return channel.publish(
            encoded.body,
            encoded.properties,
            exchange=out.exchange,
            routing_key=out.routing_key,
            mandatory=out.mandatory,
            timeout=timeout,
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
