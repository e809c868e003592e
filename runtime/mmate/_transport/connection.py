"""A connection to the broker through a transport backend, the channels the runtime owns on it,
and its recovery.

Channel ownership lives here and nowhere else: publishing has one confirm-mode channel, each
consumer has its own, the reply queue has its own, and each topology declaration opens a short-lived
one (a 406 kills the channel it happened on, never one that others use). A ``ManagedChannel`` is a
channel for one purpose that is reopened on next use when the broker closed it (an error such as 404
on publish to a missing exchange).

Recovery is owned here, in one task (``recovery.py`` has the policy, states and events): when the
link is lost (not closed by ``close``), it reconnects with jittered exponential backoff, trying the
broker URLs in turn, then runs the ``on_reconnect`` hooks (the client declares again what the
broker may have lost, re-creates its reply queue) and only then lets anyone else
have a channel. Meanwhile ``channel`` waits for the recovery, up to its ``wait``: consumers (whose
channels died with the connection) wait and re-consume, a publish waits within its timeout. State
changes are logged and reported to ``on_state`` callbacks.

Task safety: every method may be called from any task of the event loop that opened the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from ..errors import BrokerConnectionError, MmateError
from .backends import backend_for
from .base import Backend, Channel, Clock, Features, Link
from .recovery import ConnectionEvent, ConnectionState, ReconnectPolicy, StateCallback
from .urls import mask, validate

log = logging.getLogger("mmate.connection")

ChannelHook = Callable[[Channel], Awaitable[None]]

UrlOrder = Literal["random", "ordered"]

# True inside the recovery task and its children (the on_reconnect hooks): they may use the new
# connection before it is handed out to everyone else.
_recovering: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mmate_recovering", default=False
)


class Connection:
    """A connection to the broker (``url``: one URL or several, the nodes of a cluster, tried in
    turn from a random one, or from the first with ``url_order="ordered"``). ``open`` connects,
    ``close`` closes every channel and the socket; in between, a lost connection is recovered by
    ``reconnect`` (a ``ReconnectPolicy``)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        service: str,
        heartbeat: int = 30,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 15.0,
        reconnect: ReconnectPolicy | None = None,
        label: str | None = None,
        url_order: UrlOrder = "random",
    ) -> None:
        given = [url] if isinstance(url, str) else list(url)
        if url_order not in ("random", "ordered"):
            raise MmateError(f"url_order must be 'random' or 'ordered', not {url_order!r}")
        if not given:
            raise MmateError("Connection needs at least one broker URL")
        for one in given:
            if ssl_context is not None and not one.startswith("amqps://"):
                raise MmateError(f"an ssl_context needs an amqps:// URL, not {mask(one)}")
        schemes = {validate(u) for u in given}
        if "memory" in schemes and len(schemes) > 1:
            raise MmateError("a client's URLs are either memory:// or amqp(s)://, not both")
        self._backend: Backend = backend_for(given[0])
        # The name the broker shows (the management UI, ``rabbitmqctl list_connections``);
        # ``label`` tells a client's extra connections apart (``publish 2/4``).
        extra = f", {label}" if label else ""
        self._name = f"{service} (mmate-py, pid {os.getpid()}{extra})"
        self.label = label
        self._heartbeat = heartbeat
        self._urls = list(given)
        self._masked = [mask(u) for u in given]
        # Where the first connect starts: clients sharing one URL list spread over the nodes.
        self._current = random.randrange(len(given)) if url_order == "random" else 0
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._conn: Link | None = None
        self._channels: list[Channel] = []
        """The channels opened on the current link, pruned of closed ones when counted."""
        self._wanted = False
        self._up = asyncio.Event()
        self._recovery: asyncio.Task[None] | None = None
        self._on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self._callbacks: list[StateCallback] = []
        self._state: ConnectionState = "closed"
        self._lost_at: float | None = None
        self._attempt = 0
        self._last_error: str | None = None
        self.policy = reconnect or ReconnectPolicy()
        self.service = service
        self.reconnects = 0
        """How many times the connection was re-established after it was lost."""

    def __repr__(self) -> str:
        return f"<mmate.Connection {self.url} service={self.service!r} {self._state}>"

    @property
    def name(self) -> str:
        """The connection name the broker shows."""
        return self._name

    @property
    def url(self) -> str:
        """The broker URL in use (or last tried) with the password masked."""
        return self._masked[self._current]

    @property
    def urls(self) -> tuple[str, ...]:
        """Every broker URL given, passwords masked."""
        return tuple(self._masked)

    @property
    def is_open(self) -> bool:
        """The socket is open (during recovery, before the hooks ran, too)."""
        return self._conn is not None and not self._conn.is_closed

    @property
    def is_up(self) -> bool:
        """Open and handed out: connected, or recovered with the hooks done."""
        return self.is_open and self._up.is_set()

    @property
    def recovering(self) -> bool:
        """A recovery task is running (lost, reconnecting, or running the hooks)."""
        return self._recovery is not None and not self._recovery.done()

    @property
    def wanted(self) -> bool:
        """Opened and not closed (nor given up): a lost connection is being recovered."""
        return self._wanted

    @property
    def state(self) -> ConnectionState:
        return self._state

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` after the connection was re-established, before anyone else gets a
        channel (e.g. to declare the topology). Its errors are logged; recovery goes on."""
        self._on_reconnect.append(hook)

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(ConnectionEvent)`` on every state change; returns an unsubscribe."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def _emit(self, event: ConnectionEvent) -> None:
        self._state = event.state
        level = logging.INFO
        if event.state in ("lost", "failed"):
            level = logging.ERROR if event.state == "failed" else logging.WARNING
        elif event.state == "reconnecting" and event.attempt > 1:
            level = logging.WARNING
        text = f"connection {event.state}: {event.url} ({self.service})"
        if event.attempt:
            text += f", attempt {event.attempt}"
        if event.downtime is not None:
            text += f", down {event.downtime:.2f} s"
        if event.error:
            text += f"; {event.error}"
        log.log(level, "%s", text)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("an on_state callback failed on %s", event.state)

    async def open(self, *, retry_for: float = 0.0) -> None:
        """Connect to the first URL that answers; raise naming every failure.

        ``retry_for=0``: each URL is tried once. Otherwise the URLs are tried in turn with the
        reconnect policy's backoff until one answers or ``retry_for`` seconds have passed (for a
        service that may start before its broker). While a lost connection is being recovered,
        waits for the recovery instead (up to ``connect_timeout``). After ``failed``, connects
        anew and runs the ``on_reconnect`` hooks.
        """
        if self._wanted and (self.is_open or self.recovering):
            await self._require(None)
            return
        again = self._state == "failed"
        self._emit(ConnectionEvent("connecting", self.url))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        errors: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            index = (self._current + attempt - 1) % len(self._urls)
            try:
                conn = await self._connect_to(index)
            except BrokerConnectionError as exc:
                errors.append(str(exc))
                if attempt < len(self._urls):
                    continue  # one pass over the URLs always
                pause = self.policy.pause_before(attempt - len(self._urls) + 2)
                if loop.time() + pause >= deadline:
                    break
                log.warning("connecting to %s failed (%s); trying again", self.url, exc)
                await asyncio.sleep(pause)
                continue
            self._wanted = True
            self._adopt(conn, index)
            if again:
                await self._run_hooks()
            self._attempt = 0
            self._up.set()
            self._emit(ConnectionEvent("connected", self.url))
            return
        self._state = "failed" if again else "closed"
        last = errors[-len(self._urls) :]
        tried = f" ({attempt} attempts in {retry_for:g} s)" if retry_for else ""
        raise BrokerConnectionError("; ".join(last) + tried)

    @property
    def features(self) -> Features:
        """What the backend of this connection can do (``Features``)."""
        return self._backend.features

    @property
    def clock(self) -> Clock:
        """The broker's clock (``Clock``): wall-clock time, or the in-memory broker's."""
        return self._backend.clock

    async def _connect_to(self, index: int) -> Link:
        masked = self._masked[index]
        log.debug("connecting to %s as %s", masked, self.service)
        return await self._backend.connect(
            self._urls[index],
            name=self._name,
            heartbeat=self._heartbeat,
            ssl_context=self._ssl_context,
            timeout=self._connect_timeout,
        )

    def _adopt(self, link: Link, index: int) -> None:
        self._conn = link
        self._current = index
        self._channels = []  # those of a lost link died with it

        def lost(reason: str) -> None:
            if link is self._conn and self._wanted:
                self._lost(reason)

        link.on_lost(lost)

    def _lost(self, reason: str) -> None:
        """The connection died under us: stop handing it out and start the one recovery task."""
        self._up.clear()
        if self.recovering:
            return  # lost again while recovering: the running task goes on
        self._lost_at = asyncio.get_running_loop().time()
        self._last_error = reason
        self._emit(ConnectionEvent("lost", self.url, error=reason))
        self._recovery = asyncio.create_task(self._recover(), name=f"mmate:recovery:{self.service}")

    async def _recover(self) -> None:
        policy = self.policy
        attempt = 0
        while self._wanted:
            attempt += 1
            self._attempt = attempt
            if policy.max_attempts is not None and attempt > policy.max_attempts:
                self._give_up(attempt - 1)
                return
            await asyncio.sleep(policy.pause_before(attempt))
            if not self._wanted:
                return
            index = (self._current + (attempt > 1)) % len(self._urls)
            self._current = index
            self._emit(
                ConnectionEvent("reconnecting", self.url, attempt=attempt, error=self._last_error)
            )
            try:
                conn = await self._connect_to(index)
            except Exception as exc:  # the loop must survive anything but its cancellation
                self._last_error = str(exc)
                continue
            if not self._wanted:  # closed meanwhile
                await conn.close()
                return
            self._adopt(conn, index)
            await self._run_hooks()
            if conn.is_closed:
                self._last_error = "lost again while recovering"
                continue
            self.reconnects += 1
            self._up.set()
            self._emit(
                ConnectionEvent("recovered", self.url, attempt=attempt, downtime=self._downtime())
            )
            return

    async def _run_hooks(self) -> None:
        """The ``on_reconnect`` hooks, which may use the connection before it is handed out."""
        token = _recovering.set(True)
        try:
            for hook in self._on_reconnect:
                try:
                    await hook()
                except Exception as exc:
                    log.error("after reconnecting to %s: %s", self.url, exc)
        finally:
            _recovering.reset(token)

    def _downtime(self) -> float:
        now = asyncio.get_running_loop().time()
        return now - (self._lost_at or now)

    def _give_up(self, attempts: int) -> None:
        self._wanted = False
        self._emit(
            ConnectionEvent(
                "failed",
                self.url,
                attempt=attempts,
                error=self._last_error,
                downtime=self._downtime(),
            )
        )
        self._up.set()  # wakes the waiters, who now find the connection given up

    async def close(self) -> None:
        self._wanted = False
        recovery, self._recovery = self._recovery, None
        if recovery is not None and not recovery.done() and recovery is not asyncio.current_task():
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
        conn, self._conn = self._conn, None
        self._up.set()  # waiters wake and find the connection closed
        if conn is not None:
            await conn.close()
        if self._state != "closed":
            self._emit(ConnectionEvent("closed", self.url))

    def _down_error(self, waited: float | None) -> BrokerConnectionError:
        if self._state == "failed":
            return BrokerConnectionError(
                f"not connected to {self.url}: gave up reconnecting after {self._attempt - 1} "
                f"attempts (last error: {self._last_error})"
            )
        if not self._wanted:
            return BrokerConnectionError(f"not connected to {self.url}")
        return BrokerConnectionError(
            f"no connection to {self.url} within {waited or 0:g} s ({self.describe_outage()})"
        )

    async def blocked(self) -> str | None:
        """Why the broker blocks this connection's publishers (``connection.blocked``: a memory or
        disk alarm), or None when it does not."""
        conn = self._conn
        if conn is None or conn.is_closed:
            return None
        return await conn.blocked()

    def describe_outage(self) -> str:
        """What the connection is doing, for an error of a caller that waited for it."""
        return (
            f"{self._state}, attempt {self._attempt}; last error: {self._last_error}"
            if self._wanted and not self.is_up
            else self._state
        )

    async def ready(self, wait: float | None = None) -> None:
        """Return once the connection is up (see ``channel`` for ``wait``)."""
        await self._require(wait)

    async def _require(self, wait: float | None) -> Link:
        """The connection, once it is up; waits up to ``wait`` seconds (``inf``: no limit) while
        it is being recovered."""
        limit = self._connect_timeout if wait is None else wait
        try:
            async with asyncio.timeout(None if math.isinf(limit) else limit):
                while True:
                    conn = self._conn
                    if _recovering.get():  # a hook: this connection or nothing, never wait
                        if conn is not None and not conn.is_closed:
                            return conn
                        raise BrokerConnectionError(
                            f"the connection to {self.url} was lost again while recovering"
                        )
                    if conn is not None and not conn.is_closed and self._up.is_set():
                        return conn
                    if not self._wanted:
                        raise self._down_error(wait)
                    if self._up.is_set():  # closed, and the closing callback has not run yet
                        self._lost(self._last_error or "closed")
                    await self._up.wait()
        except TimeoutError:
            raise self._down_error(limit) from None

    async def channel(self, *, confirms: bool, wait: float | None = None) -> Channel:
        """A new channel (publisher confirms on when ``confirms``). While the connection is being
        recovered, waits up to ``wait`` seconds (default ``connect_timeout``; ``math.inf``: until
        recovered or closed) and raises ``BrokerConnectionError`` after that."""
        conn = await self._require(wait)
        channel = await conn.channel(confirms=confirms)
        self._channels = [c for c in self._channels if c.is_open]
        self._channels.append(channel)
        return channel

    @property
    def open_channels(self) -> int:
        """Channels open on this connection now (for metrics)."""
        if not self.is_open:
            self._channels = []
            return 0
        self._channels = [c for c in self._channels if c.is_open]
        return len(self._channels)

    def managed(
        self, purpose: str, *, confirms: bool, on_open: ChannelHook | None = None
    ) -> ManagedChannel:
        return ManagedChannel(self, purpose, confirms=confirms, on_open=on_open)


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
        self._channel: Channel | None = None
        self._lock = asyncio.Lock()
        self._queued = 0
        self.reopened = 0
        """How many times the channel was reopened after a close (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"<mmate.ManagedChannel {self._purpose}>"

    async def get(self, *, wait: float | None = None) -> Channel:
        """The open channel, opening a new one if there is none or the broker closed it (waiting
        up to ``wait`` for a connection being recovered, as ``Connection.channel``)."""
        channel = self._channel
        # Callers that queued while the channel was (re)opened go first, in arrival order, so that
        # concurrent publishes of one batch reach the channel in the order they were started.
        if channel is not None and channel.is_open and self._queued == 0:
            return channel
        self._queued += 1
        try:
            # Wait for a connection being recovered outside the lock: a recovery hook may need
            # this very channel (the reply queue's) before the connection is handed out.
            await self._connection.ready(wait)
            async with self._lock:
                channel = self._channel
                if channel is not None and channel.is_open:
                    return channel
                if channel is not None:
                    self.reopened += 1
                    log.info("reopening the %s channel", self._purpose)
                channel = await self._connection.channel(confirms=self._confirms, wait=wait)
                if self._on_open is not None:
                    try:
                        await self._on_open(channel)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await channel.close()
                        raise
                self._channel = channel
                return channel
        finally:
            self._queued -= 1

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
