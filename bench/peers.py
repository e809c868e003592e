"""Peer benchmark: mmate against hand-written aiormq, aio-pika and FastStream, in one run.

    python bench/peers.py [--quick] [--runs 3] [--sides mmate,aiormq,aiormq-env,aio-pika,faststream]
                          [--only publish,each,consume,latency,rr] [--memory]

Every side does the same work on the same typed message (the generated ``OrderCreatedEvent``
validated into the pydantic model on arrival): a durable topic exchange and durable queue of its own
(deleted afterwards), persistent messages, publisher confirms, ``mandatory``, manual acks.

Sides:

* ``mmate``: the generated publisher (``OrderServicePublisher.publish_order_created_event``) and a
  subclass of the generated handler class, with every feature on: confirms, ``mandatory``, the
  envelope and the headers docs/interop.md asks for, retry and dead-letter readiness (the poison
  checks, attempt counting, the decision path), the per-queue circuit breaker, the handler timeout.
  Switched off: nothing; there are no interceptors (none configured), and the scratch queue has no
  retry policy or dead-letter queue declared (nothing fails in the run).
* ``aiormq``: hand-written aiormq on its own minimal message: the model's JSON
  (``model_dump_json``), ``content_type``, ``message_id``, ``type`` and persistent delivery as AMQP
  properties, no header table; consumed with ``model_validate_json`` and one ``basic.ack`` each.
* ``aiormq-env``: hand-written aiormq on mmate's envelope and headers (``raw_aiormq.py``): the
  baseline of ``bench/throughput.py``.
* ``aio-pika``: aio-pika's ``Exchange.publish`` / ``Queue.consume`` on the minimal message.
* ``faststream``: FastStream's ``RabbitBroker.publish`` and a ``@subscriber`` taking the model
  (validation by FastStream), ``AckPolicy.ACK``, ``persist=True``, ``mandatory=True``.

Figures (each side's value is the median of ``--runs`` runs; ratios are side / ``aiormq``, the
median of per-run ratios):

* ``publish``: pipelined, up to WINDOW unconfirmed in flight (CHUNK concurrent publishes per turn);
* ``each``: one publish at a time, each confirm awaited before the next;
* ``consume100`` / ``consume1000``: a pre-filled queue consumed with prefetch 100 / 1000, timed
  from the first to the last message handled;
* ``latency``: one message at a time from the publish call until both its confirm arrived and the
  handler holds the model, p50 and p99;
* ``rr``: request/reply round trips per second, one at a time (mmate: the generated request method
  against a served handler; aiormq sides: a hand-written reply queue and responder; aio-pika: the
  same written with aio-pika; FastStream: ``broker.request``, which uses RabbitMQ's direct
  reply-to).

Every side runs in a process of its own (``workload.in_processes``: mmate's frame codec is installed
into pamqp process-wide and would speed up the others). Publish, latency and round-trip figures run
every side at once and let them take turns over their pipes (a chunk, one message, one round trip at
a time), so that the outside load of this shared box hits them alike; consume runs go one side after
the other, in a rotating order.
``--quick`` keeps the whole run under three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "runtime")]  # this tree's runtime

import aio_pika  # noqa: E402
import aiormq  # noqa: E402
import aiormq.abc  # noqa: E402
import mmate  # noqa: E402
import raw_aiormq  # noqa: E402
from faststream.middlewares import AckPolicy  # noqa: E402
from faststream.rabbit import (  # noqa: E402
    Channel,
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.message import RabbitMessage  # noqa: E402
from mmate._wire import envelope as codec  # noqa: E402
from pamqp.commands import Basic  # noqa: E402
from throughput import mmate_request_reply, percentile  # noqa: E402
from workload import (  # noqa: E402
    CHUNK,
    QUERY_KEY,
    ROUTING_KEY,
    URL,
    WINDOW,
    AnyTurns,
    Meter,
    PipeTurns,
    Scratch,
    broker_version,
    in_processes,
    machine,
    passed_on,
    sample_events,
    sample_query,
    script_main,
)

from generated import topology as gen_topology  # noqa: E402
from generated.models import GetOrderQuery, OrderCreatedEvent, OrderReply  # noqa: E402
from generated.order_audit import OrderAuditHandlers  # noqa: E402
from generated.order_service import OrderServicePublisher  # noqa: E402

SIDES = ("mmate", "aiormq", "aiormq-env", "aio-pika", "faststream")
BASE = "aiormq"
TIMEOUT = 10.0
EACH_CHUNK = 100
"""Publishes per turn in the each-awaited figure."""

OnEvent = Callable[[], None]
Publish = Callable[[OrderCreatedEvent], Awaitable[None]]


# -- the minimal message of the hand-written sides -------------------------------------------------


def minimal_body(event: OrderCreatedEvent) -> bytes:
    return event.model_dump_json(by_alias=True).encode()


def minimal_properties() -> Basic.Properties:
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=uuid.uuid4().hex,
        message_type="OrderCreatedEvent",
    )


# -- one side: connect, publish one message, serve the queue, close --------------------------------


class Side:
    """What every side can do; each figure is written once over these."""

    name = ""
    envelope = False
    """Its messages are mmate envelopes (a consume run fills its queue with those)."""

    async def open(self, scratch: Scratch) -> None:
        raise NotImplementedError

    async def publish(self, event: OrderCreatedEvent) -> None:
        raise NotImplementedError

    async def serve(self, scratch: Scratch, prefetch: int, on_event: OnEvent) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class MmateSide(Side):
    name = "mmate"
    envelope = True

    def __init__(self) -> None:
        self._client: mmate.Client | None = None
        self._publisher: OrderServicePublisher | None = None
        self._exchange = ""

    async def open(self, scratch: Scratch) -> None:
        self._client = mmate.Client(URL, service="bench", max_in_flight=WINDOW)
        await self._client.connect()
        self._publisher = OrderServicePublisher(self._client)
        self._exchange = scratch.exchange

    async def publish(self, event: OrderCreatedEvent) -> None:
        assert self._publisher is not None
        await self._publisher.publish_order_created_event(event, exchange=self._exchange)

    async def serve(self, scratch: Scratch, prefetch: int, on_event: OnEvent) -> None:
        class BenchAudit(OrderAuditHandlers):
            TOPOLOGY = scratch.consuming(gen_topology.ORDER_AUDIT, "OrderCreatedEvent")

            async def handle_order_created_event(
                self, message: OrderCreatedEvent, ctx: mmate.MessageContext
            ) -> None:
                on_event()

        assert self._client is not None
        await self._client.serve(BenchAudit(), prefetch=prefetch)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


class AiormqSide(Side):
    """Hand-written aiormq; ``envelope``: mmate's envelope and headers, else the minimal message."""

    def __init__(self, envelope: bool) -> None:
        self.envelope = envelope
        self.name = "aiormq-env" if envelope else "aiormq"
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._window = asyncio.Semaphore(WINDOW)
        self._exchange = ""

    async def open(self, scratch: Scratch) -> None:
        self._connection = await aiormq.connect(URL)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = scratch.exchange

    async def publish(self, event: OrderCreatedEvent) -> None:
        assert self._channel is not None
        if self.envelope:
            body, properties = raw_aiormq.encode(event)
        else:
            body, properties = minimal_body(event), minimal_properties()
        async with self._window:
            confirm = await self._channel.basic_publish(
                body,
                exchange=self._exchange,
                routing_key=ROUTING_KEY,
                properties=properties,
                mandatory=True,
                timeout=TIMEOUT,
            )
        if not isinstance(confirm, Basic.Ack):
            raise RuntimeError(f"publish not acknowledged: {confirm!r}")

    async def serve(self, scratch: Scratch, prefetch: int, on_event: OnEvent) -> None:
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.basic_qos(prefetch_count=prefetch)
        envelope = self.envelope

        async def handler(event: OrderCreatedEvent) -> None:
            on_event()

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            if envelope:
                event = OrderCreatedEvent.model_validate(json.loads(message.body)["payload"])
            else:
                event = OrderCreatedEvent.model_validate_json(message.body)
            await handler(event)
            await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

        await channel.basic_consume(scratch.queue, on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class AioPikaSide(Side):
    name = "aio-pika"

    def __init__(self) -> None:
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._window = asyncio.Semaphore(WINDOW)

    async def open(self, scratch: Scratch) -> None:
        self._connection = await aio_pika.connect(URL)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(scratch.exchange, ensure=False)

    async def publish(self, event: OrderCreatedEvent) -> None:
        assert self._exchange is not None
        message = aio_pika.Message(
            minimal_body(event),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=uuid.uuid4().hex,
            type="OrderCreatedEvent",
        )
        async with self._window:
            await self._exchange.publish(
                message, routing_key=ROUTING_KEY, mandatory=True, timeout=TIMEOUT
            )

    async def serve(self, scratch: Scratch, prefetch: int, on_event: OnEvent) -> None:
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(scratch.queue, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            OrderCreatedEvent.model_validate_json(message.body)
            on_event()
            await message.ack()

        await queue.consume(on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class FastStreamSide(Side):
    name = "faststream"

    def __init__(self) -> None:
        self._broker: RabbitBroker | None = None
        self._exchange: RabbitExchange | None = None
        self._window = asyncio.Semaphore(WINDOW)

    def _exchange_of(self, scratch: Scratch) -> RabbitExchange:
        return RabbitExchange(scratch.exchange, type=ExchangeType.TOPIC, durable=True)

    async def open(self, scratch: Scratch) -> None:
        self._broker = RabbitBroker(URL, logger=None)
        self._exchange = self._exchange_of(scratch)
        await self._broker.start()

    async def publish(self, event: OrderCreatedEvent) -> None:
        assert self._broker is not None
        async with self._window:
            await self._broker.publish(
                event,
                exchange=self._exchange,
                routing_key=ROUTING_KEY,
                persist=True,
                mandatory=True,
                timeout=TIMEOUT,
                message_type="OrderCreatedEvent",
            )

    async def serve(self, scratch: Scratch, prefetch: int, on_event: OnEvent) -> None:
        assert self._broker is not None
        subscriber = self._broker.subscriber(
            RabbitQueue(scratch.queue, durable=True, declare=False),
            channel=Channel(prefetch_count=prefetch),
            ack_policy=AckPolicy.ACK,
        )

        @subscriber
        async def handle(message: OrderCreatedEvent) -> None:
            on_event()

        await subscriber.start()

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.stop()


def make_side(name: str) -> Side:
    if name == "mmate":
        return MmateSide()
    if name == "aiormq":
        return AiormqSide(envelope=False)
    if name == "aiormq-env":
        return AiormqSide(envelope=True)
    if name == "aio-pika":
        return AioPikaSide()
    if name == "faststream":
        return FastStreamSide()
    raise SystemExit(f"unknown side {name!r} (choose from {', '.join(SIDES)})")


# -- figures ---------------------------------------------------------------------------------------


async def publish_pipelined(side: Side, scratch: Scratch, turns: AnyTurns, events: Any) -> float:
    elapsed = 0.0
    for start in range(0, len(events), CHUNK):
        async with turns.turn(side.name):
            started = time.perf_counter()
            await asyncio.gather(*(side.publish(e) for e in events[start : start + CHUNK]))
            elapsed += time.perf_counter() - started
    return len(events) / elapsed


async def publish_each(side: Side, scratch: Scratch, turns: AnyTurns, events: Any) -> float:
    elapsed = 0.0
    for start in range(0, len(events), EACH_CHUNK):
        async with turns.turn(side.name):
            started = time.perf_counter()
            for event in events[start : start + EACH_CHUNK]:
                await side.publish(event)
            elapsed += time.perf_counter() - started
    return len(events) / elapsed


async def latency(side: Side, scratch: Scratch, turns: AnyTurns, events: Any) -> list[float]:
    arrived: asyncio.Queue[float] = asyncio.Queue()
    await side.serve(scratch, 100, lambda: arrived.put_nowait(time.perf_counter()))
    results = []
    for event in events:
        async with turns.turn(side.name):
            started = time.perf_counter()
            await side.publish(event)
            confirmed = time.perf_counter()
            results.append(max(confirmed, await arrived.get()) - started)
    return results[50:]  # warm-up


async def fill(scratch: Scratch, events: Sequence[OrderCreatedEvent], envelope: bool) -> None:
    """Pre-fill a consume run's queue (pipelined, confirmed) with the side's own message."""
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for start in range(0, len(events), WINDOW):
            publishes = []
            for event in events[start : start + WINDOW]:
                if envelope:
                    body, properties = raw_aiormq.encode(event)
                else:
                    body, properties = minimal_body(event), minimal_properties()
                publishes.append(
                    channel.basic_publish(
                        body,
                        exchange=scratch.exchange,
                        routing_key=ROUTING_KEY,
                        properties=properties,
                        mandatory=True,
                    )
                )
            await asyncio.gather(*publishes)
    finally:
        await connection.close()


async def consume(name: str, count: int, prefetch: int) -> float:
    scratch = Scratch.new(f"consume-{name}")
    side = make_side(name)
    await scratch.declare()
    try:
        await fill(scratch, sample_events(count), side.envelope)
        await side.open(scratch)
        meter = Meter(count)
        await side.serve(scratch, prefetch, meter.tick)
        async with asyncio.timeout(120):
            await meter.done.wait()
        rate, _cpu = meter.result()
        return rate
    finally:
        with contextlib.suppress(Exception):
            await side.close()
        await scratch.delete()


# -- request/reply ---------------------------------------------------------------------------------


async def rr_mmate(scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns) -> float:
    seconds = await mmate_request_reply(scratch, queries, turns, "mmate")
    return len(seconds) / sum(seconds)


async def rr_aiormq_env(
    scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns
) -> float:
    seconds = await raw_aiormq.request_reply(scratch, queries, turns, "aiormq-env")
    return len(seconds) / sum(seconds)


async def rr_aiormq(scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns) -> float:
    """Minimal messages: the query's JSON with ``reply_to`` and ``correlation_id`` as properties."""
    responder = await aiormq.connect(URL)
    requester = await aiormq.connect(URL)
    try:
        r_publish = await responder.channel(publisher_confirms=True)
        r_consume = await responder.channel()
        await r_consume.basic_qos(prefetch_count=100)

        async def answer(message: aiormq.abc.DeliveredMessage) -> None:
            GetOrderQuery.model_validate_json(message.body)
            props = message.header.properties
            await r_publish.basic_publish(
                OrderReply(order=None).model_dump_json(by_alias=True).encode(),
                routing_key=props.reply_to or "",
                properties=Basic.Properties(
                    content_type="application/json",
                    correlation_id=props.correlation_id,
                    delivery_mode=2,
                ),
                mandatory=True,
                timeout=TIMEOUT,
            )
            await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

        await r_consume.basic_consume(scratch.queue, answer)
        q_publish = await requester.channel(publisher_confirms=True)
        q_consume = await requester.channel()
        reply_queue = f"bench.reply.{uuid.uuid4().hex[:8]}"
        await q_consume.queue_declare(reply_queue, exclusive=True, auto_delete=True)
        waiting: dict[str, asyncio.Future[OrderReply]] = {}

        async def on_reply(message: aiormq.abc.DeliveredMessage) -> None:
            future = waiting.pop(message.header.properties.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(OrderReply.model_validate_json(message.body))
            await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

        await q_consume.basic_consume(reply_queue, on_reply)
        loop = asyncio.get_running_loop()
        elapsed = 0.0
        for query in queries:
            async with turns.turn("aiormq"):
                started = time.perf_counter()
                correlation_id = uuid.uuid4().hex
                future: asyncio.Future[OrderReply] = loop.create_future()
                waiting[correlation_id] = future
                async with asyncio.timeout(TIMEOUT):
                    await q_publish.basic_publish(
                        query.model_dump_json(by_alias=True).encode(),
                        exchange=scratch.exchange,
                        routing_key=QUERY_KEY,
                        properties=Basic.Properties(
                            content_type="application/json",
                            correlation_id=correlation_id,
                            reply_to=reply_queue,
                            delivery_mode=2,
                        ),
                        mandatory=True,
                    )
                    await future
                elapsed += time.perf_counter() - started
        return len(queries) / elapsed
    finally:
        await requester.close()
        await responder.close()


async def rr_aio_pika(scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns) -> float:
    responder = await aio_pika.connect(URL)
    requester = await aio_pika.connect(URL)
    try:
        r_channel = await responder.channel(publisher_confirms=True)
        await r_channel.set_qos(prefetch_count=100)
        r_queue = await r_channel.get_queue(scratch.queue, ensure=False)

        async def answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            GetOrderQuery.model_validate_json(message.body)
            await r_channel.default_exchange.publish(
                aio_pika.Message(
                    OrderReply(order=None).model_dump_json(by_alias=True).encode(),
                    content_type="application/json",
                    correlation_id=message.correlation_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.reply_to or "",
                mandatory=True,
                timeout=TIMEOUT,
            )
            await message.ack()

        await r_queue.consume(answer)
        q_channel = await requester.channel(publisher_confirms=True)
        exchange = await q_channel.get_exchange(scratch.exchange, ensure=False)
        reply_queue = await q_channel.declare_queue(
            f"bench.reply.{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True
        )
        waiting: dict[str, asyncio.Future[OrderReply]] = {}

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            future = waiting.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(OrderReply.model_validate_json(message.body))
            await message.ack()

        await reply_queue.consume(on_reply)
        loop = asyncio.get_running_loop()
        elapsed = 0.0
        for query in queries:
            async with turns.turn("aio-pika"):
                started = time.perf_counter()
                correlation_id = uuid.uuid4().hex
                future: asyncio.Future[OrderReply] = loop.create_future()
                waiting[correlation_id] = future
                async with asyncio.timeout(TIMEOUT):
                    await exchange.publish(
                        aio_pika.Message(
                            query.model_dump_json(by_alias=True).encode(),
                            content_type="application/json",
                            correlation_id=correlation_id,
                            reply_to=reply_queue.name,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=QUERY_KEY,
                        mandatory=True,
                    )
                    await future
                elapsed += time.perf_counter() - started
        return len(queries) / elapsed
    finally:
        await requester.close()
        await responder.close()


async def rr_faststream(
    scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns
) -> float:
    responder = RabbitBroker(URL, logger=None)
    requester = RabbitBroker(URL, logger=None)
    subscriber = responder.subscriber(
        RabbitQueue(scratch.queue, durable=True, declare=False),
        channel=Channel(prefetch_count=100),
        ack_policy=AckPolicy.ACK,
    )

    @subscriber
    async def answer(query: GetOrderQuery) -> OrderReply:
        return OrderReply(order=None)

    await responder.start()
    await requester.start()
    exchange = RabbitExchange(scratch.exchange, type=ExchangeType.TOPIC, durable=True)
    try:
        elapsed = 0.0
        for query in queries:
            async with turns.turn("faststream"):
                started = time.perf_counter()
                response: RabbitMessage = await requester.request(
                    query, exchange=exchange, routing_key=QUERY_KEY, persist=True, timeout=TIMEOUT
                )
                OrderReply.model_validate_json(response.body)
                elapsed += time.perf_counter() - started
        return len(queries) / elapsed
    finally:
        await requester.stop()
        await responder.stop()


RR: dict[str, Callable[[Scratch, Sequence[GetOrderQuery], AnyTurns], Awaitable[float]]] = {
    "mmate": rr_mmate,
    "aiormq": rr_aiormq,
    "aiormq-env": rr_aiormq_env,
    "aio-pika": rr_aio_pika,
    "faststream": rr_faststream,
}


# -- orchestration and report ----------------------------------------------------------------------

FIGURES = {
    "publish": ("publish, confirms pipelined", "msg/s", ">=", 1.0),
    "each": ("publish, each confirm awaited", "msg/s", ">=", 1.0),
    "consume100": ("consume, parse, ack, prefetch 100", "msg/s", ">=", 1.1),
    "consume1000": ("consume, prefetch 1000", "msg/s", ">=", 1.1),
    "latency_p50": ("lone message end to end p50", "ms", "<=", 1.1),
    "latency_p99": ("lone message end to end p99", "ms", "<=", 1.1),
    "rr": ("request/reply round trips", "round trips/s", ">=", 1.0),
}


async def side_work(figure: str, name: str, turns: PipeTurns, args: argparse.Namespace) -> Any:
    """One side's part of one figure, in the worker process of that side."""
    if figure.startswith("consume"):
        return await consume(name, args.consume_count, int(figure.removeprefix("consume")))
    if figure == "rr":
        queries = [sample_query(i) for i in range(args.rr_count)]
        scratch = Scratch.new(f"rr-{name}")
        await scratch.declare()
        try:
            return await RR[name](scratch, queries, turns)
        finally:
            await scratch.delete()
    events = sample_events(args.publish_count)
    work: dict[str, Callable[[Side, Scratch, AnyTurns, Any], Awaitable[Any]]] = {
        "publish": publish_pipelined,
        "each": publish_each,
        "latency": latency,
    }
    items = {
        "publish": events,
        "each": events[: args.each_count],
        "latency": events[: args.latency_count + 50],
    }
    scratch = Scratch.new(f"{figure}-{name}")
    side = make_side(name)
    await scratch.declare()
    try:
        await side.open(scratch)
        return await work[figure](side, scratch, turns, items[figure])
    finally:
        with contextlib.suppress(Exception):
            await side.close()
        await scratch.delete()


def counts(args: argparse.Namespace) -> list[str]:
    """The counts of this run, for the worker processes."""
    return passed_on(
        args, "publish_count", "each_count", "consume_count", "latency_count", "rr_count"
    )


async def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    names = [s for s in args.sides.split(",") if s]
    only = set(args.only.split(","))
    figures: dict[str, dict[str, list[float]]] = {}
    script = Path(__file__).resolve()
    extra = counts(args)

    def record(figure: str, side: str, value: float) -> None:
        figures.setdefault(figure, {}).setdefault(side, []).append(value)
        print(f"  {figure:<12} {side:<11} {value:12.3f}", file=sys.stderr, flush=True)

    for n in range(args.runs):
        order = names[n % len(names) :] + names[: n % len(names)]
        for figure in ("publish", "each", "rr"):
            if figure in only:
                for side, rate in (await in_processes(script, figure, order, extra)).items():
                    record(figure, side, rate)
        if "consume" in only:
            for prefetch in (100, 1000):
                figure = f"consume{prefetch}"
                for side in order:  # one after the other
                    rate = (await in_processes(script, figure, [side], extra))[side]
                    record(figure, side, rate)
        if "latency" in only:
            per_lat = await in_processes(script, "latency", order, extra)
            for side, seconds in per_lat.items():
                record("latency_p50", side, percentile(seconds, 0.50) * 1000)
                record("latency_p99", side, percentile(seconds, 0.99) * 1000)
    return figures


def report(figures: dict[str, dict[str, list[float]]], names: Sequence[str]) -> None:
    cols = [n for n in SIDES if n in names]
    head = " | ".join(cols)
    ratio_cols = [n for n in cols if n != BASE]
    print(f"| figure | {head} | " + " | ".join(f"{n} / {BASE}" for n in ratio_cols) + " | target |")
    print("|---|" + "---:|" * (len(cols) + len(ratio_cols)) + "---|")
    for key, (title, unit, op, bound) in FIGURES.items():
        per = figures.get(key)
        if not per:
            continue
        fmt = "{:,.2f}" if unit == "ms" else "{:,.0f}"
        cells = [fmt.format(statistics.median(per[n])) if n in per else "-" for n in cols]
        ratios = []
        verdict = ""
        for n in ratio_cols:
            pairs = [a / b for a, b in zip(per.get(n, []), per.get(BASE, []), strict=False) if b]
            ratio = statistics.median(pairs) if pairs else None
            ratios.append("-" if ratio is None else f"{ratio:.2f}")
            if n == "mmate" and ratio is not None:
                ok = ratio >= bound if op == ">=" else ratio <= bound
                verdict = f"mmate {op} {bound:.2f}: {'met' if ok else 'MISSED'}"
        print(f"| {title} ({unit}) | " + " | ".join(cells + ratios) + f" | {verdict} |")
    print()
    for key, per in figures.items():
        print(json.dumps({"figure": key, "runs": per}))


def sizes() -> dict[str, int]:
    event = sample_events(1)[0]
    envelope = codec.encode(gen_topology.MESSAGES["OrderCreatedEvent"], event, app_id="bench")
    return {
        "mmate envelope": len(envelope.body),
        "mmate AMQP headers": len(envelope.properties.headers or {}),
        "aiormq-env envelope": len(raw_aiormq.encode(event)[0]),
        "minimal (aiormq, aio-pika, faststream)": len(minimal_body(event)),
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: under three minutes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--only", default="publish,each,consume,latency,rr")
    parser.add_argument("--publish-count", type=int, default=10_000)
    parser.add_argument("--each-count", type=int, default=2_000)
    parser.add_argument("--consume-count", type=int, default=20_000)
    parser.add_argument("--latency-count", type=int, default=1_000)
    parser.add_argument("--rr-count", type=int, default=1_000)
    parser.add_argument("--worker", nargs=2, metavar=("FIGURE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.publish_count, args.each_count, args.consume_count = 4_000, 600, 6_000
        args.latency_count, args.rr_count = 300, 300
    return args


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    meta: dict[str, Any] = {
        **machine(),
        "aio-pika": metadata.version("aio-pika"),
        "faststream": metadata.version("faststream"),
        "broker": await broker_version(),
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "runs": args.runs,
        "counts": (
            f"publish {args.publish_count}, each {args.each_count}, consume "
            f"{args.consume_count}, latency {args.latency_count}, rr {args.rr_count}"
        ),
    }
    figures = await run(args)
    meta["load average after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["seconds"] = f"{time.perf_counter() - started:.0f}"
    print("## Peer run")
    print("; ".join(f"{k}: {v}" for k, v in meta.items()))
    print("message sizes (bytes): " + ", ".join(f"{k} {v}" for k, v in sizes().items()))
    print()
    report(figures, [s for s in args.sides.split(",") if s])


if __name__ == "__main__":
    script_main(arguments(), side_work, main)
