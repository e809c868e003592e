"""``OpenTelemetryTracing``: OpenTelemetry spans of publishing and handling, as an interceptor,
with the trace context in the message headers so a trace continues across services (needs
``opentelemetry-api``, ``pip install 'mmate[tracing]'``; ``import mmate`` never imports it).
Spans, attributes and headers: docs/operations/metrics-tracing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._contract.context import MessageContext
from .._contract.model import Model
from ..errors import FeatureNotAvailable
from .interceptors import HandleNext, Interceptor, PublishInfo, PublishNext

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import Getter, TextMapPropagator
    from opentelemetry.trace import TracerProvider

INSTALL = "pip install 'mmate[tracing]'"
SCOPE = "mmate"


class OpenTelemetryTracing(Interceptor):
    """An interceptor that traces publishes and handler calls (see the module docstring).

    ``tracer_provider``: default the global one; ``propagator``: default the global one
    (``opentelemetry.propagate``).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        try:
            from opentelemetry import propagate, trace
        except ImportError as exc:
            raise FeatureNotAvailable(
                f"mmate.tracing needs the opentelemetry-api package: {INSTALL}"
            ) from exc
        self._trace = trace
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self._given = propagator
        self._propagate = propagate
        self._getter = _header_getter()

    def _propagator(self) -> TextMapPropagator:
        """The given propagator, else the global one at the time of the call."""
        return self._given or self._propagate.get_global_textmap()

    async def on_publish(self, info: PublishInfo, call_next: PublishNext) -> None:
        attributes = _attributes(
            ("send", "publish"),
            info.exchange,
            info.message_id,
            info.message_type,
            info.routing_key,
            info.correlation_id,
        )
        attributes["mmate.publish.kind"] = info.kind
        name = f"publish {info.exchange or '(default)'}"
        with self._tracer.start_as_current_span(
            name, kind=self._trace.SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            self._propagator().inject(carrier)
            for key, value in carrier.items():
                info.headers[key] = str(value)
            try:
                await call_next()
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise

    async def on_handle(self, message: Model, ctx: MessageContext, call_next: HandleNext) -> Any:
        parent = self._propagator().extract(ctx.headers, getter=self._getter)
        attributes = _attributes(
            ("process", "process"),
            ctx.exchange,
            ctx.message_id,
            ctx.message_type,
            ctx.routing_key,
            ctx.correlation_id,
        )
        attributes["messaging.destination.subscription.name"] = ctx.queue
        attributes["mmate.attempt"] = ctx.attempt
        if ctx.delivery_tag:
            attributes["messaging.rabbitmq.message.delivery_tag"] = ctx.delivery_tag
        with self._tracer.start_as_current_span(
            f"process {ctx.queue}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            try:
                return await call_next()
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise


def _attributes(
    operation: tuple[str, str],
    destination: str,
    message_id: str,
    message_type: str,
    routing_key: str,
    correlation_id: str | None,
) -> dict[str, str | int]:
    """The messaging attributes a publish span and a process span share."""
    attributes: dict[str, str | int] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation[0],
        "messaging.operation.name": operation[1],
        "messaging.destination.name": destination,
        "messaging.message.id": message_id,
        "mmate.message.type": message_type,
    }
    if routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    return attributes


def _header_getter() -> Getter[Mapping[str, Any]]:
    from opentelemetry.propagators.textmap import Getter

    class HeaderGetter(Getter[Mapping[str, Any]]):
        """Reads a header for the propagator; an AMQP header value may arrive as bytes."""

        def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
            value = carrier.get(key)
            if value is None:
                return None
            if isinstance(value, bytes | bytearray):
                return [bytes(value).decode("utf-8", "replace")]
            return [str(value)]

        def keys(self, carrier: Mapping[str, Any]) -> list[str]:
            return list(carrier)

    return HeaderGetter()
