"""One aiormq connection, the channels the runtime owns on it, and its recovery.

Channel ownership lives here and nowhere else: publishing has one confirm-mode channel, each
consumer has its own, the reply queue has its own, and each topology declaration opens a short-lived
one (a 406 kills the channel it happened on, never one that others use). A ``ManagedChannel`` is a
channel for one purpose that is reopened on next use when the broker closed it (an error such as 404
on publish to a missing exchange).

Recovery is owned here, in one task (``recovery.py`` has the policy, states and events): when the
connection is lost (not closed by ``close``), it reconnects with jittered exponential backoff,
trying the broker URLs in turn, then runs the ``on_reconnect`` hooks (the client declares its
topologies again, re-creates its reply queue, redeclares the delay cascade) and only then lets
anyone else have a channel. Meanwhile ``channel`` waits for the recovery, up to its ``wait``:
consumers (whose channels died with the connection) wait and re-consume, a publish waits within
its timeout. State changes are logged and reported to ``on_state`` callbacks.

Task safety: every method may be called from any task of the event loop that opened the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import ssl
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeGuard

import aiormq
import aiormq.abc

from .._transport.aiormq import frames, open_refusal
from ..errors import BrokerConnectionError, MmateError, translate
from .recovery import ConnectionEvent, ConnectionState, ReconnectPolicy, StateCallback
from .urls import connection_url, mask

log = logging.getLogger("mmate.connection")

ChannelHook = Callable[[aiormq.abc.AbstractChannel], Awaitable[None]]

# True inside the recovery task and its children (the on_reconnect hooks): they may use the new
# connection before it is handed out to everyone else.
_recovering: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mmate_recovering", default=False
)


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


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "closed"
    text = str(error).split("Unexpected connection close", 1)[0].strip()
    return text or type(error).__name__


class Connection:
    """A connection to the broker (``url``: one URL or several, the nodes of a cluster, tried in
    turn). ``open`` connects, ``close`` closes every channel and the socket; in between, a lost
    connection is recovered by ``reconnect`` (a ``ReconnectPolicy``)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        service: str,
        heartbeat: int = 30,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 15.0,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        given = [url] if isinstance(url, str) else list(url)
        if not given:
            raise MmateError("Connection needs at least one broker URL")
        for one in given:
            if ssl_context is not None and not one.startswith("amqps://"):
                raise MmateError(f"an ssl_context needs an amqps:// URL, not {mask(one)}")
        name = f"{service} (mmate-py, pid {os.getpid()})"
        self._urls = [connection_url(u, heartbeat=heartbeat, connection_name=name) for u in given]
        self._masked = [mask(u) for u in given]
        self._current = 0
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._conn: aiormq.abc.AbstractConnection | None = None
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

    async def _connect_to(self, index: int) -> aiormq.abc.AbstractConnection:
        url, masked = self._urls[index], self._masked[index]
        log.debug("connecting to %s as %s", masked, self.service)
        frames.install()  # one hostile frame must not kill the connection (frames.py)
        try:
            return await asyncio.wait_for(
                aiormq.connect(url, context=self._ssl_context), self._connect_timeout
            )
        except TimeoutError:
            raise BrokerConnectionError(
                f"connecting to {masked}: no answer within {self._connect_timeout:g} s"
            ) from None
        except Exception as exc:
            refused = None
            if "Connection.Close" in str(exc):  # aiormq lost the broker's words: ask again
                refused = await open_refusal.ask(url, self._ssl_context, self._connect_timeout)
            if refused is not None:
                code, text = refused
                raise BrokerConnectionError(
                    f"connecting to {masked}: the broker refused to open the connection: "
                    f"{code} {text}"
                ) from None
            error = _without_url(translate(exc, f"connecting to {masked}"), url)
            if not isinstance(error, BrokerConnectionError):
                hint = " (does the vhost exist, and may this user use it?)"
                error = BrokerConnectionError(f"{error}{hint}")
            raise error from None

    def _adopt(self, conn: aiormq.abc.AbstractConnection, index: int) -> None:
        self._conn = conn
        self._current = index
        conn.closing.add_done_callback(partial(self._on_closing, conn))

    def _on_closing(
        self, conn: aiormq.abc.AbstractConnection, done: asyncio.Future[object]
    ) -> None:
        if conn is not self._conn or not self._wanted:
            return
        error = None if done.cancelled() else done.exception()
        self._lost(_reason(error))

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
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing %s: %r", self.url, exc)
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
        try:
            await asyncio.wait_for(conn.ready(), 0.05)  # returns at once unless blocked
        except TimeoutError:
            return _blocked.reasons.get(conn) or "a resource alarm (memory or disk)"
        return None

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

    async def _require(self, wait: float | None) -> aiormq.abc.AbstractConnection:
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

    async def channel(
        self, *, confirms: bool, wait: float | None = None
    ) -> aiormq.abc.AbstractChannel:
        """A new channel (publisher confirms on when ``confirms``). While the connection is being
        recovered, waits up to ``wait`` seconds (default ``connect_timeout``; ``math.inf``: until
        recovered or closed) and raises ``BrokerConnectionError`` after that."""
        conn = await self._require(wait)
        try:
            return await conn.channel(publisher_confirms=confirms)
        except Exception as exc:
            raise translate(exc, "opening a channel") from exc

    def managed(
        self, purpose: str, *, confirms: bool, on_open: ChannelHook | None = None
    ) -> ManagedChannel:
        return ManagedChannel(self, purpose, confirms=confirms, on_open=on_open)


def stray_cancel(exc: BaseException) -> bool:
    """``exc`` is a ``CancelledError`` that nobody asked for: aiormq rejects the pending futures of
    a connection it dropped for missed heartbeats (a silent network cut) with a ``CancelledError``
    instance. The current task was not cancelled, so it is a lost connection, not a cancellation."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


def usable(channel: aiormq.abc.AbstractChannel | None) -> TypeGuard[aiormq.abc.AbstractChannel]:
    """The channel is open and the broker has not begun closing it.

    aiormq answers the broker's ``Channel.Close`` with ``Close-Ok`` at once but marks the channel
    closed only a moment later; a frame written on it in between makes the broker close the whole
    connection (504 CHANNEL_ERROR). aiormq records the close reason first, so that is checked too.
    """
    return (
        channel is not None
        and not channel.is_closed
        and getattr(channel, "_close_exception", None) is None
    )


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

    async def get(self, *, wait: float | None = None) -> aiormq.abc.AbstractChannel:
        """The open channel, opening a new one if there is none or the broker closed it (waiting
        up to ``wait`` for a connection being recovered, as ``Connection.channel``)."""
        channel = self._channel
        # Callers that queued while the channel was (re)opened go first, in arrival order, so that
        # concurrent publishes of one batch reach the channel in the order they were started.
        if usable(channel) and self._queued == 0:
            return channel
        self._queued += 1
        try:
            # Wait for a connection being recovered outside the lock: a recovery hook may need
            # this very channel (the reply queue's) before the connection is handed out.
            await self._connection.ready(wait)
            async with self._lock:
                channel = self._channel
                if usable(channel):
                    return channel
                if channel is not None:
                    self.reopened += 1
                    log.info("reopening the %s channel", self._purpose)
                channel = await self._connection.channel(confirms=self._confirms, wait=wait)
                if self._on_open is not None:
                    try:
                        await self._on_open(channel)
                    except BaseException:
                        if not channel.is_closed:
                            with contextlib.suppress(Exception):
                                await channel.close()
                        raise
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
