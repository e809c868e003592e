"""Request/reply on the broker, both with our responder and with Go-shaped requesters and
responders."""

from __future__ import annotations

import asyncio
import json
import uuid

import mmate
import pytest
from broker_ctl import ctl, vhost_fixture, vhost_url
from conftest import go_body, go_fixture, wait_until
from mmate import MessageContext
from mmate._transport.base import Channel, Delivery, Properties
from sample_app import (
    App,
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderReply,
    make_app,
)

__all__ = ["vhost_fixture"]  # the fixture `vhost`: a vhost per test, deleted afterwards


def responder(app: App, *, fail: bool = False, delay: float = 0.0) -> object:
    class Responder(app.handlers):
        def __init__(self) -> None:
            self.count = 0

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            self.count += 1
            if delay:
                await asyncio.sleep(delay)
            if fail or message.order_id == "missing":
                raise mmate.PermanentError(f"order {message.order_id} does not exist")
            return OrderReply(order_id=message.order_id, status=f"status-of-{message.order_id}")

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            return None

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            return None

    return Responder()


async def test_n_queries_get_n_typed_replies(url: str, app: App) -> None:
    n = 300
    async with (
        mmate.Client(url, service="order-service") as server,
        mmate.Client(url, service="storefront") as client,
    ):
        await server.declare(app.order_service)
        handlers = responder(app)
        await server.serve(handlers)
        publisher = app.publisher(client)
        replies = await asyncio.gather(
            *(
                publisher.request_get_order_query(GetOrderQuery(order_id=f"o-{i}"), timeout=20)
                for i in range(n)
            )
        )
        assert handlers.count == n
    assert all(isinstance(r, OrderReply) for r in replies)
    assert [r.status for r in replies] == [f"status-of-o-{i}" for i in range(n)]
    assert (
        client.reply_queue.startswith("storefront.reply.")
        and len(client.reply_queue.rsplit(".", 1)[1]) == 8
    )


async def test_handler_error_becomes_a_remote_error_not_a_timeout(
    url: str, app: App, probe: Channel
) -> None:
    async with (
        mmate.Client(url, service="order-service") as server,
        mmate.Client(url, service="storefront") as client,
    ):
        await server.declare(app.order_service)
        await server.serve(responder(app))
        with pytest.raises(mmate.RemoteError) as info:
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="missing"), timeout=5
            )
        assert info.value.code == "PermanentError"
        assert info.value.message == "order missing does not exist"
        assert info.value.reply_type == "OrderReply"
        # the client keeps working
        ok = await app.publisher(client).request_get_order_query(
            GetOrderQuery(order_id="x"), timeout=5
        )
        assert ok.order_id == "x"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize("kind", ["surrogate-error", "surrogate-reply", "unprintable-error"])
async def test_a_failure_whose_text_utf8_cannot_carry_still_reaches_the_requester(
    url: str, app: App, probe: Channel, kind: str
) -> None:
    """A lone surrogate in the handler's error text (what ``os.fsdecode`` makes of a bad file
    name) or in its reply, or an error whose ``__str__`` raises: the requester gets a
    ``RemoteError`` at once, not a timeout, and the query is dead-lettered with the reason."""

    class Failing(type(responder(app))):  # type: ignore[misc]
        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            if kind == "surrogate-error":
                raise mmate.PermanentError("bad byte \udcff in input")
            if kind == "surrogate-reply":
                return OrderReply(order_id="x", status="bad byte \udcff")
            raise _Unprintable

    async with (
        mmate.Client(url, service="order-service") as server,
        mmate.Client(url, service="storefront") as client,
    ):
        await server.declare(app.order_service)
        serving = await server.serve(Failing())
        with pytest.raises(mmate.RemoteError) as info:
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="o-1"), timeout=20
            )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
    expected = {
        "surrogate-error": ("PermanentError", "bad byte \\udcff in input"),
        "surrogate-reply": ("PermanentError", "cannot be encoded as OrderReply"),
        "unprintable-error": ("_Unprintable", "str() of it raised"),
    }[kind]
    assert info.value.code == expected[0] and expected[1] in info.value.message


async def test_no_reply_raises_request_timeout_naming_type_and_correlation_id(
    url: str, app: App
) -> None:
    async with mmate.Client(url, service="storefront") as client:
        await client.declare(app.order_service)  # the queue exists, but nobody serves it
        with pytest.raises(mmate.RequestTimeout) as info:
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="o"), timeout=0.3, correlation_id="corr-x"
            )
    assert info.value.query_type == "GetOrderQuery" and info.value.correlation_id == "corr-x"
    assert "GetOrderQuery" in str(info.value) and "corr-x" in str(info.value)


async def test_an_unreadable_reply_is_dropped_and_the_timeout_says_why(
    url: str, app: App, probe: Channel
) -> None:
    """A reply carrying the request's correlation id that cannot be read does not fail the
    request at once (a valid reply may still come, and must win), but its timeout names it."""

    def garble(delivery: Delivery) -> None:
        props = delivery.properties
        asyncio.get_running_loop().create_task(
            probe.publish(
                b"{not json",
                Properties(correlation_id=props.correlation_id),
                exchange="",
                routing_key=props.reply_to or "",
            )
        )

    async with mmate.Client(url, service="storefront") as client:
        await client.declare(app.order_service)
        await probe.consume(app.order_queue, garble, no_ack=True)
        with pytest.raises(mmate.RequestTimeout) as info:
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="o"), timeout=1.0, correlation_id="corr-garbled"
            )
    assert "body is not JSON" in info.value.unreadable
    assert "unreadable reply" in str(info.value) and "corr-garbled" in str(info.value)


async def test_late_reply_after_timeout_is_dropped_quietly(url: str, app: App) -> None:
    async with (
        mmate.Client(url, service="order-service") as server,
        mmate.Client(url, service="storefront") as client,
    ):
        await server.declare(app.order_service)
        handlers = responder(app, delay=0.5)
        await server.serve(handlers)
        with pytest.raises(mmate.RequestTimeout):
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="o"), timeout=0.1
            )
        await asyncio.sleep(0.6)
        assert (
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="p"), timeout=5
            )
        ).order_id == "p"


async def test_go_requester_gets_its_reply_at_payload_reply_to(
    url: str, app: App, probe: Channel, extra_entities: tuple[list[str], list[str]]
) -> None:
    """A Go requester names its reply queue only in payload.replyTo and matches on correlationId."""
    reply_queue = f"bridge.reply.{uuid.uuid4().hex[:8]}"
    extra_entities[0].append(reply_queue)
    await probe.declare_queue(reply_queue, exclusive=False, auto_delete=False)
    fx = go_fixture("query")
    fx["body"]["payload"]["replyTo"] = reply_queue
    async with mmate.Client(url, service="order-service") as server:
        await server.declare(app.order_service)
        await server.serve(responder(app))
        props = Properties(headers=fx["headers"], **fx["properties"])
        await probe.publish(
            go_body(fx), props, exchange=app.queries, routing_key="qry.GetOrderQuery"
        )
        got: list[Delivery] = []
        await probe.consume(reply_queue, got.append, no_ack=True)
        await wait_until(lambda: len(got) == 1)
    reply = got[0]
    assert reply.exchange == "" and reply.routing_key == reply_queue
    body = json.loads(reply.body)
    assert body["type"] == "OrderReply"
    assert body["correlationId"] == fx["body"]["correlationId"]
    assert body["payload"] == {  # unset optional fields left out, as Go leaves them
        "success": True,
        "orderId": "ORDER-456",
        "status": "status-of-ORDER-456",
    }
    assert reply.properties.correlation_id == fx["body"]["correlationId"]


async def test_go_responder_that_reads_only_payload_reply_to(
    url: str, app: App, probe: Channel
) -> None:
    """A Go responder: reads payload.replyTo from the body, answers with a Go-shaped reply."""

    seen_queries: list[tuple[dict[str, object], str | None]] = []

    async def go_responder(message: Delivery) -> None:
        query = json.loads(message.body)
        seen_queries.append((query, message.properties.reply_to))
        order_id = query["payload"]["orderId"]
        fixture = go_fixture("error_reply" if order_id == "missing" else "reply")
        fixture["body"]["correlationId"] = query["correlationId"]
        props = Properties(
            headers=fixture["headers"], **fixture["properties"]
        )  # no correlation_id property
        await message.channel.publish(
            go_body(fixture), props, exchange="", routing_key=query["payload"]["replyTo"]
        )
        await message.channel.ack(message.delivery_tag)

    responding: set[asyncio.Task[None]] = set()

    def on_query(message: Delivery) -> None:
        task = asyncio.ensure_future(go_responder(message))
        responding.add(task)
        task.add_done_callback(responding.discard)

    async with mmate.Client(url, service="storefront") as client:
        await client.declare(app.order_service)
        await probe.consume(app.order_queue, on_query)
        reply = await app.publisher(client).request_get_order_query(
            GetOrderQuery(order_id="ORDER-456"), timeout=5
        )
        assert isinstance(reply, OrderReply) and reply.status == "shipped"
        with pytest.raises(mmate.RemoteError) as info:
            await app.publisher(client).request_get_order_query(
                GetOrderQuery(order_id="missing"), timeout=5
            )
        assert (info.value.code, info.value.message) == (
            "NOT_FOUND",
            "order ORDER-456 does not exist",
        )
    query, reply_to_property = seen_queries[0]
    # the reply address is in all three places, and it is the client's real reply queue
    assert (
        query["payload"]["replyTo"] == query["replyTo"] == reply_to_property == client.reply_queue
    )
    assert not client.reply_queue.startswith("amq.")


@pytest.mark.broker
async def test_a_deleted_reply_queue_fails_the_waiting_request_at_once_and_is_declared_again(
    vhost: str,
) -> None:
    """An operator deletes the client's reply queue (exclusive: only ``rabbitmqctl`` or the
    management API can) while a request waits: that request fails at once, naming the queue,
    instead of waiting out its timeout; the queue is declared again under its name and the
    requests after it get their replies."""
    url = vhost_url(vhost)
    app = make_app()
    started, release = asyncio.Event(), asyncio.Event()

    class Slow(type(responder(app))):  # type: ignore[misc]
        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            if message.order_id == "slow":
                started.set()
                await release.wait()
            return OrderReply(order_id=message.order_id, status="ok")

    async with (
        mmate.Client(url, service="order-service") as server,
        mmate.Client(url, service="storefront") as client,
    ):
        await server.declare(app.order_service)
        await server.serve(Slow())
        publisher = app.publisher(client)
        assert (await publisher.request_get_order_query(GetOrderQuery(order_id="a"))).status == "ok"
        name = client.reply_queue
        waiting = asyncio.create_task(
            publisher.request_get_order_query(GetOrderQuery(order_id="slow"), timeout=60)
        )
        await asyncio.wait_for(started.wait(), 10)
        await ctl("delete_queue", "-p", vhost, name)
        with pytest.raises(mmate.EntityNotFound, match=f"reply queue {name} was deleted"):
            await asyncio.wait_for(waiting, 20)  # far below its own 60 s
        release.set()
        replies = [
            await publisher.request_get_order_query(GetOrderQuery(order_id=f"b{i}"), timeout=10)
            for i in range(3)
        ]
        assert [r.order_id for r in replies] == ["b0", "b1", "b2"]
        assert client.reply_queue == name
