"""``Outbox``: turns a publish call into an encoded message and sends it, the one way every
publishing API of a client goes (``Client.publish`` / ``request``, ``publish_many``, batches,
transactions, a handler's replies).

For each message: the publish options are checked and applied (``encode``: routing key, TTL,
priority, persistence, reply address, delay; the size limits and compression, ``_sized``), the
client's publish interceptors run around the send (``Interceptors``; a pass-through when there are
none), a delayed message first makes sure the delay infrastructure exists (and this client relays
it), and the message goes out through the client's confirmed publisher
(``confirmed.ConfirmedPublisher``, or the publish circuit breaker around it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from .._contract.model import Model
from .._contract.options import PublishOptions
from .._contract.topology import HeaderValue, MessageDef, PublishRoute
from .._delays.cascade import delay_seconds, delayed
from .._delays.relay import DelayService
from .._observation.interceptors import Draft, Interceptors, PublishKind, publish_info
from .._wire import compression
from .._wire import envelope as codec
from .._wire.envelope import Encoded, Envelope
from ..errors import FeatureNotAvailable, MessageTooLarge, MmateError
from . import routing
from .breaker import GuardedPublisher
from .confirmed import ConfirmedPublisher, Outgoing, where
from .pool import PublisherPool

_KNOWN_OPTIONS = frozenset(PublishOptions.__annotations__)

Publisher = ConfirmedPublisher | PublisherPool | GuardedPublisher

DEFAULT_MAX_PUBLISH_BYTES = 128 * 1024 * 1024
"""RabbitMQ 3.x's default ``max_message_size`` (128 MiB): a larger body is refused by the broker,
so the client refuses it first."""


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Outbox:
    """The publishing side of one client (see the module docstring)."""

    def __init__(
        self,
        *,
        service: str,
        publisher: Publisher,
        delays: DelayService,
        relay_delays: bool,
        interceptors: Interceptors,
        max_publish_bytes: int = DEFAULT_MAX_PUBLISH_BYTES,
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.delays = delays
        self.interceptors = interceptors
        self._relay_delays = relay_delays
        self._max_publish_bytes = max_publish_bytes

    # -- encoding ---------------------------------------------------------------------------

    def encode(
        self,
        route: PublishRoute,
        message: Model | Mapping[str, Any],
        routing_key: str,
        options: PublishOptions,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> Outgoing:
        """The message as it goes out, every option applied; raises ``MmateError`` for a bad
        option before anything is sent."""
        unknown = options.keys() - _KNOWN_OPTIONS
        if unknown:
            raise MmateError(f"unknown publish options: {', '.join(sorted(unknown))}")
        wait: int | None = None
        if "delay" in options or "schedule_at" in options:
            wait = delay_seconds(
                options.get("delay"), options.get("schedule_at"), now=self.delays.clock.now()
            )
        expiration: int | None = None
        if "ttl" in options:
            expiration = round(_seconds(options["ttl"]) * 1000)
            if expiration < 0:
                raise MmateError(f"ttl must not be negative, got {options['ttl']!r}")
        priority = options.get("priority", route.priority)
        if priority is not None and not 0 <= priority <= 255:
            raise MmateError(f"priority must be 0-255, got {priority}")
        key = options.get("routing_key") or routing_key
        if not key and isinstance(message, Model):
            key = routing.fill(route.routing_key, message)
        reply_to = reply_to or options.get("reply_to")
        if reply_to and isinstance(message, Model) and not getattr(message, "reply_to", "x"):
            # A command's payload.replyTo is where a Go handler looks; fill it unless already set.
            message = codec.with_reply_to(route.message, message, reply_to)
        encoded = codec.encode(
            route.message,
            message,
            app_id=self.service,
            correlation_id=correlation_id or options.get("correlation_id"),
            reply_to=reply_to,
            headers=options.get("headers"),
            expiration_ms=expiration,
            priority=priority,
            persistent=options.get("persistent", route.persistent),
            message_id=options.get("message_id"),
        )
        exchange = options.get("exchange", route.exchange)
        encoded = self._sized(route, encoded, options, exchange, key)
        out = Outgoing(encoded, exchange, key)
        if wait is not None:
            out = delayed(out, wait, self.delays.topology, self.delays.mode)
        return out

    def _sized(
        self,
        route: PublishRoute,
        encoded: Encoded,
        options: PublishOptions,
        exchange: str,
        routing_key: str,
    ) -> Encoded:
        """``encoded`` compressed when its route or the ``compress`` option says so and its body
        is over ``compress_above`` (kept only if smaller), after checking the size limits:
        the route's ``max_message_bytes`` against the body as consumers will decode it, the
        client's ``max_publish_bytes`` against the body on the wire. Raises
        ``MessageTooLarge``."""
        body = encoded.body
        limit = route.max_message_bytes
        if limit is not None and len(body) > limit:
            raise self._too_large(
                encoded, exchange, routing_key, len(body), limit, "max_message_bytes"
            )
        codec_name = options.get("compress", route.compress)
        if codec_name is not None and len(body) > route.compress_above:
            if codec_name not in compression.CODECS:
                raise MmateError(f"compress must be 'gzip', 'zstd' or None, got {codec_name!r}")
            packed = compression.compress(body, codec_name)
            if len(packed) < len(body):
                encoded.properties.content_encoding = codec_name
                encoded = replace(encoded, body=packed)
        if len(encoded.body) > self._max_publish_bytes:
            raise self._too_large(
                encoded,
                exchange,
                routing_key,
                len(encoded.body),
                self._max_publish_bytes,
                "max_publish_bytes",
            )
        return encoded

    @staticmethod
    def _too_large(
        encoded: Encoded,
        exchange: str,
        routing_key: str,
        size: int,
        limit: int,
        limit_name: Literal["max_message_bytes", "max_publish_bytes"],
    ) -> MessageTooLarge:
        whose = (
            "max_message_bytes of the queues its route reaches (consumers would dead-letter it "
            "as oversized)"
            if limit_name == "max_message_bytes"
            else "the client's max_publish_bytes (the broker's max_message_size)"
        )
        state = "encoded" if limit_name == "max_message_bytes" else "on the wire"
        return MessageTooLarge(
            f"publishing {encoded.type} {encoded.message_id} to {where(exchange, routing_key)}: "
            f"the body of {size} bytes ({state}) is larger than {limit} bytes, the {whose}; "
            "nothing was published",
            message_type=encoded.type,
            size=size,
            limit=limit,
            limit_name=limit_name,
            exchange=exchange,
            routing_key=routing_key,
        )

    def draft(
        self,
        kind: PublishKind,
        out: Outgoing,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        options: PublishOptions,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> Callable[[], Draft]:
        """How the interceptors see ``out`` (built only when some interceptor publishes), and how
        to encode it again with the headers they set."""

        def make() -> Draft:
            def reencode(headers: Mapping[str, HeaderValue]) -> Outgoing:
                again = options.copy()
                again["headers"] = headers
                again["message_id"] = out.encoded.message_id
                return self.encode(
                    route,
                    message,
                    routing_key,
                    again,
                    correlation_id=correlation_id,
                    reply_to=reply_to,
                )

            return Draft(publish_info(out, kind, options.get("headers"), message), out, reencode)

        return make

    # -- sending ----------------------------------------------------------------------------

    def send(
        self,
        kind: PublishKind,
        out: Outgoing,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        options: PublishOptions,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> Awaitable[None]:
        """Send one encoded message through the interceptors; awaiting it waits for its confirm.
        With no interceptor that publishes this is ``send_one``'s awaitable itself: no closures
        to build, no frame of its own (like ``send_one``)."""
        timeout = options.get("timeout")
        if not self.interceptors.publishes:
            return self.send_one(out, timeout)
        draft = self.draft(
            kind,
            out,
            route,
            message,
            routing_key,
            options,
            correlation_id=correlation_id,
            reply_to=reply_to,
        )
        return self.interceptors.publish_one(
            out, draft, lambda final: self.send_one(final, timeout)
        )

    def send_one(self, out: Outgoing, timeout: float | None) -> Awaitable[None]:
        """Send one message, no interceptors: into the delay infrastructure (declared first) or
        straight. Not a coroutine itself: the common case is the publisher's own ``send``, one
        frame less per message in flight (bench/RESULTS.md, #15)."""
        delays = self.delays
        if delays.is_delayed(out) or delays.needs_plugin_send(out):
            return self._send_delayed(out, timeout)
        return self.publisher.send(out, timeout=timeout)

    async def _send_delayed(self, out: Outgoing, timeout: float | None) -> None:
        await self.prepare_delays((out,))
        if self.delays.needs_plugin_send(out):
            await self.delays.send_to_plugin(out, timeout=timeout)
        else:
            await self.publisher.send(out, timeout=timeout)

    async def send_all(
        self,
        outs: Sequence[Outgoing],
        drafts: Sequence[Callable[[], Draft]],
        timeout: float | None,
    ) -> None:
        """Send messages together (pipelined), each through the interceptors; raises
        ``BatchPublishError`` naming exactly the failed ones."""

        async def send_many(finals: Sequence[Outgoing]) -> None:
            await self.prepare_delays(finals, single=False)
            await self.publisher.send_many(finals, timeout=timeout)

        await self.interceptors.publish_batch(outs, drafts, send_many)

    async def prepare_delays(self, items: Iterable[Outgoing], *, single: bool = True) -> None:
        """Declare the delay infrastructure (and start the relay) before the first delayed
        publish."""
        if not single and any(self.delays.needs_plugin_send(out) for out in items):
            raise FeatureNotAvailable(
                "delay_mode='plugin' delays one publish at a time; batches, publish_many and "
                "transactions need delay_mode='cascade'. Nothing was published"
            )
        if any(self.delays.is_delayed(out) for out in items):
            if self._relay_delays:
                await self.delays.start_relay()
            else:
                await self.delays.ensure()

    # -- replies ----------------------------------------------------------------------------

    async def send_reply(
        self,
        request: Envelope,
        property_reply_to: str | None,
        reply: MessageDef,
        payload: Model | dict[str, Any],
    ) -> None:
        """Publish a query handler's reply (or an error reply) to the requester's address."""
        address = codec.reply_address(request, property_reply_to)
        if not address:
            raise MmateError(f"{request.type} {request.id} names no reply address")
        correlation_id = request.correlation_id or request.id

        def encode(
            headers: Mapping[str, HeaderValue] | None = None, message_id: str | None = None
        ) -> Outgoing:
            encoded = codec.encode(
                reply,
                payload,
                app_id=self.service,
                correlation_id=correlation_id,
                headers=headers,
                message_id=message_id,
            )
            return Outgoing(encoded, "", address)

        out = encode()

        def draft() -> Draft:
            def reencode(headers: Mapping[str, HeaderValue]) -> Outgoing:
                return encode(headers, out.encoded.message_id)

            return Draft(publish_info(out, "reply", None, payload), out, reencode)

        await self.interceptors.publish_one(out, draft, self.publisher.send)
