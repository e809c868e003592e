"""``DelayService`` (``client.delays``): declares the delay infrastructure once per client (or
verifies it without configure rights) and runs the relay, which republishes each ready message
to the exchange and routing key kept in its ``x-mmate-delay-*`` headers (confirmed, mandatory)
or moves it to ``<prefix>.dead``. What the delivered message looks like and who relays:
docs/runtime/delays.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, TypeVar

from .._consuming.raw import RawConsumer, ack, nack
from .._publishing.confirmed import ConfirmedPublisher, Outgoing
from .._topology.exists import Prober
from .._topology.placement import NO_PLACEMENT, QueuePlacement
from .._topology.placement import declare_queue as declare_placed
from .._transport.base import Channel, Delivery, Properties
from .._transport.connection import Connection
from .._wire.envelope import Encoded
from .._wire.expiration import parse_expiration
from .._wire.headers import copied_properties, encodable
from ..errors import (
    AccessRefused,
    EntityNotFound,
    FeatureNotAvailable,
    MmateError,
    PreconditionFailed,
    PublishError,
    UnroutableError,
)
from . import cascade as delay

log = logging.getLogger("mmate.delay")

T = TypeVar("T")

WATCH_INTERVAL = 2.0
"""Seconds between the passive checks of a serving client for a ready queue that did not exist
when it started serving."""

_STRIPPED = frozenset(
    {
        delay.HEADER_EXCHANGE,
        delay.HEADER_ROUTING_KEY,
        delay.HEADER_EXPIRATION,
        delay.HEADER_DUE,
        "x-delay",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _unpublishable(exchange: str, routing_key: str, expiration: str | None) -> str | None:
    """Why the broker or the client would refuse this publish because of the message itself
    (an AMQP short string over 255 bytes, ``amq.default``, an expiration that is not a TTL), or
    None. Refused on the shared relay channel, such a publish would close it under every other
    message in flight, and come back on every retry."""
    for what, text in (("exchange", exchange), ("routing key", routing_key)):
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return f"the {what} is not UTF-8"
        if size > 255:
            return f"the {what} is {size} bytes long (at most 255)"
    if exchange == "amq.default":
        return "the exchange 'amq.default' cannot be named (the default exchange is '')"
    if expiration is not None:
        parsed = parse_expiration(expiration)
        if isinstance(parsed, str):
            return (
                f"x-mmate-delay-expiration {expiration[:40]!r} is not a TTL RabbitMQ accepts "
                f"({parsed[:80]})"
            )
    return None


class DelayService:
    """The delay infrastructure of one client: declaration (once, again after a reconnect) and the
    relay."""

    def __init__(
        self,
        connection: Connection,
        *,
        mode: delay.DelayMode = "cascade",
        prefix: str = delay.DEFAULT_PREFIX,
        publish_timeout: float = 10.0,
        prefetch: int = 100,
        placement: QueuePlacement = NO_PLACEMENT,
    ) -> None:
        if mode not in ("cascade", "plugin"):
            raise MmateError(f"delay_mode must be 'cascade' or 'plugin', not {mode!r}")
        self.mode: delay.DelayMode = mode
        self.topology = delay.DelayTopology(prefix)
        self._connection = connection
        self.clock = connection.clock
        """The broker's clock: ``schedule_at`` becomes a delay against it."""
        self._publisher = ConfirmedPublisher(
            connection, "delay relay", action="relaying", timeout=publish_timeout
        )
        self._prefetch = prefetch
        self._placement = placement
        self._relay_wanted = False
        self._watch: asyncio.Task[None] | None = None
        self._declared = False
        self._lock = asyncio.Lock()
        self._relay: RawConsumer | None = None
        self._relay_lock = asyncio.Lock()
        self._stopped = False
        self.relayed = 0
        """Messages this relay delivered to their destination."""
        self.dead_lettered = 0
        """Messages this relay put in the dead queue."""

    def is_delayed(self, out: Outgoing) -> bool:
        """True for a message already rewritten into the delay infrastructure."""
        return out.exchange in self.topology.entry_exchanges

    @property
    def relay_running(self) -> bool:
        return self._relay is not None and self._relay.running

    async def ensure(self) -> None:
        """Declare the infrastructure (first call only; ``redeclare`` after a reconnect); then
        relay, if ``relay_when_used`` asked for it."""
        await self._declare_once()
        if self._relay_wanted and self._relay is None:
            await self.start_relay(required=False)

    async def _declare_once(self) -> None:
        if self._declared:
            return
        async with self._lock:
            if not self._declared:
                await self._declare()
                self._declared = True

    async def redeclare(self) -> None:
        """After a reconnect: the cascade is durable, so it is declared again only when its ready
        queue is gone (a deleted or re-created vhost, a broker that lost its data), not 59
        declarations on every reconnect."""
        if not self._declared:
            return
        async with Prober(self._connection) as probe:
            present = await probe.queue(self.topology.ready) is not None
        if not present:
            log.warning(
                "the delay infrastructure under %s is gone; declaring it again",
                self.topology.prefix,
            )
            await self._declare()

    async def _declare(self) -> None:
        try:
            await self._declare_all()
        except AccessRefused as exc:
            # A user without configure rights can still use an infrastructure that exists.
            await self._verify(exc)

    async def _verify(self, refused: AccessRefused) -> None:
        topo = self.topology
        names = [("exchange", name) for name, _, _ in topo.exchanges()]
        names += [("queue", name) for name, _ in topo.queues()]
        if self.mode == "plugin":
            names.append(("exchange", topo.plugin))
        async with Prober(self._connection) as probe:
            for kind, name in names:
                found = await (probe.exchange(name) if kind == "exchange" else probe.queue(name))
                if not found:
                    raise AccessRefused(
                        f"the delay infrastructure under {topo.prefix!r} is incomplete ({kind} "
                        f"{name!r} does not exist) and this user may not declare it ({refused}). "
                        "Declare it once as a user with configure rights (any client that "
                        "publishes a delayed message or calls run_delay_relay() does)",
                        entity=name,
                        broker_reply=f"404 NOT_FOUND - no {kind} '{name}'",
                    )
        log.info("no configure rights: verified the existing delay infrastructure %s", topo.prefix)

    async def _declare_all(self) -> None:
        topo = self.topology
        channel = await self._connection.channel(confirms=False)
        try:
            if self.mode == "plugin":
                await self._declare_plugin(channel)
            for name, kind, args in topo.exchanges():
                await self._step(channel.declare_exchange(name, kind, arguments=args))
            for name, args in topo.queues():
                channel = await self._step(self._declare_queue(channel, name, args))
            for source, queue, pattern in topo.queue_bindings():
                await self._step(channel.bind_queue(queue, source, pattern))
            for source, dest, pattern in topo.exchange_bindings():
                await self._step(channel.bind_exchange(dest, source, pattern))
            if self.mode == "plugin":
                await self._step(channel.bind_queue(topo.ready, topo.plugin, "#"))
        finally:
            await channel.close()
        log.info("declared the delay infrastructure under %s (%s)", topo.prefix, self.mode)

    async def _declare_queue(self, channel: Channel, name: str, args: dict[str, Any]) -> Channel:
        """Declare one cascade queue with the placement arguments (its leader spread over the
        cluster); returns the channel to go on with (a new one when a 406 closed it)."""
        current = channel

        async def open_channel() -> Channel:
            nonlocal current
            if not current.is_open:
                current = await self._connection.channel(confirms=False)
            return current

        await declare_placed(open_channel, name, self._placement, arguments=args)
        return current

    @staticmethod
    async def _step(declaration: Awaitable[T]) -> T:
        """One declaration; its error already names the entity, this says what it was for."""
        try:
            return await declaration
        except MmateError as exc:
            exc.args = (f"declaring the delay infrastructure: {exc}",)
            raise

    async def _declare_plugin(self, channel: Channel) -> None:
        name = self.topology.plugin
        try:
            await channel.declare_exchange(
                name, "x-delayed-message", durable=True, arguments={"x-delayed-type": "topic"}
            )
        except MmateError as exc:
            raise FeatureNotAvailable(
                f"delay_mode='plugin' needs the rabbitmq_delayed_message_exchange plugin, but the "
                f"broker refused an x-delayed-message exchange ({exc}). Enable the plugin or use "
                "delay_mode='cascade' (the default, no plugin needed)"
            ) from exc

    # -- the relay --------------------------------------------------------------------------------

    async def start_relay(self, *, required: bool = True) -> None:
        """Declare the infrastructure and consume the ready queue: once per client, however many
        tasks ask at the same time; never again after ``stop``.

        ``required=False``: when this user may not declare the infrastructure and it does not
        exist, log a warning and do not relay instead of raising.
        """
        async with self._relay_lock:
            if self._relay is not None or self._stopped:
                return
            try:
                await self._declare_once()
            except AccessRefused as exc:
                if required:
                    raise
                log.warning("this client does not relay delayed messages: %s", exc)
                return
            await self._consume_ready()

    async def relay_when_used(self) -> None:
        """``Client.serve``: relay delayed messages without declaring anything for a service that
        never delays. Relays now when the ready queue exists (someone on this broker uses delays);
        otherwise as soon as this client declares the infrastructure (its first delayed publish,
        or a retry through the cascade), or another client does (a passive check every
        ``WATCH_INTERVAL`` seconds, stopped by ``stop``)."""
        self._relay_wanted = True
        if self._declared:
            await self.start_relay(required=False)
            return
        if await self._relay_if_present():
            return
        if self._watch is None and not self._stopped:
            self._watch = asyncio.create_task(
                self._watch_for_ready(), name=f"mmate:delay-watch:{self.topology.prefix}"
            )

    async def _relay_if_present(self) -> bool:
        """Consume the ready queue if it exists (nothing declared); True when relaying."""
        async with Prober(self._connection) as probe:
            present = await probe.queue(self.topology.ready) is not None
        if present:
            async with self._relay_lock:
                if self._relay is None and not self._stopped:
                    await self._consume_ready()
        return present

    async def _watch_for_ready(self) -> None:
        while not self._stopped and self._relay is None:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                if await self._relay_if_present():
                    return
            except MmateError as exc:  # the connection is down, say: look again later
                log.debug("looking for %s failed: %s", self.topology.ready, exc)

    async def _consume_ready(self) -> None:
        relay = RawConsumer(
            self._connection,
            self.topology.ready,
            self._relay_one,
            prefetch=self._prefetch,
            redeclare=self._declare,  # the cascade, should its ready queue be deleted
        )
        await relay.start()
        self._relay = relay
        log.info("relaying delayed messages from %s", self.topology.ready)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop relaying for good (``Client.close``)."""
        self._stopped = True
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        async with self._relay_lock:
            relay, self._relay = self._relay, None
        if relay is not None:
            await relay.stop(timeout)
        await self._publisher.close()

    def needs_plugin_send(self, out: Outgoing) -> bool:
        """True for a message bound for the plugin exchange (sent by ``send_to_plugin``)."""
        return out.exchange == self.topology.plugin

    async def send_to_plugin(self, out: Outgoing, *, timeout: float | None = None) -> None:
        """Publish into the plugin's exchange, confirmed but NOT mandatory: the plugin routes only
        when the delay is over, so the broker returns every mandatory message to it as unroutable
        (rabbitmq-delayed-message-exchange issue #7). Its only binding is the ready queue."""
        await self._publisher.send(replace(out, mandatory=False), timeout=timeout)

    async def _relay_one(self, message: Delivery) -> None:
        props = message.properties
        headers: dict[str, Any] = dict(props.headers or {})
        exchange = _text(headers.get(delay.HEADER_EXCHANGE))
        routing_key = _text(headers.get(delay.HEADER_ROUTING_KEY))
        if exchange is None or routing_key is None:
            await self._dead(message, headers, "no x-mmate-delay-exchange/-routing-key headers")
            return
        expiration = _text(headers.get(delay.HEADER_EXPIRATION))
        refused = _unpublishable(exchange, routing_key, expiration)
        if refused is not None:
            await self._dead(message, headers, refused)
            return
        clean = {k: v for k, v in headers.items() if k not in _STRIPPED}
        out = Outgoing(
            self._encoded(message, copied_properties(props, clean, expiration=expiration)),
            exchange,
            routing_key,
        )
        try:
            await self._publisher.send(out)
        except PublishError as exc:
            # The broker refusing this message itself (no such exchange, no write permission,
            # unroutable) will refuse it on every retry. A 406 names no exchange, so it may be
            # another message's on the shared channel: dead-lettered only when it comes again
            # for a message already delivered before.
            cause = exc.__cause__
            permanent = isinstance(cause, EntityNotFound | AccessRefused) or (
                isinstance(cause, PreconditionFailed) and message.redelivered
            )
            if isinstance(exc, UnroutableError) or permanent:
                await self._dead(message, headers, str(exc))
                return
            log.warning("relaying %s failed, will retry: %s", props.message_id, exc)
            await asyncio.sleep(1.0)
            await nack(message, requeue=True)
            return
        # Anything else (e.g. the dead queue cannot be reached) raises: RawConsumer requeues it.
        self.relayed += 1
        await ack(message)

    @staticmethod
    def _encoded(message: Delivery, props: Properties) -> Encoded:
        return Encoded(
            message.body,
            encodable(props),
            str(props.message_id or ""),
            props.correlation_id,
            str(props.type or "delayed message"),
        )

    async def _dead(self, message: Delivery, headers: dict[str, Any], reason: str) -> None:
        props = message.properties
        log.error(
            "delayed message %s could not be delivered; moved to %s: %s",
            props.message_id,
            self.topology.dead,
            reason,
        )
        dead_headers = dict(headers)
        dead_headers[delay.HEADER_FAILURE] = reason[:1000]
        out = Outgoing(
            self._encoded(message, copied_properties(props, dead_headers)), "", self.topology.dead
        )
        await self._publisher.send(out)  # raising here requeues the message (RawConsumer)
        self.dead_lettered += 1
        await ack(message)
