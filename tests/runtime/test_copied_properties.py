"""Republished messages keep their properties, minus what the broker would refuse."""

from __future__ import annotations

from mmate._transport.base import Properties
from mmate._wire.headers import DROPPED, copied_properties, encodable


def test_copied_properties_keep_the_original_ones_with_new_headers() -> None:
    original = Properties(
        content_type="application/json",
        delivery_mode=2,
        priority=3,
        correlation_id="c-1",
        reply_to="r",
        expiration="5000",
        message_id="m-1",
        type="OrderCreatedEvent",
        app_id="order-service",
        headers={"a": "1"},
    )
    copy = copied_properties(original, {"b": "2"})
    assert copy.headers == {"b": "2"}
    assert copy.expiration is None  # a TTL must not expire a message the runtime is moving
    for name in ("content_type", "delivery_mode", "priority", "correlation_id", "reply_to"):
        assert getattr(copy, name) == getattr(original, name)
    assert (copy.message_id, copy.type, copy.app_id) == (
        "m-1",
        "OrderCreatedEvent",
        "order-service",
    )


def test_user_id_is_never_copied() -> None:
    # RabbitMQ closes the channel when user_id is not the publishing connection's user, and a
    # message from a Go service carries its own user.
    original = Properties(user_id="go-service", message_id="m-1")
    assert copied_properties(original, {}).user_id is None


def test_a_missing_message_id_is_filled_in() -> None:
    assert copied_properties(Properties(), {}, message_id="m-2").message_id == "m-2"


def test_headers_that_cannot_go_back_on_the_wire_are_dropped_and_named() -> None:
    props = Properties(
        message_id="m" * 300,  # over AMQP's 255 bytes for a short string: left out
        headers={
            "kept": "yes",
            "k" * 200: 1,  # a key over 128 bytes
            "huge": 2**70,  # an integer beyond 64 bits
            "raw": b"\xff\xfe not utf-8",  # kept, decoded with replacement characters
        },
    )
    out = encodable(props)
    headers = out.headers or {}
    assert headers["kept"] == "yes"
    assert headers["raw"] == "\ufffd\ufffd not utf-8"
    assert "huge" not in headers and "k" * 200 not in headers
    assert "'huge'" in headers[DROPPED] and "'kkkk" in headers[DROPPED]
    assert out.message_id is None
    plain = Properties(message_id="m-1", headers={"a": 1})
    assert encodable(plain) is plain  # the usual case costs nothing


def test_cc_and_bcc_are_never_copied_and_are_named() -> None:
    # Sender-selected distribution routes the one publish that carries it: a retry or dead
    # letter that kept CC would be routed again to the queues it names (the origin among them).
    original = Properties(headers={"CC": ["q"], "BCC": ["other"], "kept": "yes"})
    headers = copied_properties(original, original.headers or {}).headers or {}
    assert "CC" not in headers and "BCC" not in headers and headers["kept"] == "yes"
    assert headers[DROPPED] == "CC, BCC"


def test_cluster_id_is_never_copied() -> None:
    # AMQP 0-9-1 requires cluster_id to be empty; RabbitMQ delivers one a producer set, but a
    # client refuses to send it again, so a move that kept it would fail on every try.
    assert copied_properties(Properties(cluster_id="c1"), {}).cluster_id is None
