"""Health of a client: connection, a channel, the declared topology and the served queues.

``check_health(client)`` runs these checks, each bounded by ``timeout`` seconds, and returns a
``HealthReport``:

* ``connection``: the client's connection is up (``unhealthy`` when not, with its state: lost,
  reconnecting with the attempt and last error, failed, closed; the other checks are then reported
  ``unhealthy`` with detail "not connected" without touching the broker).
* ``channel``: a short-lived channel opens (and is closed again).
* ``exchange:<name>`` / ``queue:<name>``: every exchange and queue of every topology the client
  declared exists (passive declare; ``unhealthy`` when missing).
* ``consumers:<queue>``: each queue the client serves is being consumed by this client (``degraded``
  while its consumer is paused by the circuit breaker or re-consuming after a channel loss) and
  has at least one consumer on the broker (``degraded`` when it has none); its depth and consumer
  count go into ``queues``.

A check that times out is ``degraded``. The overall status is the worst of all checks. Nothing in a
report carries a password (the URL is masked). Never raises for broker trouble; it reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiormq.abc

if TYPE_CHECKING:
    from ..client import Client

Status = Literal["healthy", "degraded", "unhealthy"]
_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: its name, status, a human-readable detail and how long it took."""

    name: str
    status: Status
    detail: str
    duration_ms: float


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth (ready messages) and consumer count of one served queue, as the broker reports."""

    queue: str
    messages: int
    consumers: int


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The checks, the overall status (the worst check) and the served queues' stats."""

    status: Status
    service: str
    broker: str
    """The broker URL, password masked."""
    checks: list[CheckResult] = field(default_factory=list)
    queues: list[QueueStats] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True unless unhealthy (healthy or degraded can still serve)."""
        return self.status != "unhealthy"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class _Checker:
    def __init__(self, client: Client, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.checks: list[CheckResult] = []
        self.queues: list[QueueStats] = []
        self.channel: aiormq.abc.AbstractChannel | None = None

    async def run(self, name: str, check: Callable[[], Awaitable[tuple[Status, str]]]) -> None:
        start = time.monotonic()
        try:
            status, detail = await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            status, detail = "degraded", f"timed out after {self.timeout:g} s"
        except Exception as exc:
            status, detail = "unhealthy", f"{type(exc).__name__}: {exc}"
        ms = round((time.monotonic() - start) * 1000, 3)
        self.checks.append(CheckResult(name, status, detail, ms))

    async def fresh_channel(self) -> aiormq.abc.AbstractChannel:
        """The shared check channel, reopened when a failed passive declare closed it."""
        if self.channel is None or self.channel.is_closed:
            self.channel = await self.client.connection.channel(confirms=False)
        return self.channel

    async def close(self) -> None:
        if self.channel is not None and not self.channel.is_closed:
            with contextlib.suppress(Exception):  # best effort
                await self.channel.close()


async def check_health(client: Client, *, timeout: float = 5.0) -> HealthReport:
    """Run every check (each within ``timeout`` seconds) and report; see the module docstring."""
    checker = _Checker(client, timeout)
    conn = client.connection
    topologies = client.declared
    exchanges = sorted({e.name for t in topologies for e in t.exchanges})
    queues = sorted({q.name for t in topologies for q in t.queues})
    ours = {c.queue: c for s in client.servings for c in s.consumers}
    served = sorted(ours)

    async def connection() -> tuple[Status, str]:
        if conn.is_up:
            return "healthy", f"{conn.state}, {conn.reconnects} reconnects so far"
        return "unhealthy", f"not connected: {conn.describe_outage()}"

    await checker.run("connection", connection)
    names = (
        ["channel"]
        + [f"exchange:{e}" for e in exchanges]
        + [f"queue:{q}" for q in queues]
        + [f"consumers:{q}" for q in served]
    )
    if not conn.is_up:
        for name in names:
            checker.checks.append(CheckResult(name, "unhealthy", "not connected", 0.0))
        return _report(client, checker)

    async def channel() -> tuple[Status, str]:
        ch = await conn.channel(confirms=False)
        await ch.close()
        return "healthy", "opened and closed"

    def exchange(name: str) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def check() -> tuple[Status, str]:
            ch = await checker.fresh_channel()
            try:
                await ch.exchange_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return "unhealthy", "missing"
            return "healthy", "exists"

        return check

    def queue(name: str) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def check() -> tuple[Status, str]:
            ch = await checker.fresh_channel()
            try:
                await ch.queue_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return "unhealthy", "missing"
            return "healthy", "exists"

        return check

    def consumers(name: str) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def check() -> tuple[Status, str]:
            ch = await checker.fresh_channel()
            try:
                ok = await ch.queue_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return "unhealthy", "missing"
            stats = QueueStats(name, int(ok.message_count or 0), int(ok.consumer_count or 0))
            checker.queues.append(stats)
            detail = f"{stats.messages} messages, {stats.consumers} consumers"
            consumer = ours[name]
            if consumer.paused:
                return "degraded", f"{detail}; ours is paused by its circuit breaker"
            if not consumer.consuming:
                return "degraded", f"{detail}; ours is consuming again after a channel loss"
            return ("healthy" if stats.consumers else "degraded"), detail

        return check

    try:
        await checker.run("channel", channel)
        for e in exchanges:
            await checker.run(f"exchange:{e}", exchange(e))
        for q in queues:
            await checker.run(f"queue:{q}", queue(q))
        for q in served:
            await checker.run(f"consumers:{q}", consumers(q))
    finally:
        await checker.close()
    return _report(client, checker)


def _report(client: Client, checker: _Checker) -> HealthReport:
    status: Status = "healthy"
    for c in checker.checks:
        if _RANK[c.status] > _RANK[status]:
            status = c.status
    return HealthReport(
        status, client.connection.service, client.connection.url, checker.checks, checker.queues
    )
