"""Go Mmate on the wire, without a broker: the Go-shaped fixtures are byte for byte what Go writes
and decode to the right model or error; correlation ids are read from wherever a Go, .NET or mmate
publisher puts them; unset optional fields are left out as Go leaves them, and read back either
way; a requester turns an unexpected reply into an error, never into a half-filled model. The same
flows on the in-memory broker (a Go peer played through the transport seam)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Annotated, Any

import mmate
import pytest
from conftest import FIXTURES, go_body, go_fixture
from go_json import marshal_envelope
from mmate import DecodeError, MessageContext, Model, RemoteError
from mmate._contract.topology import MessageDef
from mmate._publishing.requests import reply_model
from mmate._transport.base import Channel, Delivery, Properties
from mmate._transport.memory import MemoryBroker
from mmate._wire import envelope as codec
from pydantic import Field
from sample_app import (
    MESSAGES,
    App,
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderReply,
    make_app,
)

EXACT = ("event", "query", "reply", "query_error_reply")
CORR = "9a1f5d0e-3c2b-4e8f-a6b7-c8d9e0f1a2b3"


def amqp_properties(fixture: dict[str, Any]) -> Properties:
    return Properties(headers=dict(fixture["headers"]), **fixture["properties"])


# -- the fixtures are Go's bytes ------------------------------------------------------------------


@pytest.mark.parametrize("name", EXACT)
def test_fixture_bodies_are_the_bytes_gos_encoding_json_writes(name: str) -> None:
    fx = go_fixture(name)
    raw: bytes = fx["body_bytes"]
    assert raw == (FIXTURES / f"{name}.body").read_bytes()
    assert marshal_envelope(json.loads(raw)) == raw  # struct order, sorted maps, no whitespace
    assert go_body(fx) == raw
    keys = list(fx["body"])
    assert keys == [
        k
        for k in ("id", "type", "timestamp", "correlationId", "headers", "payload")
        if k in fx["body"]
    ]
    assert list(fx["body"]["payload"]) == sorted(fx["body"]["payload"])
    assert list(fx["body"]["headers"]) == sorted(fx["body"]["headers"])
    assert fx["headers"] == fx["body"]["headers"]  # Go copies the envelope's headers to AMQP
    assert fx["body"]["timestamp"].endswith("Z") and len(fx["body"]["timestamp"]) == 20


def test_go_writes_both_correlation_headers_whenever_it_has_a_correlation_id() -> None:
    for name in ("query", "reply", "query_error_reply"):
        headers = go_fixture(name)["headers"]
        assert headers["correlation-id"] == headers["x-correlation-id"] == CORR, name
    assert "correlation-id" not in go_fixture("event")["headers"]


def test_gos_html_safe_escapes_are_read_back_as_the_characters() -> None:
    fx = go_fixture("query_error_reply")
    assert b"\\u003cdeleted\\u003e \\u0026 archived" in fx["body_bytes"]
    envelope = codec.parse(fx["body_bytes"])
    assert envelope.payload["errorMessage"] == "order ORDER-456 not found: <deleted> & archived"


# -- each fixture decodes to the right model or error --------------------------------------------


def test_go_event_on_its_default_route_decodes_typed() -> None:
    fx = go_fixture("event")
    assert fx["routing_key"] == "evt.ORDER-1.OrderCreatedEvent"
    envelope, event = codec.decode(fx["body_bytes"], MESSAGES)
    assert isinstance(event, OrderCreatedEvent)
    assert (event.aggregate_id, event.sequence, event.order_id, event.amount) == (
        "ORDER-1",
        1,
        "ORDER-1",
        99.99,
    )
    assert event.source is None  # absent on the wire (Go's omitempty)
    assert envelope.correlation_id is None


def test_go_bridge_query_decodes_with_its_reply_queue_in_the_payload() -> None:
    fx = go_fixture("query")
    envelope, query = codec.decode(fx["body_bytes"], MESSAGES)
    assert isinstance(query, GetOrderQuery) and query.order_id == "ORDER-456"
    assert query.reply_to == "bridge.reply.1a2b3c4d"
    assert codec.reply_address(envelope, None) == "bridge.reply.1a2b3c4d"
    assert envelope.reply_to is None and "replyTo" not in fx["body"]
    assert envelope.correlation_id == CORR


def test_go_success_reply_decodes_as_the_reply_model() -> None:
    envelope = codec.parse(go_fixture("reply")["body_bytes"])
    reply = reply_model(envelope, "OrderReply", OrderReply, CORR)
    assert reply == OrderReply(order_id="ORDER-456", status="shipped", success=True)
    assert reply.error_code is None and reply.error_message is None  # absent, read as None


def test_go_query_error_reply_is_a_remote_error_with_code_and_message() -> None:
    envelope = codec.parse(go_fixture("query_error_reply")["body_bytes"])
    assert envelope.type == "GetOrderQueryError"
    with pytest.raises(RemoteError) as info:
        reply_model(envelope, "OrderReply", OrderReply, CORR)
    error = info.value
    assert error.code == "QUERY_HANDLER_ERROR"
    assert error.message == "order ORDER-456 not found: <deleted> & archived"
    assert error.reply_type == "GetOrderQueryError" and error.correlation_id == CORR


def test_an_error_reply_without_an_error_message_uses_gos_error_field() -> None:
    body = go_fixture("query_error_reply")["body"]
    body["payload"] = {"error": "boom", "success": False}
    with pytest.raises(RemoteError) as info:
        reply_model(codec.parse(marshal_envelope(body)), "OrderReply", OrderReply, CORR)
    assert (info.value.code, info.value.message) == ("error", "boom")


@pytest.mark.parametrize("success", ["false", 0, "0", "no"])
def test_a_success_the_model_reads_as_false_is_an_error_reply_too(success: object) -> None:
    """``"success": "false"`` (or 0) is no JSON ``false``, but the reply model reads it as False:
    the request still fails with the responder's error, never returns a reply saying it failed."""
    body = go_fixture("reply")["body"]
    body["payload"] = {
        **body["payload"],
        "success": success,
        "errorCode": "E7",
        "errorMessage": "x",
    }
    with pytest.raises(RemoteError) as info:
        reply_model(codec.parse(marshal_envelope(body)), "OrderReply", OrderReply, CORR)
    assert (info.value.code, info.value.message) == ("E7", "x")
    assert info.value.correlation_id == CORR


def test_a_success_reply_of_another_type_is_an_error_naming_both_types() -> None:
    body = go_fixture("reply")["body"]
    body["type"] = "CustomerReply"
    with pytest.raises(DecodeError) as info:
        reply_model(codec.parse(marshal_envelope(body)), "OrderReply", OrderReply, CORR)
    text = str(info.value)
    assert "'CustomerReply'" in text and "expected 'OrderReply'" in text and CORR in text
    assert info.value.message_type == "CustomerReply"


def test_a_reply_that_fails_validation_is_an_error_naming_the_field() -> None:
    body = go_fixture("reply")["body"]
    del body["payload"]["orderId"]
    with pytest.raises(DecodeError) as info:
        reply_model(codec.parse(marshal_envelope(body)), "OrderReply", OrderReply, CORR)
    assert "fails validation as OrderReply" in str(info.value)
    assert "orderId" in str(info.value)


# -- correlation ids: precedence and validation ---------------------------------------------------


def _body(correlation_id: object = None, headers: dict[str, Any] | None = None) -> bytes:
    envelope: dict[str, Any] = {"id": "m-1", "type": "OrderCreatedEvent"}
    if correlation_id is not None:
        envelope["correlationId"] = correlation_id
    if headers is not None:
        envelope["headers"] = headers
    envelope["payload"] = {"orderId": "o", "customerId": "c", "amount": 1}
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    ("body_id", "prop", "table", "body_headers", "expected"),
    [
        ("env", "prop", {"x-correlation-id": "x", "correlation-id": "plain"}, None, "env"),
        (None, "prop", {"x-correlation-id": "x", "correlation-id": "plain"}, None, "prop"),
        (None, None, {"x-correlation-id": "x", "correlation-id": "plain"}, None, "x"),
        (None, None, {"correlation-id": "plain"}, {"x-correlation-id": "body-x"}, "body-x"),
        (None, None, {"correlation-id": "plain"}, None, "plain"),
        (None, None, None, {"correlation-id": "body-plain"}, "body-plain"),
        (None, None, {"correlation-id": "plain"}, {"correlation-id": "body-plain"}, "plain"),
        (None, None, None, None, None),
    ],
)
def test_correlation_id_precedence(
    body_id: str | None,
    prop: str | None,
    table: dict[str, Any] | None,
    body_headers: dict[str, Any] | None,
    expected: str | None,
) -> None:
    """The envelope's correlationId, the AMQP property, x-correlation-id, correlation-id (each
    header from the AMQP table before the envelope's headers)."""
    properties = Properties(correlation_id=prop, headers=table)
    assert codec.parse(_body(body_id, body_headers), properties).correlation_id == expected


def test_without_properties_only_the_body_counts() -> None:
    body = _body(None, {"correlation-id": "body-plain"})
    assert codec.parse(body).correlation_id == "body-plain"
    assert codec.parse(_body("env")).correlation_id == "env"


BAD_IDS: list[object] = [
    "",
    7,
    1.5,
    True,
    ["a"],
    {"a": 1},
    "x" * 256,
    "é" * 128,  # 256 UTF-8 bytes
    b"bytes-from-a-longstr",
    "\ud800-lone-surrogate",
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_an_unusable_correlation_id_is_skipped_never_an_error(bad: object) -> None:
    """A value that is not a non-empty string of at most 255 UTF-8 bytes (what an AMQP property
    can carry back on the reply) is skipped in favour of the next source."""
    table = {"x-correlation-id": bad, "correlation-id": "plain"}
    assert codec.parse(_body(), Properties(headers=table)).correlation_id == "plain"
    assert codec.parse(_body(), Properties(headers={"correlation-id": bad})).correlation_id is None
    if isinstance(bad, (str, int, float, bool, list, dict)) and bad != "\ud800-lone-surrogate":
        body = _body(bad)
        assert codec.parse(body, Properties(correlation_id="prop")).correlation_id == "prop"


def test_the_longest_usable_correlation_id() -> None:
    longest = "y" * 255
    assert codec.parse(_body(longest)).correlation_id == longest
    assert codec.parse(_body("é" * 127)).correlation_id == "é" * 127  # 254 bytes


# -- nulls: left out as Go leaves them, read back either way --------------------------------------


def _has_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("OrderCreatedEvent", OrderCreatedEvent(order_id="o", customer_id="c", amount=1.0)),
        ("CreateOrderCommand", CreateOrderCommand(customer_id="c", amount=1)),
        ("GetOrderQuery", GetOrderQuery(order_id="o")),
        ("OrderReply", OrderReply(order_id="o")),
    ],
)
def test_what_mmate_writes_has_no_nulls(name: str, message: Model) -> None:
    body = json.loads(codec.encode(MESSAGES[name], message, app_id="s").body)
    assert not _has_null(body), body
    assert "correlationId" not in body and "replyTo" not in body


def test_a_reply_payload_has_exactly_the_keys_a_go_reply_has() -> None:
    """Python -> Go with the same fixture: our OrderReply's payload is Go's, key for key."""
    ours = codec.encode(
        MESSAGES["OrderReply"], OrderReply(order_id="ORDER-456", status="shipped"), app_id="s"
    )
    assert json.loads(ours.body)["payload"] == go_fixture("reply")["body"]["payload"]


def test_set_optional_fields_are_written() -> None:
    event = OrderCreatedEvent(order_id="o", customer_id="c", amount=1.0, source="billing")
    payload = json.loads(codec.encode(MESSAGES["OrderCreatedEvent"], event, app_id="s").body)
    assert payload["payload"]["source"] == "billing"
    reply = OrderReply(order_id="o", success=False, error_code="E", error_message="m")
    payload = json.loads(codec.encode(MESSAGES["OrderReply"], reply, app_id="s").body)
    assert (payload["payload"]["errorCode"], payload["payload"]["errorMessage"]) == ("E", "m")


class Nullables(Model):
    """A null that must still be written: where leaving it out would read back differently."""

    required_nullable: Annotated[int | None, Field(alias="requiredNullable")]
    defaulted: str | None = "fallback"
    left_out: Annotated[str | None, Field(alias="leftOut")] = None
    nested: Nested | None = None


class Nested(Model):
    inner: str | None = None
    count: int = 0


NULLABLES = MessageDef("Nullables", "command", Nullables, "1.0")


def test_a_required_or_non_none_default_field_is_still_written_as_null() -> None:
    message = Nullables(required_nullable=None, defaulted=None, nested=Nested())
    payload = json.loads(codec.encode(NULLABLES, message, app_id="s").body)["payload"]
    assert payload == {"requiredNullable": None, "defaulted": None, "nested": {"count": 0}}
    back = Nullables.model_validate(payload)
    assert back == message  # left out or null, it reads back as it was


@pytest.mark.parametrize(
    "payload",
    [
        {"orderId": "o", "customerId": "c", "amount": 1},
        {"orderId": "o", "customerId": "c", "amount": 1, "source": None},
    ],
    ids=["absent", "null"],
)
def test_decode_accepts_an_optional_field_absent_or_null(payload: dict[str, Any]) -> None:
    """Go leaves an unset optional field out; .NET serializers and older mmate write null."""
    body = json.dumps({"id": "m", "type": "OrderCreatedEvent", "payload": payload}).encode()
    _, event = codec.decode(body, MESSAGES)
    assert isinstance(event, OrderCreatedEvent) and event.source is None


def test_a_go_reply_with_nulls_for_its_error_fields_decodes() -> None:
    body = go_fixture("reply")["body"]
    body["payload"].update({"errorCode": None, "errorMessage": None})
    reply = reply_model(codec.parse(marshal_envelope(body)), "OrderReply", OrderReply, CORR)
    assert reply.error_code is None and reply.status == "shipped"


# -- the same on the in-memory broker: a Go peer through the transport seam -----------------------


async def _raw_channel(broker: MemoryBroker) -> Channel:
    link = await broker.backend.connect(
        broker.url, name="go-peer", heartbeat=0, ssl_context=None, timeout=5
    )
    return await link.channel(confirms=True)


class Responder:
    def __init__(self, app: App) -> None:
        self.seen: list[str | None] = []

        class Handlers(app.handlers):  # type: ignore[name-defined,misc]
            async def handle_get_order_query(
                inner, message: GetOrderQuery, ctx: MessageContext
            ) -> OrderReply:
                self.seen.append(ctx.correlation_id)
                if message.order_id == "missing":
                    raise mmate.PermanentError("no such order")
                return OrderReply(order_id=message.order_id, status="packed")

            async def handle_create_order_command(
                inner, message: CreateOrderCommand, ctx: MessageContext
            ) -> None:
                return None

            async def handle_order_created_event(
                inner, message: OrderCreatedEvent, ctx: MessageContext
            ) -> None:
                return None

        self.handlers = Handlers()


@pytest.mark.parametrize("where", ["plain-header", "x-header", "property"])
async def test_a_go_query_correlated_only_by_a_header_gets_its_reply_correlated(
    where: str,
) -> None:
    """Go's plain correlation-id header (or x-correlation-id, or only the AMQP property) is enough:
    the handler sees it and the reply carries it in the envelope and the AMQP property."""
    broker = MemoryBroker()
    app = make_app()
    fx = go_fixture("query")
    body = fx["body"]
    del body["correlationId"]
    headers = {k: v for k, v in fx["headers"].items() if "correlation" not in k}
    properties = Properties(headers=headers, **fx["properties"])
    if where == "plain-header":
        headers["correlation-id"] = "go-plain"
    elif where == "x-header":
        headers["x-correlation-id"] = "go-plain"
    else:
        properties = replace(properties, correlation_id="go-plain")
    body["headers"] = headers
    reply_queue = "bridge.reply.0badc0de"
    body["payload"]["replyTo"] = reply_queue
    try:
        go = await _raw_channel(broker)
        await go.declare_queue(reply_queue, durable=False, exclusive=False, auto_delete=False)
        responder = Responder(app)
        async with mmate.Client(broker.url, service="order-service") as server:
            await server.declare(app.order_service)
            await server.serve(responder.handlers)
            await go.publish(
                marshal_envelope(body),
                properties,
                exchange=app.queries,
                routing_key="qry.GetOrderQuery",
            )
            for _ in range(200):
                if broker.message_count(reply_queue):
                    break
                await asyncio.sleep(0.01)
        [reply] = broker.queue(reply_queue).messages
    finally:
        broker.close()
    assert responder.seen == ["go-plain"]
    assert json.loads(reply.body)["correlationId"] == "go-plain"
    assert reply.properties.correlation_id == "go-plain"
    assert reply.properties.headers is not None
    assert reply.properties.headers["x-correlation-id"] == "go-plain"


async def _go_responder(broker: MemoryBroker, app: App, answer: str) -> Channel:
    """A Go responder on the order queue: reads payload.replyTo and the envelope's correlationId
    and answers with the fixture ``answer`` (correlated only by Go's headers when asked)."""
    go = await _raw_channel(broker)

    def on_query(delivery: Delivery) -> None:
        query = json.loads(delivery.body)
        fx = go_fixture(answer.removesuffix("-headers-only").removesuffix("-wrong-type"))
        body = fx["body"]
        headers = dict(fx["headers"])
        if answer.endswith("-wrong-type"):
            body["type"] = headers["message-type"] = headers["x-message-type"] = "CustomerReply"
        if answer.endswith("-headers-only"):
            del body["correlationId"]
            headers.pop("x-correlation-id")
            headers["correlation-id"] = query["correlationId"]
        else:
            body["correlationId"] = query["correlationId"]
            headers["correlation-id"] = headers["x-correlation-id"] = query["correlationId"]
        body["headers"] = headers
        props = Properties(headers=headers, **fx["properties"])

        async def send() -> None:
            await go.publish(
                marshal_envelope(body),
                props,
                exchange="",
                routing_key=query["payload"]["replyTo"],
            )
            await delivery.channel.ack(delivery.delivery_tag)

        asyncio.get_running_loop().create_task(send())

    await go.consume(app.order_queue, on_query, no_ack=False)
    return go


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("reply", "typed"),
        ("reply-headers-only", "typed"),
        ("query_error_reply", "remote-error"),
        ("reply-wrong-type", "decode-error"),
    ],
)
async def test_a_requester_against_a_go_responder_in_memory(answer: str, outcome: str) -> None:
    broker = MemoryBroker()
    app = make_app()
    try:
        async with mmate.Client(broker.url, service="storefront") as client:
            await client.declare(app.order_service)
            await _go_responder(broker, app, answer)
            request = app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="ORDER-456"), timeout=5
            )
            if outcome == "typed":
                reply = await request
                assert isinstance(reply, OrderReply) and reply.status == "shipped"
            elif outcome == "remote-error":
                with pytest.raises(RemoteError) as info:
                    await request
                assert info.value.code == "QUERY_HANDLER_ERROR"
                assert info.value.reply_type == "GetOrderQueryError"
                assert info.value.query_type == "GetOrderQuery"
                assert str(info.value).startswith("GetOrderQuery request ")
            else:
                with pytest.raises(DecodeError) as decode:
                    await request
                assert decode.value.message_type == "CustomerReply"
                assert "GetOrderQuery request" in str(decode.value)
    finally:
        broker.close()
