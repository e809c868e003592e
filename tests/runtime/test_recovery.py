"""A lost connection is re-established: publishing, consuming and requests carry on afterwards."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable

import aiormq
import aiormq.abc
import mmate
import pytest
from broker_ctl import ctl, vhost_fixture, vhost_url
from conftest import BROKER_URL, message_count, wait_until
from mmate import ConnectionEvent, MessageContext, ReconnectPolicy
from mmate._publishing.confirmed import Outgoing
from mmate._transport.urls import mask
from mmate._wire import envelope as codec
from sample_app import (
    MESSAGES,
    App,
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderReply,
    make_app,
)

pytestmark = pytest.mark.broker
__all__ = ["vhost_fixture"]


def _kill_connections(name_part: str) -> int:
    """Close (broker side) every connection whose name contains ``name_part``."""
    try:
        listing = subprocess.run(
            ["rabbitmqctl", "list_connections", "pid", "client_properties", "--no-table-headers"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"rabbitmqctl not usable: {exc}")
    killed = 0
    for line in listing.splitlines():
        if name_part in line:
            pid = line.split("\t", 1)[0].strip()
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "test: connection killed"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            killed += 1
    return killed


async def test_client_recovers_from_a_lost_connection(app: App) -> None:
    class Handlers(app.handlers):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            self.events: list[int] = []

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            self.events.append(message.sequence)

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            return None

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            return OrderReply(order_id=message.order_id)

    service = f"recovery-{app.suffix}"
    async with mmate.Client(BROKER_URL, service=service) as client:
        await client.declare(app.order_service)
        handlers = Handlers()
        await client.serve(handlers)
        publisher = app.publisher(client)
        await publisher.publish_order_created_event(
            OrderCreatedEvent(sequence=1, order_id="o", customer_id="c", amount=1)
        )
        assert (
            await publisher.request_get_order_query(GetOrderQuery(order_id="a"))
        ).order_id == "a"
        await wait_until(lambda: handlers.events == [1])

        assert await asyncio.to_thread(_kill_connections, service) == 1

        # no publish fails: one started during the recovery waits for it
        await publisher.publish_order_created_event(
            OrderCreatedEvent(sequence=2, order_id="o", customer_id="c", amount=1)
        )
        await wait_until(lambda: 2 in handlers.events, timeout=15)  # consumers are back
        reply = await publisher.request_get_order_query(GetOrderQuery(order_id="b"), timeout=10)
        assert reply.order_id == "b"  # a new reply queue
        assert client.connection.reconnects == 1


# -- the reconnect policy --------------------------------------------------------------------


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=4.0, multiplier=2.0, jitter=0.5)
    assert policy.pause_before(1) == 0.0  # the first attempt at once
    no_jitter = [policy.pause_before(n, rand=lambda: 0.0) for n in range(2, 7)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.pause_before(4, rand=lambda: 1.0) == 1.0  # 2.0 less half of it
    with pytest.raises(ValueError, match="max_delay"):
        ReconnectPolicy(initial_delay=2.0, max_delay=1.0)
    with pytest.raises(ValueError, match="jitter"):
        ReconnectPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="max_attempts"):
        ReconnectPolicy(max_attempts=0)


# -- several URLs, outages, giving up ------------------------------------------------------------

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)
DEAD_URL = "amqp://guest:secret@127.0.0.1:1/"


class Events:
    def __init__(self, client: mmate.Client) -> None:
        self.seen: list[ConnectionEvent] = []
        client.on_state(self.seen.append)

    def states(self) -> list[str]:
        return [e.state for e in self.seen]


async def test_the_first_url_that_answers_is_used() -> None:
    client = mmate.Client([DEAD_URL, BROKER_URL], service="several-urls", connect_timeout=5)
    events = Events(client)
    async with client:
        assert client.connection.url == mask(BROKER_URL)
        assert client.connection.urls == (mask(DEAD_URL), mask(BROKER_URL))
    assert events.states() == ["connecting", "connected", "closed"]


async def test_no_url_answers_names_every_failure_without_passwords() -> None:
    client = mmate.Client([DEAD_URL, "amqp://guest:secret@127.0.0.1:2/"], service="no-broker")
    with pytest.raises(mmate.BrokerConnectionError) as info:
        await client.connect()
    text = str(info.value)
    assert "127.0.0.1:1" in text and "127.0.0.1:2" in text and "secret" not in text


async def test_recovery_moves_on_to_the_next_url(vhost: str) -> None:
    # The first URL's vhost is deleted under the client: recovery finds it gone and moves on.
    client = mmate.Client(
        [vhost_url(vhost), BROKER_URL], service="next-url", reconnect=FAST, url_order="ordered"
    )
    events = Events(client)
    async with client:
        assert client.connection.url == mask(vhost_url(vhost))
        await ctl("delete_vhost", vhost)
        await wait_until(lambda: "recovered" in events.states(), timeout=30)
        assert client.connection.url == mask(BROKER_URL)
        recovered = events.seen[-1]
        assert recovered.attempt >= 2 and recovered.downtime is not None
        reconnecting = [e for e in events.seen if e.state == "reconnecting"]
        assert [e.url for e in reconnecting[:2]] == [mask(vhost_url(vhost)), mask(BROKER_URL)]
        # and it works: a publish to the default exchange with no queue is unroutable, not stuck
        with pytest.raises(mmate.UnroutableError):
            await client._outbox.publisher.send(_outgoing(f"nobody-{uuid.uuid4().hex}"))


async def test_a_publish_waits_for_the_outage_then_goes_through(vhost: str) -> None:
    app = make_app()
    client = mmate.Client(vhost_url(vhost), service="outage", reconnect=FAST)
    events = Events(client)
    async with client:
        await client.declare(app.order_service)
        await ctl("delete_vhost", vhost)  # the connection is lost and cannot come back yet
        await wait_until(lambda: events.states().count("reconnecting") >= 2, timeout=30)
        publisher = app.publisher(client)
        event = OrderCreatedEvent(sequence=1, order_id="o", customer_id="c", amount=1)

        started = time.monotonic()
        with pytest.raises(mmate.PublishTimeout) as info:
            await publisher.publish_order_created_event(event, timeout=1.0)
        assert time.monotonic() - started >= 1.0
        text = str(info.value)
        assert "connection is down" in text and "reconnecting" in text
        assert "nothing was published" in text

        waiting = asyncio.create_task(publisher.publish_order_created_event(event, timeout=60))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await ctl("add_vhost", vhost)
        await ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        await asyncio.wait_for(waiting, 30)  # confirmed after the recovery redeclared the queue
        assert events.states()[-1] == "recovered"
        channel = await client.connection.channel(confirms=False)
        assert await message_count(channel, app.audit_queue) == 1
        await channel.close()


async def test_giving_up_after_max_attempts(vhost: str) -> None:
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.1, max_attempts=2)
    client = mmate.Client(vhost_url(vhost), service="give-up", reconnect=policy)
    events = Events(client)
    async with client:
        await ctl("delete_vhost", vhost)
        await wait_until(lambda: "failed" in events.states(), timeout=30)
        assert events.states()[2:] == ["lost", "reconnecting", "reconnecting", "failed"]
        assert events.seen[-1].attempt == 2
        with pytest.raises(mmate.PublishError, match="gave up reconnecting after 2 attempts"):
            await client._outbox.publisher.send(_outgoing("anything"))


def _outgoing(queue: str) -> Outgoing:
    payload = {"orderId": "o", "customerId": "c", "amount": 1}
    encoded = codec.encode(MESSAGES["OrderCreatedEvent"], payload, app_id="test")
    return Outgoing(encoded, "", queue)


# -- requests in flight, deleted queues ----------------------------------------------------------


def answering(
    app: App, answer: Callable[[GetOrderQuery], Awaitable[OrderReply]]
) -> mmate.HandlerBase:
    """Handlers of the sample app that answer queries with ``answer`` and ignore the rest."""

    class Answering(app.handlers):  # type: ignore[name-defined, misc]
        async def handle_order_created_event(self, message: object, ctx: MessageContext) -> None:
            return None

        async def handle_create_order_command(self, message: object, ctx: MessageContext) -> None:
            return None

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            return await answer(message)

    handlers: mmate.HandlerBase = Answering()
    return handlers


async def test_a_request_in_flight_fails_fast_when_the_connection_is_lost(app: App) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(query: GetOrderQuery) -> OrderReply:
        if query.order_id == "slow":
            started.set()
            await release.wait()
        return OrderReply(order_id=query.order_id)

    requester_name = f"requester-{app.suffix}"
    async with (
        mmate.Client(BROKER_URL, service=f"responder-{app.suffix}") as responder,
        mmate.Client(BROKER_URL, service=requester_name, reconnect=FAST) as requester,
    ):
        await responder.declare(app.order_service)
        await responder.serve(answering(app, slow))
        publisher = app.publisher(requester)
        lost = asyncio.Event()
        requester.on_state(lambda e: lost.set() if e.state == "lost" else None)
        asking = asyncio.create_task(
            publisher.request_get_order_query(GetOrderQuery(order_id="slow"), timeout=60)
        )
        await asyncio.wait_for(started.wait(), 15)  # the query was confirmed and is handled
        assert await asyncio.to_thread(_kill_connections, requester_name) == 1
        await asyncio.wait_for(lost.wait(), 15)
        # fails at once, not when the handler answers (never, here) or at the 60 s timeout
        with pytest.raises(mmate.BrokerConnectionError, match="may have been handled"):
            await asyncio.wait_for(asking, 2)
        release.set()
        await wait_until(lambda: requester.connection.state == "recovered", timeout=15)
        reply = await publisher.request_get_order_query(GetOrderQuery(order_id="0"), timeout=10)
        assert reply.order_id == "0"  # the reply queue is back


async def test_a_deleted_queue_is_declared_again_and_consumed(
    app: App, raw: aiormq.abc.AbstractChannel
) -> None:
    seen: list[int] = []

    class Handlers(app.handlers):  # type: ignore[name-defined, misc]
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            seen.append(message.sequence)

        async def handle_create_order_command(self, message: object, ctx: MessageContext) -> None:
            return None

        async def handle_get_order_query(self, message: object, ctx: MessageContext) -> None:
            return None

    async with mmate.Client(BROKER_URL, service=f"deleted-{app.suffix}") as client:
        await client.declare(app.order_service)
        serving = await client.serve(Handlers(), queues=[app.audit_queue])
        consumer = serving.consumers[0]
        before = consumer._loop.channel
        await raw.queue_delete(app.audit_queue)  # the broker cancels our consumer
        await wait_until(lambda: consumer._loop.channel is not before and consumer.consuming, 15)
        event = OrderCreatedEvent(sequence=7, order_id="o", customer_id="c", amount=1)
        await app.publisher(client).publish_order_created_event(event)  # routable again
        await wait_until(lambda: seen == [7], timeout=15)


async def test_connect_retry_waits_for_a_broker_that_is_not_there_yet() -> None:
    name = f"mmate-test-{uuid.uuid4().hex[:8]}"  # the vhost appears only after the client starts
    client = mmate.Client(vhost_url(name), service="early-bird", connect_retry=30, reconnect=FAST)
    try:
        connecting = asyncio.create_task(client.connect())
        await asyncio.sleep(1.0)
        assert not connecting.done()
        await ctl("add_vhost", name)
        await ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        await asyncio.wait_for(connecting, 30)
        assert client.connection.state == "connected"
        await client.close()
    finally:
        await ctl("delete_vhost", name)


async def test_connect_retry_gives_up_after_its_time() -> None:
    client = mmate.Client(DEAD_URL, service="never", connect_retry=1.0, reconnect=FAST)
    started = time.monotonic()
    with pytest.raises(mmate.BrokerConnectionError, match=r"attempts in 1 s") as info:
        await client.connect()
    assert 0.8 < time.monotonic() - started < 5
    assert "secret" not in str(info.value)


async def test_a_reply_queue_still_locked_by_the_old_connection_gets_a_new_name(app: App) -> None:
    async def echo(query: GetOrderQuery) -> OrderReply:
        return OrderReply(order_id=query.order_id)

    holder = await aiormq.connect(BROKER_URL)  # plays the broker's stale old connection
    try:
        async with (
            mmate.Client(BROKER_URL, service=f"responder-{app.suffix}") as responder,
            mmate.Client(BROKER_URL, service=f"locked-{app.suffix}") as requester,
        ):
            await responder.declare(app.order_service)
            await responder.serve(answering(app, echo))
            replies = requester._replies
            stale = replies.name
            channel = await holder.channel()
            await channel.queue_declare(stale, exclusive=True, auto_delete=True)
            replies._used = True  # as after requests before the loss
            await replies.recover()  # what the recovery hook runs
            assert requester.reply_queue != stale
            reply = await app.publisher(requester).request_get_order_query(
                GetOrderQuery(order_id="x"), timeout=10
            )
            assert reply.order_id == "x"
    finally:
        await holder.close()
