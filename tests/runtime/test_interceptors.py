"""Interceptors on the broker: the fixed order (outermost first, around the handler, immediate
retries through the chain again, outcomes after the move), an exception translated by an
interceptor deciding the message's fate, header changes reaching the envelope and the AMQP table,
batches with one chain per message, replies and requests, and outcomes of poison messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import mmate
import pytest
from conftest import inject, message_count, wait_until
from failure_app import AppFactory, drain, failure_app
from mmate import MessageContext, Model
from mmate._transport.base import Channel, Properties
from sample_app import App, CreateOrderCommand, GetOrderQuery, OrderCreatedEvent, OrderReply

__all__ = ["failure_app"]


class Recorder(mmate.Interceptor):
    """Records when its hooks run, into a log shared by every recorder of a test."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.infos: list[mmate.PublishInfo] = []
        self.outcomes: list[mmate.Outcome] = []

    async def on_publish(self, info: mmate.PublishInfo, call_next: mmate.PublishNext) -> None:
        self.infos.append(info)
        self.log.append(f"{self.name}>publish {info.kind} {info.message_type}")
        try:
            await call_next()
        finally:
            self.log.append(f"{self.name}<publish {info.kind} {info.message_type}")

    async def on_handle(
        self, message: Model, ctx: MessageContext, call_next: mmate.HandleNext
    ) -> Any:
        self.log.append(f"{self.name}>handle {ctx.message_type}")
        try:
            return await call_next()
        finally:
            self.log.append(f"{self.name}<handle {ctx.message_type}")

    def on_outcome(self, outcome: mmate.Outcome) -> None:
        self.outcomes.append(outcome)
        self.log.append(f"{self.name} outcome {outcome.result}")


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"O-{n}", sequence=n, order_id=f"O-{n}", customer_id="C", amount=1.0
    )


def order_handlers(app: App, log: list[str]) -> Any:
    class Handlers(app.handlers):
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            log.append(f"handler {ctx.message_type}")

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            log.append(f"handler {ctx.message_type}")

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply:
            log.append(f"handler {ctx.message_type}")
            return OrderReply(order_id=message.order_id, status="open")

    return Handlers()


async def test_interceptors_run_outermost_first_around_publish_handler_and_outcome(
    url: str,
    app: App,
) -> None:
    log: list[str] = []
    outer, inner = Recorder("outer", log), Recorder("inner", log)
    async with mmate.Client(url, service="order-service", interceptors=[outer, inner]) as client:
        await client.declare(app.order_service)
        await client.serve(order_handlers(app, log), queues=[app.audit_queue])
        await app.publisher(client).publish_order_created_event(event(1))
        await wait_until(lambda: any("outcome" in line for line in log))
    # The consumer may start before the publish's confirm came back: look at each side alone.
    assert [line for line in log if "publish" in line] == [
        "outer>publish publish OrderCreatedEvent",
        "inner>publish publish OrderCreatedEvent",
        "inner<publish publish OrderCreatedEvent",
        "outer<publish publish OrderCreatedEvent",
    ]
    assert [line for line in log if "publish" not in line] == [
        "outer>handle OrderCreatedEvent",
        "inner>handle OrderCreatedEvent",
        "handler OrderCreatedEvent",
        "inner<handle OrderCreatedEvent",
        "outer<handle OrderCreatedEvent",
        "outer outcome handled",
        "inner outcome handled",
    ]
    info = outer.infos[0]
    assert (info.exchange, info.routing_key, info.kind) == (
        app.events,
        "order.eu.created",
        "publish",
    )
    assert info.message_id == outer.outcomes[0].message_id
    outcome = outer.outcomes[0]
    assert outcome.queue == app.audit_queue and outcome.stage is None and outcome.error is None
    assert outcome.context is not None and outcome.context.message_id == info.message_id


async def test_request_and_its_reply_go_through_on_publish(url: str, app: App) -> None:
    log: list[str] = []
    server_log: list[str] = []
    server_rec = Recorder("server", server_log)
    async with (
        mmate.Client(url, service="order-service", interceptors=[server_rec]) as server,
        mmate.Client(url, service="storefront", interceptors=[Recorder("c", log)]) as shop,
    ):
        await server.declare(app.order_service)
        await server.serve(order_handlers(app, server_log), queues=[app.order_queue])
        reply = await app.publisher(shop).request_get_order_query(
            GetOrderQuery(order_id="O-7"), timeout=10
        )
        assert reply.order_id == "O-7"
        await wait_until(lambda: any("outcome" in line for line in server_log))
    assert log == ["c>publish request GetOrderQuery", "c<publish request GetOrderQuery"]
    # The reply is published inside the handler's chain (so a trace span can be its parent).
    assert server_log == [
        "server>handle GetOrderQuery",
        "handler GetOrderQuery",
        "server>publish reply OrderReply",
        "server<publish reply OrderReply",
        "server<handle GetOrderQuery",
        "server outcome handled",
    ]
    reply_info = server_rec.infos[0]
    assert reply_info.exchange == "" and reply_info.routing_key == shop.reply_queue


class ToPermanent(mmate.Interceptor):
    """Translates every handler exception into a permanent one."""

    async def on_handle(
        self, message: Model, ctx: MessageContext, call_next: mmate.HandleNext
    ) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            raise mmate.PermanentError(f"translated: {exc}") from exc


async def test_an_exception_translated_into_a_permanent_error_dead_letters_at_once(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=4, tiers=(100, 200, 400), immediate=2)
    log: list[str] = []
    recorder = Recorder("rec", log)

    def down(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise mmate.TransientError("database busy")  # would be retried 3 x 3 times

    async with mmate.Client(
        url, service="fail-service", interceptors=[recorder, ToPermanent()]
    ) as client:
        await client.declare(app.topology)
        handlers = app.handlers(down)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
        await wait_until(lambda: len(recorder.outcomes) == 1)
        consumer = serving.consumers[0]
        assert consumer.dead_lettered == 1 and consumer.retried == 0
        assert consumer.immediate_retries == 0
    assert len(handlers.calls) == 1
    dead = await drain(probe, app.dlq)
    assert len(dead) == 1
    headers = dead[0].properties.headers or {}
    assert headers["x-mmate-dead-letter-reason"] == "permanent-error"
    assert headers["x-mmate-error-class"] == "PermanentError"
    outcome = recorder.outcomes[0]
    assert (outcome.result, outcome.stage, outcome.reason) == (
        "dead_lettered",
        "handler",
        "permanent-error",
    )
    assert isinstance(outcome.error, mmate.PermanentError)
    assert outcome.context is not None and outcome.context.queue == app.queue


async def test_each_immediate_retry_runs_the_chain_again_then_the_outcome_is_retried(
    url: str,
    failure_app: AppFactory,
) -> None:
    app = failure_app(attempts=2, tiers=(100,), immediate=2)
    log: list[str] = []
    recorder = Recorder("rec", log)

    def flaky(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if n <= 3:
            raise mmate.TransientError(f"busy {n}")

    async with mmate.Client(url, service="fail-service", interceptors=[recorder]) as client:
        await client.declare(app.topology)
        handlers = app.handlers(flaky)
        await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
        await wait_until(lambda: len(recorder.outcomes) == 2)
    handle_calls = [line for line in log if line.startswith("rec>handle")]
    assert len(handle_calls) == 4 == len(handlers.calls)  # 1 + 2 immediate, then attempt 2
    assert [o.result for o in recorder.outcomes] == ["retried", "handled"]
    assert [o.attempt for o in recorder.outcomes] == [1, 2]
    assert isinstance(recorder.outcomes[0].error, mmate.TransientError)


class Stamping(mmate.Interceptor):
    async def on_publish(self, info: mmate.PublishInfo, call_next: mmate.PublishNext) -> None:
        info.headers["x-stamp"] = f"stamped {info.message_id}"
        info.headers["x-message-type"] = "cannot override"
        await call_next()


async def test_header_changes_reach_the_envelope_the_amqp_table_and_the_handler(
    url: str, app: App, probe: Channel
) -> None:
    seen: list[MessageContext] = []

    class Handlers(app.handlers):
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None:
            seen.append(ctx)

        async def handle_create_order_command(self, message: Any, ctx: MessageContext) -> None:
            raise NotImplementedError

        async def handle_get_order_query(self, message: Any, ctx: MessageContext) -> Any:
            raise NotImplementedError

    async with mmate.Client(url, service="order-service", interceptors=[Stamping()]) as client:
        await client.declare(app.order_service)
        publisher = app.publisher(client)
        await publisher.publish_order_created_event(
            event(1), headers={"tenant": "t-1"}, message_id="m-fixed"
        )
        got = await probe.get(app.audit_queue, no_ack=True)
        await client.serve(Handlers(), queues=[app.audit_queue])
        await publisher.publish_order_created_event(event(2))
        await wait_until(lambda: len(seen) == 1)
    body = json.loads(got.body)
    table = got.properties.headers or {}
    for headers in (body["headers"], table):
        assert headers["x-stamp"] == "stamped m-fixed"
        assert headers["tenant"] == "t-1"
        assert headers["x-message-type"] == "OrderCreatedEvent"
    assert body["id"] == "m-fixed" == got.properties.message_id
    ctx = seen[0]
    assert ctx.headers["x-stamp"] == f"stamped {ctx.message_id}"


class Picky(mmate.Interceptor):
    """Drops orders of customer "skip" (never calls call_next) and refuses those of "boom"."""

    def __init__(self) -> None:
        self.confirmed: list[str] = []
        self.failed: list[str] = []

    async def on_publish(self, info: mmate.PublishInfo, call_next: mmate.PublishNext) -> None:
        customer = str(info.headers.get("customer", ""))
        if customer == "skip":
            return
        if customer == "boom":
            raise mmate.MmateError("refused by an interceptor")
        info.headers["x-batch"] = "yes"
        try:
            await call_next()
        except mmate.PublishError:
            self.failed.append(customer)
            raise
        self.confirmed.append(customer)


async def test_a_batch_runs_one_chain_per_message_and_reports_each_failure(
    url: str, app: App, probe: Channel
) -> None:
    picky = Picky()
    async with mmate.Client(url, service="order-service", interceptors=[picky]) as client:
        await client.declare(app.order_service)
        route = app.order_service.publishes["CreateOrderCommand"]
        customers = [f"c{i}" for i in range(10)]
        customers[2], customers[5] = "skip", "boom"
        pubs = [
            mmate.Publication(
                route,
                CreateOrderCommand(customer_id=c, amount=i),
                options={"headers": {"customer": c}},
            )
            for i, c in enumerate(customers)
        ]
        # index 7 is unroutable: its own call_next raises, the others are confirmed
        pubs[7] = mmate.Publication(
            route,
            CreateOrderCommand(customer_id="c7", amount=7),
            routing_key="nowhere",
            options={"headers": {"customer": "c7"}},
        )
        with pytest.raises(mmate.BatchPublishError) as caught:
            await client.publish_many(pubs)
        failures = {f.index: f.error for f in caught.value.failures}
        assert sorted(failures) == [5, 7]
        assert "refused by an interceptor" in str(failures[5])
        assert isinstance(failures[7], mmate.UnroutableError)
        assert picky.failed == ["c7"]
        # a batch transport: the same, each message through the chain on send
        async with client.batch() as batch:
            for c in ("b0", "skip", "b2"):
                await app.publisher(batch).send_create_order_command(
                    CreateOrderCommand(customer_id=c, amount=1), headers={"customer": c}
                )
    got = await drain(probe, app.order_queue)
    names = [json.loads(m.body)["payload"]["customerId"] for m in got]
    assert names == ["c0", "c1", "c3", "c4", "c6", "c8", "c9", "b0", "b2"]  # in list order
    assert all((m.properties.headers or {})["x-batch"] == "yes" for m in got)
    assert sorted(picky.confirmed) == sorted(names)


async def test_poison_outcomes_are_observed_without_a_context(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=2, tiers=(100,))
    recorder = Recorder("rec", [])
    async with mmate.Client(url, service="fail-service", interceptors=[recorder]) as client:
        await client.declare(app.topology)
        await client.serve(app.handlers())
        props = Properties(message_id="p-1", type="CreateOrderCommand")
        await inject(probe, b"{not json", routing_key=app.queue, properties=props)
        body = json.dumps({"id": "p-2", "type": "CreateOrderCommand", "payload": {}}).encode()
        await inject(probe, body, routing_key=app.queue, properties=Properties())
        await wait_until(lambda: len(recorder.outcomes) == 2)
    by_id = {o.message_id: o for o in recorder.outcomes}
    assert (by_id["p-1"].result, by_id["p-1"].stage, by_id["p-1"].reason) == (
        "dead_lettered",
        "decode",
        "invalid-json",
    )
    assert by_id["p-1"].message_type == "CreateOrderCommand"
    assert (by_id["p-2"].stage, by_id["p-2"].reason) == ("validate", "validation-failed")
    assert all(o.context is None for o in recorder.outcomes)
    assert await message_count(probe, app.dlq) == 2


async def test_an_interceptor_must_subclass_interceptor(url: str) -> None:
    with pytest.raises(mmate.MmateError, match=r"subclass mmate\.Interceptor"):
        mmate.Client(url, service="x", interceptors=[object()])  # type: ignore[list-item]


async def test_an_outcome_hook_that_raises_is_logged_and_ignored(
    url: str, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(mmate.Interceptor):
        def on_outcome(self, outcome: mmate.Outcome) -> None:
            raise RuntimeError("broken hook")

    log: list[str] = []
    async with mmate.Client(url, service="order-service", interceptors=[Broken()]) as client:
        await client.declare(app.order_service)
        serving = await client.serve(order_handlers(app, log), queues=[app.audit_queue])
        await app.publisher(client).publish_order_created_event(event(1))
        await app.publisher(client).publish_order_created_event(event(2))
        await wait_until(lambda: serving.handled == 2)
        await asyncio.sleep(0.05)
    assert log == ["handler OrderCreatedEvent"] * 2
    assert "broken hook" in caplog.text


async def test_a_transaction_runs_the_chain_around_each_write_before_the_commit(
    url: str, app: App, probe: Channel
) -> None:
    log: list[str] = []
    recorder = Recorder("rec", log)
    async with mmate.Client(
        url, service="order-service", interceptors=[recorder, Stamping()]
    ) as client:
        await client.declare(app.order_service)
        async with client.begin_tx() as tx:
            await app.publisher(tx).publish_order_created_event(event(1))
            assert log == [
                "rec>publish transaction OrderCreatedEvent",
                "rec<publish transaction OrderCreatedEvent",
            ]
            assert await message_count(probe, app.audit_queue) == 0  # not committed yet
        got = await drain(probe, app.audit_queue)
    assert len(got) == 1
    mid = recorder.infos[0].message_id
    assert (got[0].properties.headers or {})["x-stamp"] == f"stamped {mid}"
    assert json.loads(got[0].body)["headers"]["x-stamp"] == f"stamped {mid}"


def test_a_delayed_message_shows_its_destination_not_the_cascade() -> None:
    from mmate._delays import cascade as delay
    from mmate._observation.interceptors import publish_info
    from mmate._publishing.confirmed import Outgoing
    from mmate._wire import envelope as codec
    from sample_app import MESSAGES

    encoded = codec.encode(MESSAGES["OrderCreatedEvent"], event(1), app_id="t", correlation_id="c")
    out = delay.delayed(Outgoing(encoded, "orders", "order.eu.created"), 30, delay.DelayTopology())
    assert out.exchange.startswith("mmate.delay.")
    info = publish_info(out, "publish", {"tenant": "t"})
    assert (info.exchange, info.routing_key) == ("orders", "order.eu.created")
    assert (info.message_id, info.correlation_id) == (encoded.message_id, "c")
    assert info.headers == {"tenant": "t"}


async def test_a_whole_batch_error_is_raised_as_itself_after_every_chain_saw_it() -> None:
    from mmate._observation.interceptors import Draft, Interceptors, publish_info
    from mmate._publishing.confirmed import Outgoing
    from mmate._wire import envelope as codec
    from sample_app import MESSAGES

    log: list[str] = []
    chain = Interceptors([Recorder("rec", log)])
    drafts = []
    for n in range(3):
        encoded = codec.encode(MESSAGES["OrderCreatedEvent"], event(n), app_id="t")
        out = Outgoing(encoded, "orders", "order.eu.created")
        drafts.append(Draft(publish_info(out, "batch", None), out, lambda _h, o=out: o))
    refused = mmate.CircuitOpenError("open", state="open", retry_in=5.0)

    async def send_many(items: list[Outgoing]) -> None:
        assert len(items) == 3
        raise refused

    with pytest.raises(mmate.CircuitOpenError) as caught:
        await chain.publish_batch(
            [d.out for d in drafts], [lambda d=d: d for d in drafts], send_many
        )
    assert caught.value is refused
    assert sorted(log) == sorted(
        ["rec>publish batch OrderCreatedEvent", "rec<publish batch OrderCreatedEvent"] * 3
    )
