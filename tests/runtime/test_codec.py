"""The envelope codec against docs/interop.md (envelope, base fields, headers), both directions,
with the Go-shaped fixtures."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from conftest import go_body, go_fixture
from mmate import Client, DecodeError, MmateError
from mmate._transport.aiormq.properties import from_pamqp, to_pamqp
from mmate._wire import envelope as codec
from pamqp.base import BasicProperties
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from sample_app import (
    MESSAGES,
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderReply,
    Region,
    make_app,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ENVELOPE_ONLY = {"id", "type", "timestamp", "correlationId"}


def event() -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id="ORDER-1", sequence=3, order_id="ORDER-1", customer_id="C-1", amount=9.5
    )


# -- encoding: what a Go reader sees ------------------------------------------------------------


def test_event_envelope_has_the_shape_of_section_1_and_2() -> None:
    enc = codec.encode(MESSAGES["OrderCreatedEvent"], event(), app_id="order-service")
    body = json.loads(enc.body)
    assert UUID4.match(body["id"]) and body["id"] == enc.message_id
    assert body["type"] == "OrderCreatedEvent"
    assert body["timestamp"].endswith("Z")
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert "correlationId" not in body  # omitted when empty
    assert "replyTo" not in body
    assert body["payload"] == {
        "aggregateId": "ORDER-1",
        "sequence": 3,
        "orderId": "ORDER-1",
        "customerId": "C-1",
        "amount": 9.5,
        "region": "eu",
    }
    assert not ENVELOPE_ONLY & body["payload"].keys()


def test_event_headers_and_properties_of_section_3() -> None:
    enc = codec.encode(
        MESSAGES["OrderCreatedEvent"], event(), app_id="order-service", correlation_id="c-1"
    )
    body = json.loads(enc.body)
    headers = body["headers"]
    assert headers == {
        "x-message-type": "OrderCreatedEvent",
        "x-message-kind": "event",
        "x-source": "mmate-py",
        "x-schema-version": "1.0",
        "x-message-id": enc.message_id,
        "x-correlation-id": "c-1",
        "x-aggregate-id": "ORDER-1",
        "x-sequence": "3",
    }
    assert body["correlationId"] == "c-1"
    p = enc.properties
    assert p.headers == headers  # copied into the AMQP header table
    assert p.message_id == enc.message_id
    assert p.correlation_id == "c-1"
    assert p.type == "OrderCreatedEvent"
    assert p.app_id == "order-service"
    assert p.content_type == "application/json"
    assert p.content_encoding == "utf-8"
    assert p.delivery_mode == 2
    assert p.timestamp is not None and p.timestamp.tzinfo is not None
    assert p.expiration is None and p.priority is None


def test_decimal_and_non_persistent() -> None:
    cmd = CreateOrderCommand(customer_id="C", amount=Decimal("12.50"))
    enc = codec.encode(MESSAGES["CreateOrderCommand"], cmd, app_id="s", persistent=False)
    assert json.loads(enc.body)["payload"] == {
        "targetService": "",
        "customerId": "C",
        "amount": 12.5,
    }
    assert enc.properties.delivery_mode == 1


def test_caller_headers_are_added_but_cannot_overwrite_envelope_headers() -> None:
    enc = codec.encode(
        MESSAGES["OrderCreatedEvent"],
        event(),
        app_id="s",
        headers={"tenant": "t-1", "x-message-type": "Forged", "n": 3},
    )
    headers = json.loads(enc.body)["headers"]
    assert headers["tenant"] == "t-1" and headers["n"] == 3
    assert headers["x-message-type"] == "OrderCreatedEvent"
    assert enc.properties.headers == headers


def test_query_carries_reply_address_in_payload_property_and_top_level() -> None:
    query = codec.with_reply_to(
        MESSAGES["GetOrderQuery"], GetOrderQuery(order_id="o"), "svc.reply.0a1b2c3d"
    )
    enc = codec.encode(
        MESSAGES["GetOrderQuery"],
        query,
        app_id="s",
        reply_to="svc.reply.0a1b2c3d",
        correlation_id="k",
    )
    body = json.loads(enc.body)
    assert body["payload"]["replyTo"] == "svc.reply.0a1b2c3d"  # where a Go responder looks
    assert body["replyTo"] == "svc.reply.0a1b2c3d"
    assert enc.properties.reply_to == "svc.reply.0a1b2c3d"


def test_error_reply_is_a_raw_envelope_even_when_the_model_has_required_fields() -> None:
    enc = codec.encode(
        MESSAGES["OrderReply"], codec.error_payload("E1", "boom"), app_id="s", correlation_id="k"
    )
    body = json.loads(enc.body)
    assert body["payload"] == {"success": False, "errorCode": "E1", "errorMessage": "boom"}
    assert body["headers"]["x-success"] == "false"
    assert codec.reply_failure(codec.parse(enc.body)) == ("E1", "boom")


def test_reply_success_header() -> None:
    enc = codec.encode(MESSAGES["OrderReply"], OrderReply(order_id="o"), app_id="s")
    assert json.loads(enc.body)["headers"]["x-success"] == "true"


def test_plan_is_computed_once_per_contract() -> None:
    assert codec.plan(MESSAGES["OrderCreatedEvent"]) is codec.plan(MESSAGES["OrderCreatedEvent"])


def _pamqp_bytes(props: Basic.Properties) -> bytes:
    """What pamqp's own encoder writes for the same property values."""
    plain = Basic.Properties(**{name: getattr(props, name) for name in Basic.Properties.__slots__})
    return BasicProperties.marshal(plain)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"correlation_id": "c-1", "reply_to": "svc.reply.0a1b2c3d", "expiration_ms": 1500},
        {"priority": 0, "persistent": False, "correlation_id": "", "reply_to": ""},
        {"headers": {"tenant": "t-\u00fc", "n": 3, "big": 2**40, "neg": -70000, "f": 1.25}},
        {"headers": {"yes": True, "no": False, "u16": 65535, "x-message-type": "Forged"}},
    ],
)
def test_properties_marshal_to_the_bytes_pamqp_writes(options: dict[str, Any]) -> None:
    ev = OrderCreatedEvent(
        aggregate_id="ORDER-\u00e9", sequence=2**40, order_id="O", customer_id="C", amount=1
    )
    enc = codec.encode(MESSAGES["OrderCreatedEvent"], ev, app_id="order-service", **options)
    props = to_pamqp(enc.properties)  # what the aiormq backend publishes
    assert props.marshal() == _pamqp_bytes(props)
    props.headers["later"] = "changed after encoding"  # marshalled when published
    props.priority = 5
    assert props.marshal() == _pamqp_bytes(props)
    frame = ContentHeader(body_size=len(enc.body), properties=props).marshal()
    decoded = ContentHeader()
    decoded.unmarshal(frame)
    assert decoded.properties.headers == props.headers
    assert decoded.properties.message_id == enc.message_id
    assert from_pamqp(decoded.properties).type == enc.properties.type


def test_unusual_property_values_are_left_to_pamqp() -> None:
    enc = codec.encode(MESSAGES["OrderCreatedEvent"], event(), app_id="s", correlation_id="c")
    props = to_pamqp(enc.properties)
    props.timestamp = datetime(2024, 1, 2, 3, 4, 5)  # naive: pamqp assumes UTC
    props.headers["k" * 200] = "v"  # pamqp truncates keys over 128 bytes
    assert props.marshal() == _pamqp_bytes(props)
    props.correlation_id = "c" * 300  # over a short string's 255 bytes
    with pytest.raises(TypeError):
        props.marshal()


def test_message_ids_are_fresh_uuid4_and_timestamps_track_the_clock() -> None:
    ids = {codec.new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for mid in list(ids)[:200]:
        assert UUID4.match(mid) and uuid.UUID(mid).version == 4
    before = datetime.now(UTC)
    enc = codec.encode(MESSAGES["OrderCreatedEvent"], event(), app_id="s")
    after = datetime.now(UTC)
    stamp = datetime.fromisoformat(json.loads(enc.body)["timestamp"])
    assert before - timedelta(milliseconds=1) <= stamp <= after
    assert enc.properties.timestamp == stamp.replace(microsecond=0)


# -- client-level publish options (no broker needed) --------------------------------------------


def _client() -> Client:
    return Client("amqp://guest:secret@127.0.0.1:5672/", service="order-service")


def test_options_become_real_amqp_properties() -> None:
    app = make_app("unit")
    route = app.order_service.publishes["OrderCreatedEvent"]
    out = _client()._outbox.encode(
        route,
        event(),
        "order.eu.created",
        {
            "ttl": timedelta(seconds=1.5),
            "priority": 5,
            "persistent": False,
            "reply_to": "r",
            "correlation_id": "c",
        },
    )
    p = out.encoded.properties
    assert (p.expiration, p.priority, p.delivery_mode, p.reply_to, p.correlation_id) == (
        "1500",
        5,
        1,
        "r",
        "c",
    )
    assert (out.exchange, out.routing_key) == (app.events, "order.eu.created")


def test_exchange_and_routing_key_overrides_and_template_fill() -> None:
    app = make_app("unit")
    route = app.order_service.publishes["OrderCreatedEvent"]
    client = _client()
    out = client._outbox.encode(route, event(), "ignored", {"exchange": "x", "routing_key": "rk"})
    assert (out.exchange, out.routing_key) == ("x", "rk")
    us = event().model_copy(update={"region": Region.US})
    assert client._outbox.encode(route, us, "", {}).routing_key == "order.us.created"


@pytest.mark.parametrize("option", ["delay", "schedule_at"])
def test_delay_enters_the_cascade_never_ignored(option: str) -> None:
    app = make_app("unit")
    route = app.order_service.publishes["OrderCreatedEvent"]
    value = datetime.now(UTC) + timedelta(seconds=5) if option == "schedule_at" else 5
    out = _client()._outbox.encode(route, event(), "k", {option: value})
    assert out.exchange == "mmate.delay.2"  # 5 s = 101: highest bit 2
    assert out.routing_key.startswith("0." * 25 + "1.0.1.")
    headers = out.encoded.properties.headers
    assert headers["x-mmate-delay-exchange"] == route.exchange
    assert headers["x-mmate-delay-routing-key"] == "k"


def test_unknown_option_is_an_error() -> None:
    app = make_app("unit")
    with pytest.raises(MmateError, match="unknown publish options: colour"):
        _client()._outbox.encode(
            app.order_service.publishes["OrderCreatedEvent"], event(), "k", {"colour": 1}
        )


# -- decoding what Go writes --------------------------------------------------------------------


def test_go_event_fixture_decodes_into_the_model() -> None:
    fx = go_fixture("event")
    env, model = codec.decode(go_body(fx), MESSAGES)
    assert isinstance(model, OrderCreatedEvent)
    assert (
        model.aggregate_id,
        model.sequence,
        model.order_id,
        model.customer_id,
        model.amount,
    ) == (
        "ORDER-1",
        1,
        "ORDER-1",
        "C-1",
        99.99,
    )
    assert model.region is Region.EU  # absent in Go's payload: the default
    assert env.id == "c5090760-3f7e-45a6-a8bf-75a3ca89b21c"
    assert env.timestamp == datetime(2026, 11, 28, 17, 34, 7, tzinfo=UTC)  # second precision
    assert env.correlation_id is None
    assert env.headers["x-source"] == "mmate-go"


def test_go_command_fixture_with_unknown_keys() -> None:
    env, model = codec.decode(go_body(go_fixture("command")), MESSAGES)
    assert isinstance(model, CreateOrderCommand)
    assert model.amount == Decimal("149.5") and model.target_service == ""
    assert env.correlation_id == "corr-20261128173500"


def test_go_query_reply_address_comes_from_the_payload() -> None:
    env, model = codec.decode(go_body(go_fixture("query")), MESSAGES)
    assert isinstance(model, GetOrderQuery)
    assert env.reply_to is None
    assert codec.reply_address(env, None) == "bridge.reply.1a2b3c4d"
    assert codec.reply_address(env, "prop") == "bridge.reply.1a2b3c4d"  # payload wins


def test_reply_address_falls_back_to_property_then_top_level() -> None:
    env = codec.parse(
        b'{"id":"1","type":"GetOrderQuery","replyTo":"top","payload":{"orderId":"o"}}'
    )
    assert codec.reply_address(env, "prop") == "prop"
    assert codec.reply_address(env, None) == "top"


def test_go_reply_and_error_reply_fixtures() -> None:
    env, model = codec.decode(go_body(go_fixture("reply")), MESSAGES)
    assert isinstance(model, OrderReply) and model.status == "shipped" and model.success
    assert codec.reply_failure(env) is None
    err = codec.parse(go_body(go_fixture("error_reply")))
    assert codec.reply_failure(err) == ("NOT_FOUND", "order ORDER-456 does not exist")


def test_round_trip() -> None:
    enc = codec.encode(MESSAGES["OrderCreatedEvent"], event(), app_id="s")
    env, model = codec.decode(enc.body, MESSAGES)
    assert model == event()
    assert env.id == enc.message_id


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-28T17:34:07Z",
        "2026-11-28T17:34:07.123Z",
        "2026-11-28T17:34:07.123456789Z",
        "2026-11-28T19:34:07+02:00",
    ],
)
def test_any_rfc3339_timestamp_is_accepted(stamp: str) -> None:
    env = codec.parse(
        json.dumps({"id": "1", "type": "T", "timestamp": stamp, "payload": {}}).encode()
    )
    assert env.timestamp is not None
    assert env.timestamp.astimezone(UTC).replace(microsecond=0) == datetime(
        2026, 11, 28, 17, 34, 7, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not an envelope"),
        (b'{"id": "1", "payload": {}}', "no type"),
        (b'{"id": "1", "type": "Nope", "payload": {}}', "unknown message type 'Nope'"),
        (b'{"id": "1", "type": "CreateOrderCommand", "payload": []}', "not an object"),
        (
            b'{"id": "1", "type": "CreateOrderCommand", "payload": {"customerId": ""}}',
            "fails validation",
        ),
    ],
)
def test_poison_bodies_raise_decode_error(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode(body, MESSAGES)


def test_validation_error_names_type_and_id() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(
            b'{"id": "m-1", "type": "CreateOrderCommand", "payload": {"customerId": "c"}}', MESSAGES
        )
    assert info.value.message_type == "CreateOrderCommand" and info.value.message_id == "m-1"
    assert "amount" in str(info.value)


def test_new_id_is_uuid4() -> None:
    value = codec.new_id()
    assert UUID4.match(value) and uuid.UUID(value).version == 4


def test_reply_to_option_fills_an_empty_payload_reply_to_but_never_overrides_it() -> None:
    app = make_app("unit")
    route = app.order_service.publishes["CreateOrderCommand"]
    client = _client()
    out = client._outbox.encode(
        route, CreateOrderCommand(customer_id="c", amount=1), "k", {"reply_to": "r1"}
    )
    body = json.loads(out.encoded.body)
    assert body["payload"]["replyTo"] == "r1" and body["replyTo"] == "r1"
    assert out.encoded.properties.reply_to == "r1"
    own = CreateOrderCommand(customer_id="c", amount=1, reply_to="mine")
    out = client._outbox.encode(route, own, "k", {"reply_to": "r2"})
    assert json.loads(out.encoded.body)["payload"]["replyTo"] == "mine"


@pytest.mark.parametrize(
    ("depth", "accepted"), [(1, True), (150, True), (255, False), (5000, False)]
)
def test_the_nesting_limit_of_the_decoder(depth: int, accepted: bool) -> None:
    """Nesting well within the limit parses; beyond it (about 200 levels) is a DecodeError,
    never a RecursionError."""
    payload = "[" * depth + "]" * depth
    body = (
        '{"id":"m","type":"CreateOrderCommand","headers":{},"payload":{"customerId":"c",'
        f'"amount":"1","deep":{payload}}}}}'
    ).encode()
    if accepted:
        assert codec.parse(body).payload["customerId"] == "c"
    else:
        with pytest.raises(DecodeError, match="JSON"):
            codec.parse(body)


@pytest.mark.parametrize("depth", [0, 1, 2, 150, 195])
@pytest.mark.parametrize("number", ["1e400", "-1e400", "9" * 400 + ".5"])
def test_a_number_beyond_float64_is_refused_at_any_depth(depth: int, number: str) -> None:
    """In an array or an object, in the payload or the headers, however deep the parser lets it
    be: not JSON of the wire format (Go refuses it); finite neighbours are fine."""
    deep = "[" * depth + f'{{"x":[1.5,"s",null,true,{number}]}}' + "]" * depth
    for where in ("payload", "headers"):
        body = (
            '{"id":"m","type":"CreateOrderCommand","headers":{"h":"v"},"payload":{"customerId":'
            '"c","amount":"1"}}'
        ).replace(f'"{where}":{{', f'"{where}":{{"deep":{deep},', 1)
        with pytest.raises(DecodeError, match="too large for a float64"):
            codec.parse(body.encode())
        assert codec.parse(body.replace(number, "1e300").encode()).type == "CreateOrderCommand"
