"""A requester against a Go responder on the real broker. The Go peer is raw aiormq: it consumes
the query queue, reads the reply address from ``payload.replyTo`` and answers with the exact bytes
of a Go-shaped fixture (correlated as Go does: the envelope's ``correlationId`` and both
correlation headers). A Go error reply (``<Query>Error``) raises ``RemoteError``, a success reply
of the wrong type raises ``DecodeError``; both name the query and arrive long before the request's
timeout (the test would see ``RequestTimeout`` otherwise); neither hands over a model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiormq
import mmate
import pytest
from aiormq.abc import DeliveredMessage
from broker_ctl import vhost_fixture, vhost_url
from conftest import go_fixture
from go_json import marshal_envelope
from mmate import DecodeError, RemoteError
from sample_app import App, GetOrderQuery, OrderReply, make_app

pytestmark = pytest.mark.broker
__all__ = ["vhost_fixture"]  # the fixture `vhost`: a vhost per test, deleted afterwards

TIMEOUT = 30.0  # far above the time a reply takes: reaching it fails the test (RequestTimeout)


def go_answer(fixture: str, query: dict[str, Any], reply_type: str | None) -> tuple[bytes, Any]:
    """Go's reply to ``query``: the fixture's bytes with the query's correlation id (and, when
    asked, another type), written by the model of Go's encoding/json."""
    fx = go_fixture(fixture)
    body = fx["body"]
    correlation_id = query["correlationId"]
    headers = dict(fx["headers"])
    headers["correlation-id"] = headers["x-correlation-id"] = correlation_id
    if reply_type is not None:
        body["type"] = headers["message-type"] = headers["x-message-type"] = reply_type
    body["correlationId"] = correlation_id
    body["headers"] = headers
    properties = aiormq.spec.Basic.Properties(headers=headers, **fx["properties"])
    return marshal_envelope(body), properties


async def go_responder(
    url: str, app: App, fixture: str, reply_type: str | None = None
) -> AsyncIterator[list[str]]:
    """Serve ``app.order_queue`` as a Go responder would; yields the reply addresses used."""
    connection = await aiormq.connect(url)
    addresses: list[str] = []
    try:
        channel = await connection.channel()

        async def on_query(message: DeliveredMessage) -> None:
            query = json.loads(message.body)
            address = query["payload"]["replyTo"]  # where Go reads it
            addresses.append(address)
            body, properties = go_answer(fixture, query, reply_type)
            await channel.basic_publish(
                body, exchange="", routing_key=address, properties=properties
            )
            await channel.basic_ack(message.delivery_tag)

        await channel.basic_consume(app.order_queue, on_query)
        yield addresses
    finally:
        await connection.close()


async def ask(url: str, app: App, fixture: str, reply_type: str | None = None) -> Any:
    async with mmate.Client(url, service="storefront") as client:
        await client.declare(app.order_service)
        responder = go_responder(url, app, fixture, reply_type)
        addresses = await anext(responder)
        try:
            return await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="ORDER-456"), timeout=TIMEOUT
            )
        finally:
            assert addresses and all(a.startswith("storefront.reply.") for a in addresses)
            await responder.aclose()


async def test_a_go_success_reply_comes_back_typed(vhost: str) -> None:
    reply = await ask(vhost_url(vhost), make_app(), "reply")
    assert reply == OrderReply(order_id="ORDER-456", status="shipped", success=True)


async def test_a_go_error_reply_raises_remote_error_naming_query_code_and_text(
    vhost: str,
) -> None:
    with pytest.raises(RemoteError) as info:
        await ask(vhost_url(vhost), make_app(), "query_error_reply")
    error = info.value
    assert error.query_type == "GetOrderQuery"
    assert error.reply_type == "GetOrderQueryError"
    assert error.code == "QUERY_HANDLER_ERROR"
    assert error.message == "order ORDER-456 not found: <deleted> & archived"
    text = str(error)
    assert "GetOrderQuery request" in text and "GetOrderQueryError" in text
    assert "QUERY_HANDLER_ERROR" in text and error.correlation_id in text


async def test_a_go_success_reply_of_another_type_raises_decode_error(vhost: str) -> None:
    with pytest.raises(DecodeError) as info:
        await ask(vhost_url(vhost), make_app(), "reply", reply_type="CustomerReply")
    text = str(info.value)
    assert "GetOrderQuery request" in text
    assert "'CustomerReply'" in text and "expected 'OrderReply'" in text
    assert info.value.message_type == "CustomerReply"
