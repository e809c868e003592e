"""One aiormq connection and the channels the runtime owns on it.

Channel ownership lives here and nowhere else: publishing has one confirm-mode channel, each
consumer has its own, the reply queue has its own, and each topology declaration opens a short-lived
one (a 406 kills the channel it happened on, never one that others use). A ``ManagedChannel`` is a
channel for one purpose that is reopened on next use when the broker closed it (an error such as 404
on publish to a missing exchange).

A lost connection (not closed by ``close``) is re-established lazily, by the next operation that
needs a channel: one attempt per operation (consumers retry with backoff, a publish fails with
``BrokerConnectionError`` and the next one tries again), then the ``on_reconnect`` hooks run (the
client declares its topologies again). Publishes that were unconfirmed when the connection died fail
with an error to their callers; they are not retransmitted.

Task safety: every method may be called from any task of the event loop that opened the connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Awaitable, Callable

import aiormq
import aiormq.abc

from .errors import BrokerConnectionError, MmateError, translate
from .url import connection_url, mask

log = logging.getLogger("mmate.connection")

ChannelHook = Callable[[aiormq.abc.AbstractChannel], Awaitable[None]]


class Connection:
    """A connection to the broker. ``open`` connects, ``close`` closes every channel and the
    socket."""

    def __init__(
        self,
        url: str,
        *,
        service: str,
        heartbeat: int = 30,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 15.0,
    ) -> None:
        if ssl_context is not None and not url.startswith("amqps://"):
            raise MmateError(f"an ssl_context needs an amqps:// URL, not {mask(url)}")
        name = f"{service} (mmate-py, pid {os.getpid()})"
        self._url = connection_url(url, heartbeat=heartbeat, connection_name=name)
        self._masked = mask(url)
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._conn: aiormq.abc.AbstractConnection | None = None
        self._wanted = False
        self._reconnect_lock = asyncio.Lock()
        self._on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self.service = service
        self.reconnects = 0
        """How many times the connection was re-established after it was lost."""

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<mmate.Connection {self._masked} service={self.service!r} {state}>"

    @property
    def url(self) -> str:
        """The broker URL with the password masked."""
        return self._masked

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._conn.is_closed

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` after the connection was re-established (e.g. to declare the topology)."""
        self._on_reconnect.append(hook)

    async def open(self) -> None:
        if self.is_open:
            return
        await self._connect()
        self._wanted = True

    async def _connect(self) -> None:
        log.info("connecting to %s as %s", self._masked, self.service)
        try:
            self._conn = await asyncio.wait_for(
                aiormq.connect(self._url, context=self._ssl_context), self._connect_timeout
            )
        except TimeoutError:
            raise BrokerConnectionError(
                f"connecting to {self._masked}: no answer within {self._connect_timeout:g} s"
            ) from None
        except Exception as exc:
            error = _without_url(translate(exc, f"connecting to {self._masked}"), self._url)
            if not isinstance(error, BrokerConnectionError):
                hint = " (does the vhost exist, and may this user use it?)"
                error = BrokerConnectionError(f"{error}{hint}")
            raise error from None

    async def close(self) -> None:
        self._wanted = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing %s: %r", self._masked, exc)

    async def _require(self) -> aiormq.abc.AbstractConnection:
        """The open connection; reconnects (one attempt) when it was lost but not closed by us."""
        conn = self._conn
        if conn is not None and not conn.is_closed:
            return conn
        if not self._wanted:
            raise BrokerConnectionError(f"not connected to {self._masked}")
        async with self._reconnect_lock:
            conn = self._conn
            if conn is not None and not conn.is_closed:
                return conn
            log.warning("connection to %s lost; reconnecting", self._masked)
            await self._connect()
            self.reconnects += 1
            for hook in self._on_reconnect:
                try:
                    await hook()
                except Exception as exc:
                    log.error("after reconnecting to %s: %s", self._masked, exc)
            assert self._conn is not None
            return self._conn

    async def channel(self, *, confirms: bool) -> aiormq.abc.AbstractChannel:
        """A new channel (publisher confirms on when ``confirms``); reconnects a lost connection."""
        conn = await self._require()
        try:
            return await conn.channel(publisher_confirms=confirms)
        except Exception as exc:
            raise translate(exc, "opening a channel") from exc

    def managed(
        self, purpose: str, *, confirms: bool, on_open: ChannelHook | None = None
    ) -> ManagedChannel:
        return ManagedChannel(self, purpose, confirms=confirms, on_open=on_open)


def _without_url(error: MmateError, url: str) -> MmateError:
    """Defence in depth: an error text never carries the unmasked URL."""
    text = str(error)
    if url in text:
        return type(error)(text.replace(url, mask(url)))
    return error


class ManagedChannel:
    """A channel for one purpose, reopened (and ``on_open`` run again) after the broker closed
    it."""

    def __init__(
        self,
        connection: Connection,
        purpose: str,
        *,
        confirms: bool,
        on_open: ChannelHook | None = None,
    ) -> None:
        self._connection = connection
        self._purpose = purpose
        self._confirms = confirms
        self._on_open = on_open
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self._queued = 0
        self.reopened = 0
        """How many times the channel was reopened after a close (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"<mmate.ManagedChannel {self._purpose}>"

    async def get(self) -> aiormq.abc.AbstractChannel:
        """The open channel, opening a new one if there is none or the broker closed it."""
        channel = self._channel
        # Callers that queued while the channel was (re)opened go first, in arrival order, so that
        # concurrent publishes of one batch reach the channel in the order they were started.
        if channel is not None and not channel.is_closed and self._queued == 0:
            return channel
        self._queued += 1
        try:
            async with self._lock:
                channel = self._channel
                if channel is not None and not channel.is_closed:
                    return channel
                if channel is not None:
                    self.reopened += 1
                    log.warning("reopening the %s channel, closed by the broker", self._purpose)
                channel = await self._connection.channel(confirms=self._confirms)
                if self._on_open is not None:
                    await self._on_open(channel)
                self._channel = channel
                return channel
        finally:
            self._queued -= 1

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                log.debug("closing the %s channel: %r", self._purpose, exc)
