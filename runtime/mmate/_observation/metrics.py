"""Prometheus metrics of publishing, consuming and the connection, as an interceptor.

::

    from prometheus_client import start_http_server
    from mmate.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()              # one per registry (default: the global one)
    start_http_server(9100)
    async with mmate.Client(url, service="orders", interceptors=[metrics]) as client:
        ...

Needs ``prometheus-client`` (``pip install 'mmate[metrics]'``); without it ``PrometheusMetrics()``
raises ``FeatureNotAvailable``. ``import mmate`` never imports it.

Every metric is named ``mmate_...``; docs/operations/metrics-tracing.md has the table.
Labels: ``message_type`` and
``exchange`` on the publish side, ``queue`` and ``message_type`` on the consume side, ``service``
for the connection. A message that failed before a handler was found for it (not JSON, no type,
a type the queue has no handler for, ...) is labelled ``message_type="unknown"``: that label comes
from the sender, so any value would let a stranger create time series at will. Errors are labelled
by exception class name.

One instance may serve several clients (it subscribes to each one's connection state in
``bind``); two instances cannot share a registry (Prometheus refuses duplicate names).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
    ) -> None:
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

    def bind(self, client: Client) -> None:
        service = client.service
        self.reconnects.labels(service)  # exported as 0 from the start

        def changed(event: ConnectionEvent) -> None:
            self.connection_state.labels(service).state(event.state)
            if event.state == "recovered":
                self.reconnects.labels(service).inc()

        client.on_state(changed)

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
