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
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._topology.exists import Prober

if TYPE_CHECKING:
    from .._consuming.consumer import QueueConsumer
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
    """Runs checks one after another, each within ``timeout``, recording their results."""

    def __init__(self, client: Client, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.checks: list[CheckResult] = []
        self.queues: list[QueueStats] = []
        self.probe = Prober(client.connection)

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

    def skip(self, names: list[str], why: str) -> None:
        for name in names:
            self.checks.append(CheckResult(name, "unhealthy", why, 0.0))

    async def connection(self) -> tuple[Status, str]:
        conn = self.client.connection
        if conn.is_up:
            return "healthy", f"{conn.state}, {conn.reconnects} reconnects so far"
        return "unhealthy", f"not connected: {conn.describe_outage()}"

    async def channel(self) -> tuple[Status, str]:
        ch = await self.client.connection.channel(confirms=False)
        await ch.close()
        return "healthy", "opened and closed"

    def exchange(self, name: str) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def check() -> tuple[Status, str]:
            found = await self.probe.exchange(name)
            return ("healthy", "exists") if found else ("unhealthy", "missing")

        return check

    def queue(self, name: str) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def check() -> tuple[Status, str]:
            found = await self.probe.queue(name)
            return ("healthy", "exists") if found is not None else ("unhealthy", "missing")

        return check

    def consumers(
        self, name: str, consumer: QueueConsumer
    ) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def check() -> tuple[Status, str]:
            info = await self.probe.queue(name)
            if info is None:
                return "unhealthy", "missing"
            stats = QueueStats(name, info.message_count, info.consumer_count)
            self.queues.append(stats)
            detail = f"{stats.messages} messages, {stats.consumers} consumers"
            if consumer.paused:
                return "degraded", f"{detail}; ours is paused by its circuit breaker"
            if not consumer.consuming:
                return "degraded", f"{detail}; ours is consuming again after a channel loss"
            return ("healthy" if stats.consumers else "degraded"), detail

        return check


async def check_health(client: Client, *, timeout: float = 5.0) -> HealthReport:
    """Run every check (each within ``timeout`` seconds) and report; see the module docstring."""
    checker = _Checker(client, timeout)
    topologies = client.declared
    exchanges = sorted({e.name for t in topologies for e in t.exchanges})
    queues = sorted({q.name for t in topologies for q in t.queues})
    ours = {c.queue: c for s in client.servings for c in s.consumers}
    await checker.run("connection", checker.connection)
    if not client.connection.is_up:
        names = ["channel", *(f"exchange:{e}" for e in exchanges)]
        names += [f"queue:{q}" for q in queues] + [f"consumers:{q}" for q in sorted(ours)]
        checker.skip(names, "not connected")
        return _report(client, checker)
    try:
        await checker.run("channel", checker.channel)
        for e in exchanges:
            await checker.run(f"exchange:{e}", checker.exchange(e))
        for q in queues:
            await checker.run(f"queue:{q}", checker.queue(q))
        for q in sorted(ours):
            await checker.run(f"consumers:{q}", checker.consumers(q, ours[q]))
    finally:
        await checker.probe.close()
    return _report(client, checker)


def _report(client: Client, checker: _Checker) -> HealthReport:
    status: Status = "healthy"
    for c in checker.checks:
        if _RANK[c.status] > _RANK[status]:
            status = c.status
    return HealthReport(
        status, client.connection.service, client.connection.url, checker.checks, checker.queues
    )
