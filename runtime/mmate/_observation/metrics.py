"""``PrometheusMetrics``: Prometheus metrics of publishing, consuming and the connection, as an
interceptor (needs ``prometheus-client``, ``pip install 'mmate[metrics]'``; ``import mmate``
never imports it). One instance may serve several clients (``bind``); two cannot share a
registry. The metrics, their labels and how lag, depth and memory are sampled:
docs/operations/metrics-tracing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._contract.context import MessageContext
from .._contract.model import Model
from .._transport.recovery import ConnectionEvent
from ..errors import FeatureNotAvailable
from .interceptors import HandleNext, Interceptor, Outcome, PublishInfo, PublishNext

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..client import Client

STATES = ("connecting", "connected", "lost", "reconnecting", "recovered", "failed", "closed")
"""The values of ``mmate_connection_state`` (``recovery.ConnectionState``)."""

UNKNOWN = "unknown"
"""The ``message_type`` label of messages that never matched a handler of the queue."""

_NAMED_STAGES = frozenset({"handler", "validate"})
"""Stages at which the message's type is one the queue has a handler for."""

INSTALL = "pip install 'mmate[metrics]'"

STATM = "/proc/self/statm"

log = logging.getLogger("mmate.metrics")


def resident_memory() -> float:
    """The process's resident set size in bytes, from ``/proc/self/statm`` (Linux)."""
    with open(STATM, encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


def message_age(sent: datetime | None, max_lag: float) -> float | None:
    """Seconds since ``sent`` (naive: UTC), clamped to 0 .. ``max_lag``; None without a time."""
    if sent is None:
        return None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - sent).total_seconds()
    return min(max(age, 0.0), max_lag)


class PrometheusMetrics(Interceptor):
    """An interceptor that counts and times what a client publishes and consumes.

    ``registry``: where the metrics are registered (default: ``prometheus_client.REGISTRY``).
    ``publish_buckets`` / ``handle_buckets``: histogram buckets in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        publish_buckets: Sequence[float] = (
            0.001,
            0.0025,
            0.005,
            0.01,
            0.025,
            0.05,
            0.1,
            0.25,
            0.5,
            1.0,
            2.5,
            5.0,
            10.0,
        ),
        handle_buckets: Sequence[float] = (
            0.001,
            0.005,
            0.01,
            0.025,
            0.05,
            0.1,
            0.25,
            0.5,
            1.0,
            2.5,
            5.0,
            10.0,
            30.0,
            60.0,
            300.0,
        ),
        lag_buckets: Sequence[float] = (
            0.005,
            0.01,
            0.05,
            0.1,
            0.5,
            1.0,
            5.0,
            10.0,
            60.0,
            300.0,
            1800.0,
            3600.0,
            86400.0,
        ),
        max_lag: float = 7 * 86400.0,
        depth_interval: float = 15.0,
    ) -> None:
        if max_lag <= 0 or depth_interval <= 0:
            raise ValueError("max_lag and depth_interval must be positive")
        self.max_lag = max_lag
        self.depth_interval = depth_interval
        self._samplers: dict[int, asyncio.Task[None]] = {}
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise FeatureNotAvailable(
                f"mmate.metrics needs the prometheus-client package: {INSTALL}"
            ) from exc
        reg = prom.REGISTRY if registry is None else registry
        self.registry = reg
        publish = ("message_type", "exchange")
        consume = ("queue", "message_type")
        self.published = prom.Counter(
            "mmate_messages_published_total",
            "Messages published and confirmed by the broker.",
            publish,
            registry=reg,
        )
        self.publish_duration = prom.Histogram(
            "mmate_publish_duration_seconds",
            "Seconds from the publish call until the broker's confirm (or the failure).",
            publish,
            buckets=publish_buckets,
            registry=reg,
        )
        self.publish_failures = prom.Counter(
            "mmate_publish_failures_total",
            "Publishes that failed, by error class.",
            (*publish, "error"),
            registry=reg,
        )
        self.consumed = prom.Counter(
            "mmate_messages_consumed_total",
            "Deliveries finished, whatever the outcome (handled, retried, dead-lettered, "
            "rejected, requeued).",
            consume,
            registry=reg,
        )
        self.handle_duration = prom.Histogram(
            "mmate_handler_duration_seconds",
            "Seconds one handler call took (each immediate retry is one call).",
            consume,
            buckets=handle_buckets,
            registry=reg,
        )
        self.handler_errors = prom.Counter(
            "mmate_handler_errors_total",
            "Handler calls that raised, by error class.",
            (*consume, "error"),
            registry=reg,
        )
        self.retried = prom.Counter(
            "mmate_messages_retried_total",
            "Failed deliveries moved to a wait queue (or the delay cascade) to be retried.",
            consume,
            registry=reg,
        )
        self.dead_lettered = prom.Counter(
            "mmate_messages_dead_lettered_total",
            "Deliveries moved to the dead-letter route, by reason.",
            (*consume, "reason"),
            registry=reg,
        )
        self.rejected = prom.Counter(
            "mmate_messages_rejected_total",
            "Failed deliveries nacked without requeue (the queue has no dead-letter route).",
            consume,
            registry=reg,
        )
        self.requeued = prom.Counter(
            "mmate_messages_requeued_total",
            "Failed deliveries returned to their queue because the move to their wait or "
            "dead-letter queue failed (delivered again after a pause).",
            consume,
            registry=reg,
        )
        self.connection_state = prom.Enum(
            "mmate_connection_state",
            "The state of the client's broker connection.",
            ("service",),
            states=list(STATES),
            registry=reg,
        )
        self.reconnects = prom.Counter(
            "mmate_reconnects_total",
            "Connections recovered after a loss.",
            ("service",),
            registry=reg,
        )
        self.consumer_lag = prom.Histogram(
            "mmate_consumer_lag_seconds",
            "Age of a message when its handler starts, from the envelope timestamp (future "
            "timestamps count as 0, older than max_lag as max_lag).",
            consume,
            buckets=lag_buckets,
            registry=reg,
        )
        self.queue_depth = prom.Gauge(
            "mmate_queue_depth",
            "Messages ready in a served queue, sampled every depth_interval seconds.",
            ("queue",),
            registry=reg,
        )
        self.connections_open = prom.Gauge(
            "mmate_connections_open",
            "The client's broker connections that are up (its own, publishing pool, consumer "
            "groups).",
            ("service",),
            registry=reg,
        )
        self.channels_open = prom.Gauge(
            "mmate_channels_open",
            "AMQP channels open on the client's connections.",
            ("service",),
            registry=reg,
        )
        self.resident_memory: Any = None
        if os.path.exists(STATM):
            self.resident_memory = prom.Gauge(
                "mmate_process_resident_memory_bytes",
                "Resident memory of this process in bytes (/proc/self/statm).",
                registry=reg,
            )
            self.resident_memory.set_function(resident_memory)

    def bind(self, client: Client) -> None:
        service = client.service
        self.reconnects.labels(service)  # exported as 0 from the start
        self.connections_open.labels(service).set_function(
            lambda: float(sum(c.is_up for c in client.connections))
        )
        self.channels_open.labels(service).set_function(
            lambda: float(sum(c.open_channels for c in client.connections))
        )

        def changed(event: ConnectionEvent) -> None:
            self.connection_state.labels(service).state(event.state)
            if event.state == "recovered":
                self.reconnects.labels(service).inc()
            elif event.state == "connected":
                self._start_sampling(client)
            elif event.state == "closed":
                self._stop_sampling(client)

        client.on_state(changed)

    # -- queue depth --------------------------------------------------------------------------

    def _start_sampling(self, client: Client) -> None:
        running = self._samplers.get(id(client))
        if running is None or running.done():
            self._samplers[id(client)] = asyncio.get_running_loop().create_task(
                self._sample_forever(client), name=f"mmate:metrics:depth:{client.service}"
            )

    def _stop_sampling(self, client: Client) -> None:
        task = self._samplers.pop(id(client), None)
        if task is not None:
            task.cancel()

    async def _sample_forever(self, client: Client) -> None:
        while True:
            await asyncio.sleep(self.depth_interval)
            try:
                await self.sample_depths(client)
            except Exception as exc:  # the next round tries again
                log.warning("sampling the queue depths of %s failed: %s", client.service, exc)

    async def sample_depths(self, client: Client) -> None:
        """Read the depth of every queue ``client`` serves now (also done every
        ``depth_interval`` seconds)."""
        queues = sorted({c.queue for serving in client.servings for c in serving.consumers})
        connection = client.connection
        if not queues or not connection.is_up:
            return
        channel = None
        try:
            for queue in queues:
                if channel is None or not channel.is_open:
                    channel = await connection.channel(confirms=False)
                try:
                    info = await channel.declare_queue(queue, passive=True)
                except Exception as exc:  # a 404 closes the channel: the next one opens another
                    log.debug("queue depth of %s: %s", queue, exc)
                    continue
                self.queue_depth.labels(queue).set(info.message_count)
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()

    async def on_publish(self, info: PublishInfo, call_next: PublishNext) -> None:
        start = time.perf_counter()
        try:
            await call_next()
        except Exception as exc:
            self.publish_duration.labels(info.message_type, info.exchange).observe(
                time.perf_counter() - start
            )
            self.publish_failures.labels(info.message_type, info.exchange, type(exc).__name__).inc()
            raise
        self.publish_duration.labels(info.message_type, info.exchange).observe(
            time.perf_counter() - start
        )
        self.published.labels(info.message_type, info.exchange).inc()

    async def on_handle(self, message: Model, ctx: MessageContext, call_next: HandleNext) -> Any:
        age = message_age(ctx.timestamp, self.max_lag)
        if age is not None:
            self.consumer_lag.labels(ctx.queue, ctx.message_type).observe(age)
        start = time.perf_counter()
        try:
            return await call_next()
        except Exception as exc:
            self.handler_errors.labels(ctx.queue, ctx.message_type, type(exc).__name__).inc()
            raise
        finally:
            self.handle_duration.labels(ctx.queue, ctx.message_type).observe(
                time.perf_counter() - start
            )

    def on_outcome(self, outcome: Outcome) -> None:
        known = outcome.stage is None or outcome.stage in _NAMED_STAGES
        labels = (outcome.queue, outcome.message_type if known else UNKNOWN)
        self.consumed.labels(*labels).inc()
        if outcome.result == "retried":
            self.retried.labels(*labels).inc()
        elif outcome.result == "dead_lettered":
            self.dead_lettered.labels(*labels, outcome.reason).inc()
        elif outcome.result == "rejected":
            self.rejected.labels(*labels).inc()
        elif outcome.result == "requeued":
            self.requeued.labels(*labels).inc()
