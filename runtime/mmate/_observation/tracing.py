"""OpenTelemetry tracing of publishing and handling, as an interceptor; the trace context travels
in the message headers, so a trace continues across services (Go ones included).

::

    from mmate.tracing import OpenTelemetryTracing

    async with mmate.Client(url, service="orders", interceptors=[OpenTelemetryTracing()]):
        ...

Needs ``opentelemetry-api`` (``pip install 'mmate[tracing]'``) and, to export anything, an SDK
configured by the application; without the API ``OpenTelemetryTracing()`` raises
``FeatureNotAvailable``. ``import mmate`` never imports it.

* **Publishing**: a ``PRODUCER`` span per publish (``publish <exchange>``), a child of the current
  span (e.g. the handler's span for a follow-up or a reply); the propagator (default: the global
  one, W3C ``traceparent`` / ``tracestate`` and baggage) injects its context into ``info.headers``,
  so it is written to the envelope's ``headers`` and to the AMQP header table.
* **Handling**: a ``CONSUMER`` span per handler call (``process <queue>``), whose parent is the
  context extracted from ``ctx.headers``: the envelope's headers with the AMQP headers over them,
  so a ``traceparent`` is found in either (Go copies its headers into both, and forwards envelope
  headers). The handler runs inside the span: what it publishes continues the trace.
* Attributes (OpenTelemetry messaging conventions for RabbitMQ): ``messaging.system`` =
  ``rabbitmq``, ``messaging.operation.type`` (``send`` / ``process``), ``messaging.operation.name``
  (``publish`` / ``process``), ``messaging.destination.name`` (the exchange, empty for the
  default exchange), ``messaging.rabbitmq.destination.routing_key``, ``messaging.message.id``,
  ``messaging.message.conversation_id`` (the correlation id), and for handling
  ``messaging.destination.subscription.name`` (the queue) and ``mmate.attempt``; for publishing
  ``mmate.publish.kind`` and ``mmate.message.type`` on both.
* An exception leaving ``call_next`` is recorded on the span (``error.type`` = its class) and sets
  the span's status to error; it propagates unchanged.
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
