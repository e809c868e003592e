"""The fast frame decoder gives exactly pamqp's result, or leaves the frame to pamqp: on generated
deliveries, confirms, bodies and properties (every table value type pamqp writes), on Mmate's own
properties, and on random and mutated bytes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pamqp.frame
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmate._transport.aiormq import fast_frames, frames
from mmate._transport.aiormq.properties import to_pamqp
from mmate._wire import envelope as codec
from pamqp import body, header
from pamqp.commands import Basic
from sample_app import MESSAGES, CreateOrderCommand

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PAMQP = getattr(pamqp.frame.unmarshal, "__wrapped__", pamqp.frame.unmarshal)
"""pamqp's own decoder (mmate wraps it once its aiormq backend is used)."""

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**6, min_value=0),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
short = st.text(max_size=40)
properties = st.builds(
    Basic.Properties,
    content_type=st.none() | short,
    content_encoding=st.none() | short,
    headers=st.none() | st.dictionaries(st.text(max_size=20), values, max_size=8),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 255),
    correlation_id=st.none() | short,
    reply_to=st.none() | short,
    expiration=st.none() | short,
    message_id=st.none() | short,
    timestamp=st.none() | st.datetimes(timezones=st.just(UTC)),
    message_type=st.none() | short,
    user_id=st.none() | short,
    app_id=st.none() | short,
)


def _frame(props: Basic.Properties, body_size: int = 481, channel: int = 1) -> bytes:
    return pamqp.frame.marshal(header.ContentHeader(0, body_size, props), channel)


def _same(fast: tuple[int, int, Any], slow: tuple[int, int, Any]) -> None:
    assert fast[:2] == slow[:2]
    a, b = fast[2], slow[2]
    assert type(a) is type(b)
    if isinstance(a, header.ContentHeader):
        assert (a.class_id, a.weight, a.body_size) == (b.class_id, b.weight, b.body_size)
        a, b = a.properties, b.properties
    names = getattr(a, "__slots__", None) or vars(a)
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert type(x) is type(y) and repr(x) == repr(y), name  # repr: -0.0 and nested types


short_strings = st.text(max_size=60).filter(lambda t: len(t.encode()) <= 255)
methods = (
    st.builds(
        Basic.Deliver,
        consumer_tag=short_strings,
        delivery_tag=st.integers(0, 2**63 - 1),
        redelivered=st.booleans(),
        exchange=st.from_regex(r"\A[a-zA-Z0-9_.:-]{0,60}\Z"),  # pamqp validates names
        routing_key=short_strings,
    )
    | st.builds(Basic.Ack, delivery_tag=st.integers(0, 2**63 - 1), multiple=st.booleans())
    | st.builds(
        Basic.Nack,
        delivery_tag=st.integers(0, 2**63 - 1),
        multiple=st.booleans(),
        requeue=st.booleans(),
    )
    | st.builds(Basic.Reject, delivery_tag=st.integers(0, 2**63 - 1), requeue=st.booleans())
)


@FUZZ
@given(methods, st.integers(0, 65535))
def test_deliveries_and_confirms_decode_as_pamqp_decodes_them(method: Any, channel: int) -> None:
    frame = pamqp.frame.marshal(method, channel)
    if isinstance(method, Basic.Reject):  # not one of the fast shapes: left to pamqp
        with pytest.raises(fast_frames.Unusual):
            fast_frames.decode(frame)
        return
    _same(fast_frames.decode(frame), PAMQP(frame))


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.integers(0, 65535))
def test_bodies_decode_as_pamqp_decodes_them(payload: bytes, channel: int) -> None:
    frame = pamqp.frame.marshal(body.ContentBody(payload), channel)
    _same(fast_frames.decode(frame), PAMQP(frame))


@FUZZ
@given(methods, st.data())
def test_mutated_method_frames_are_decoded_as_pamqp_does_or_left_to_it(
    method: Any, data: st.DataObject
) -> None:
    frame = bytearray(pamqp.frame.marshal(method, 1))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(7, len(frame) - 2))
        frame[at] = data.draw(st.integers(0, 255))
    _agrees_or_leaves(bytes(frame))


@FUZZ
@given(properties, st.integers(0, 2**40), st.integers(0, 65535))
def test_generated_properties_decode_as_pamqp_decodes_them(
    props: Basic.Properties, body_size: int, channel: int
) -> None:
    try:
        frame = _frame(props, body_size, channel)
    except (TypeError, ValueError, OverflowError, struct.error):
        # a value pamqp cannot write (an over-long string, a float beyond float32, ...)
        return
    try:
        slow = PAMQP(frame)
    except Exception:  # pamqp cannot read back what it wrote (e.g. an old timestamp)
        with pytest.raises(Exception):  # noqa: B017 - then neither may the fast decoder
            fast_frames.decode(frame)
        return
    _same(fast_frames.decode(frame), slow)


def test_mmate_s_own_properties_decode_as_pamqp_decodes_them() -> None:
    encoded = codec.encode(
        MESSAGES["CreateOrderCommand"],
        CreateOrderCommand(customer_id="c", amount=Decimal("1.5")),
        app_id="svc",
        correlation_id="corr-1",
        reply_to="reply.q",
        expiration_ms=5000,
        priority=3,
    )
    frame = _frame(to_pamqp(encoded.properties))
    decoded = fast_frames.decode(frame)
    _same(decoded, PAMQP(frame))
    assert decoded[2].properties.headers["x-message-type"] == "CreateOrderCommand"


def test_broker_shaped_death_headers_decode_as_pamqp_decodes_them() -> None:
    death = {
        "count": 3,
        "reason": "rejected",
        "queue": "q",
        "time": datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
        "exchange": "",
        "routing-keys": ["q"],
    }
    props = Basic.Properties(headers={"x-death": [death], "x-first-death-queue": "q"})
    frame = _frame(props)
    _same(fast_frames.decode(frame), PAMQP(frame))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_are_decoded_as_pamqp_does_or_left_to_it(noise: bytes) -> None:
    for kind in (1, 2, 3, 8):
        frame = bytes((kind, 0, 1)) + len(noise).to_bytes(4, "big") + noise + b"\xce"
        _agrees_or_leaves(frame)
        _agrees_or_leaves(frame[:-1] + b"\x00")  # a wrong end byte


@FUZZ
@given(properties, st.data())
def test_mutated_frames_are_decoded_as_pamqp_does_or_left_to_it(
    props: Basic.Properties, data: st.DataObject
) -> None:
    try:
        frame = bytearray(_frame(props))
    except (TypeError, ValueError, OverflowError, struct.error):
        return
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(7, len(frame) - 2))  # the payload, not the frame's own header
        frame[at] = data.draw(st.integers(0, 255))
    _agrees_or_leaves(bytes(frame))


def _agrees_or_leaves(frame: bytes) -> None:
    try:
        fast = fast_frames.decode(frame)
    except Exception:
        return  # left to pamqp: whatever it does is what happened before
    _same(fast, PAMQP(frame))  # never accepts what pamqp refuses, never reads it differently


def test_nesting_beyond_the_limit_is_left_to_pamqp() -> None:
    table: dict[str, Any] = {"leaf": "x"}
    for _ in range(fast_frames.MAX_DEPTH + 1):
        table = {"t": table}
    frame = _frame(Basic.Properties(headers=table))
    with pytest.raises(fast_frames.Unusual):
        fast_frames.decode(frame)
    assert PAMQP(frame)[2].properties.headers == table


PAMQP_MARSHAL = getattr(pamqp.frame.marshal, "__wrapped__", pamqp.frame.marshal)
exchanges = st.from_regex(r"\A[a-zA-Z0-9_.:-]{0,127}\Z") | st.text(max_size=130)


def _publish(exchange: str, **fields: Any) -> Basic.Publish:
    publish = Basic.Publish(**fields)
    publish.exchange = exchange  # after __init__, which validates: pamqp's marshal validates too
    return publish


outgoing = (
    st.builds(
        _publish,
        exchange=exchanges,
        routing_key=st.text(max_size=300),
        mandatory=st.booleans(),
        immediate=st.booleans(),
    )
    | st.builds(Basic.Ack, delivery_tag=st.integers(0, 2**63 - 1), multiple=st.booleans())
    | st.builds(body.ContentBody, st.binary(max_size=300))
)


def _marshal(marshal: Any, value: Any, channel: int) -> bytes | str:
    try:
        return bytes(marshal(value, channel))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@FUZZ
@given(outgoing, st.integers(0, 65535))
def test_frames_are_encoded_to_pamqp_s_bytes_or_fail_with_its_error(
    value: Any, channel: int
) -> None:
    wrapped = frames.fast(PAMQP_MARSHAL)
    expected = _marshal(PAMQP_MARSHAL, value, channel)
    assert _marshal(wrapped, value, channel) == expected
    assert _marshal(wrapped, value, channel) == expected  # again: the exchange is known now


def test_a_publish_to_an_exchange_pamqp_never_accepted_is_left_to_pamqp() -> None:
    publish = Basic.Publish(exchange="never.seen.before.x1", routing_key="k")
    assert fast_frames.encode(publish, 1) is None
    invalid = Basic.Publish(exchange="ok", routing_key="k")
    invalid.exchange = "not valid!"  # pamqp refuses it when marshalling
    with pytest.raises(ValueError, match="Invalid value for exchange"):
        frames.fast(PAMQP_MARSHAL)(invalid, 1)
    assert fast_frames.encode(invalid, 1) is None  # a refused name is never remembered
