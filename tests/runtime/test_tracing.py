"""OpenTelemetry tracing through the broker: PRODUCER and CONSUMER spans with the messaging
attributes, the W3C trace context in both the envelope and the AMQP headers, one trace across
publish -> handler -> follow-up and request -> handler -> reply, Go-shaped messages carrying a
``traceparent`` only in the envelope headers or only in the AMQP headers, errors recorded; and
the missing-dependency behaviour."""

from __future__ import annotations

import copy
import itertools
import json
import sys
from collections.abc import Iterator
from typing import Any

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, go_body, go_fixture, wait_until
from mmate import MessageContext
from mmate._observation.tracing import OpenTelemetryTracing
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pamqp.commands import Basic
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply

pytestmark = pytest.mark.broker

GO_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
GO_SPAN_ID = "00f067aa0ba902b7"
GO_TRACEPARENT = f"00-{GO_TRACE_ID}-{GO_SPAN_ID}-01"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def tracing(provider: TracerProvider) -> OpenTelemetryTracing:
    return OpenTelemetryTracing(
        tracer_provider=provider, propagator=TraceContextTextMapPropagator()
    )


def handlers_for(app: App, *, follow_up: bool = False, fail: bool = False) -> Any:
    class Handlers(app.handlers):
        def __init__(self) -> None:
            self.contexts: list[MessageContext] = []

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            self.contexts.append(ctx)
            if fail:
                raise mmate.PermanentError("no such customer")
            if follow_up:
                await ctx.publisher(app.publisher).publish_order_created_event(
                    OrderCreatedEvent(order_id="O-1", customer_id=message.customer_id, amount=1)
                )

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            self.contexts.append(ctx)

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            self.contexts.append(ctx)
            return OrderReply(order_id=message.order_id)

    return Handlers()


def hex_ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    """(trace id, span id, parent span id) as hex."""
    context = span.get_span_context()
    parent = span.parent
    return (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else None,
    )


def flags(span: ReadableSpan) -> str:
    return format(span.get_span_context().trace_flags, "02x")


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def test_a_trace_continues_from_publish_through_the_handler_to_its_follow_up(
    app: App, raw: aiormq.abc.AbstractChannel, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    handlers = handlers_for(app, follow_up=True)
    async with mmate.Client(
        BROKER_URL, service="order-service", interceptors=[tracing(provider)]
    ) as client:
        await client.declare(app.order_service)
        await client.serve(handlers)
        with provider.get_tracer("test").start_as_current_span("checkout") as root:
            await app.publisher(client).send_create_order_command(
                CreateOrderCommand(customer_id="c-1", amount=1), correlation_id="flow-1"
            )
        await wait_until(lambda: len(exporter.get_finished_spans()) == 5)
    found = by_name(exporter)
    assert set(found) == {
        "checkout",
        f"publish {app.commands}",
        f"process {app.order_queue}",
        f"publish {app.events}",
        f"process {app.audit_queue}",
    }
    trace_id = format(root.get_span_context().trace_id, "032x")
    chain = [
        found["checkout"],
        found[f"publish {app.commands}"],
        found[f"process {app.order_queue}"],
        found[f"publish {app.events}"],
        found[f"process {app.audit_queue}"],
    ]
    for parent, child in itertools.pairwise(chain):
        assert hex_ids(child)[0] == trace_id
        assert hex_ids(child)[2] == hex_ids(parent)[1], (child.name, parent.name)
    producer, consumer = chain[1], chain[2]
    assert producer.kind is SpanKind.PRODUCER and consumer.kind is SpanKind.CONSUMER
    assert dict(producer.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": app.commands,
        "messaging.rabbitmq.destination.routing_key": "cmd.order-service.CreateOrderCommand",
        "messaging.message.id": handlers.contexts[0].message_id,
        "messaging.message.conversation_id": "flow-1",
        "mmate.message.type": "CreateOrderCommand",
        "mmate.publish.kind": "publish",
    }
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.subscription.name"] == app.order_queue
    assert attributes["messaging.destination.name"] == app.commands
    assert attributes["messaging.message.conversation_id"] == "flow-1"
    assert attributes["mmate.attempt"] == 1
    # The context is on the wire in both places: the envelope headers (Go forwards them) and
    # the AMQP table; the handler sees it in ctx.headers.
    traceparent = f"00-{trace_id}-{hex_ids(producer)[1]}-{flags(producer)}"
    assert handlers.contexts[0].headers["traceparent"] == traceparent


async def test_the_context_is_written_to_the_envelope_and_the_amqp_headers(
    app: App, raw: aiormq.abc.AbstractChannel, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with mmate.Client(
        BROKER_URL, service="order-service", interceptors=[tracing(provider)]
    ) as client:
        await client.declare(app.order_service)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
    got = await raw.basic_get(app.order_queue, no_ack=True)
    (producer,) = exporter.get_finished_spans()
    trace_id, span_id, _ = hex_ids(producer)
    expected = f"00-{trace_id}-{span_id}-{flags(producer)}"
    assert json.loads(got.body)["headers"]["traceparent"] == expected
    assert (got.header.properties.headers or {})["traceparent"] == expected


async def test_request_handler_and_reply_are_one_trace(
    app: App, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with (
        mmate.Client(BROKER_URL, service="order-service", interceptors=[tracing(provider)]) as srv,
        mmate.Client(BROKER_URL, service="storefront", interceptors=[tracing(provider)]) as shop,
    ):
        await srv.declare(app.order_service)
        await srv.serve(handlers_for(app), queues=[app.order_queue])
        reply = await app.publisher(shop).request_get_order_query(GetOrderQuery(order_id="O-1"))
        assert reply.order_id == "O-1"
    found = by_name(exporter)
    query = found[f"publish {app.queries}"]
    handled = found[f"process {app.order_queue}"]
    answer = found["publish (default)"]
    assert dict(query.attributes or {})["mmate.publish.kind"] == "request"
    assert dict(answer.attributes or {})["mmate.publish.kind"] == "reply"
    assert hex_ids(handled)[2] == hex_ids(query)[1]
    assert hex_ids(answer)[2] == hex_ids(handled)[1]
    assert len({hex_ids(s)[0] for s in (query, handled, answer)}) == 1


@pytest.mark.parametrize("where", ["envelope", "amqp"])
async def test_a_go_message_continues_the_trace_of_its_traceparent(
    app: App,
    raw: aiormq.abc.AbstractChannel,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    where: str,
) -> None:
    provider, exporter = spans
    fixture = copy.deepcopy(go_fixture("command"))
    headers = dict(fixture["headers"])
    if where == "envelope":  # what a Go service forwards: the envelope's headers only
        fixture["body"]["headers"]["traceparent"] = GO_TRACEPARENT
        fixture["body"]["headers"]["tracestate"] = "go=1"
    else:
        headers["traceparent"] = GO_TRACEPARENT
        headers["tracestate"] = "go=1"
    handlers = handlers_for(app)
    async with mmate.Client(
        BROKER_URL, service="order-service", interceptors=[tracing(provider)]
    ) as client:
        await client.declare(app.order_service)
        await client.serve(handlers, queues=[app.order_queue])
        props = Basic.Properties(headers=headers, **fixture["properties"])
        await raw.basic_publish(go_body(fixture), routing_key=app.order_queue, properties=props)
        await wait_until(lambda: len(exporter.get_finished_spans()) == 1)
    (span,) = exporter.get_finished_spans()
    trace_id, _, parent = hex_ids(span)
    assert (trace_id, parent) == (GO_TRACE_ID, GO_SPAN_ID)
    assert span.parent is not None and span.parent.is_remote
    assert span.get_span_context().trace_state.get("go") == "1"
    attributes = dict(span.attributes or {})
    assert attributes["messaging.message.id"] == "0f8e3a52-2a8b-4d8e-9f3c-5f1f7e9d2b11"
    assert attributes["messaging.message.conversation_id"] == "corr-20261128173500"
    assert handlers.contexts[0].message_id == "0f8e3a52-2a8b-4d8e-9f3c-5f1f7e9d2b11"


async def test_a_failing_handler_records_the_exception_and_an_error_status(
    app: App, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    handlers = handlers_for(app, fail=True)
    async with mmate.Client(
        BROKER_URL, service="order-service", interceptors=[tracing(provider)]
    ) as client:
        await client.declare(app.order_service)
        serving = await client.serve(handlers, queues=[app.order_queue])
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
    span = by_name(exporter)[f"process {app.order_queue}"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "PermanentError"
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.message"] == "no such customer"


async def test_a_failed_publish_records_its_error(
    app: App, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with mmate.Client(
        BROKER_URL, service="order-service", interceptors=[tracing(provider)]
    ) as client:
        await client.declare(app.order_service)
        with pytest.raises(mmate.UnroutableError):
            await app.publisher(client).send_create_order_command(
                CreateOrderCommand(customer_id="c-1", amount=1), routing_key="nowhere"
            )
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "UnroutableError"


def test_without_opentelemetry_it_raises_feature_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(mmate.FeatureNotAvailable, match=r"pip install 'mmate\[tracing\]'"):
        OpenTelemetryTracing()


async def test_a_traceparent_header_of_bytes_is_read_too(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """AMQP byte-array header values reach ``ctx.headers`` as bytes."""
    provider, exporter = spans
    ctx = MessageContext(
        message_id="m-1",
        message_type="CreateOrderCommand",
        correlation_id=None,
        headers={"traceparent": bytearray(GO_TRACEPARENT.encode())},
        redelivered=False,
        queue="q",
        exchange="",
        routing_key="q",
        delivery_tag=1,
        timestamp=None,
        reply_to=None,
        attempt=1,
        transport=None,  # type: ignore[arg-type]
    )

    async def handler() -> str:
        return "done"

    message = CreateOrderCommand(customer_id="c", amount=1)
    assert await tracing(provider).on_handle(message, ctx, handler) == "done"
    (span,) = exporter.get_finished_spans()
    assert hex_ids(span)[::2] == (GO_TRACE_ID, GO_SPAN_ID)
