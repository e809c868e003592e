"""The baseline: the same workloads written by hand on aiormq, the way a careful user would.

Same wire content as mmate (docs/interop.md): the envelope with the headers a Python publisher must
write (``x-message-type``, ``-id``, ``-kind``, ``x-source``, ``x-schema-version``, the event's
``x-aggregate-id``/``x-sequence``), copied into the AMQP header table, and the AMQP properties
(content type and encoding, persistent, message id, type, timestamp, app id). Every publish is
``mandatory`` with a confirm awaited, a timeout, and the same in-flight window as mmate. The careful
parts: static headers built once, the envelope serialized in one ``pydantic_core.to_json`` pass
(faster than ``json.dumps(model_dump())``), and one ``uuid4`` per message.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiormq
import aiormq.abc
import pydantic_core
from pamqp.commands import Basic
from workload import (
    CHUNK,
    PREFETCH,
    QUERY_KEY,
    ROUTING_KEY,
    URL,
    WINDOW,
    AnyTurns,
    Meter,
    Scratch,
    Turns,
)

from generated.models import GetOrderQuery, OrderCreatedEvent, OrderReply

_STATIC = {
    "x-message-type": "OrderCreatedEvent",
    "x-message-kind": "event",
    "x-source": "mmate-py",
    "x-schema-version": "1.0",
}
_TIMEOUT = 10.0


def _stamp() -> tuple[datetime, str]:
    now = datetime.now(UTC)
    return now, now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(event: OrderCreatedEvent) -> tuple[bytes, Basic.Properties]:
    message_id = str(uuid.uuid4())
    now, stamp = _stamp()
    headers: dict[str, Any] = {
        **_STATIC,
        "x-message-id": message_id,
        "x-aggregate-id": event.aggregate_id,
        "x-sequence": str(event.sequence),
    }
    body = pydantic_core.to_json(
        {
            "id": message_id,
            "type": "OrderCreatedEvent",
            "timestamp": stamp,
            "headers": headers,
            "payload": event,
        },
        by_alias=True,
    )
    properties = Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=2,
        message_id=message_id,
        timestamp=now.replace(microsecond=0),
        message_type="OrderCreatedEvent",
        app_id="bench",
    )
    return body, properties


async def _publish_one(
    channel: aiormq.abc.AbstractChannel, exchange: str, event: OrderCreatedEvent
) -> None:
    body, properties = encode(event)
    confirm = await channel.basic_publish(
        body,
        exchange=exchange,
        routing_key=ROUTING_KEY,
        properties=properties,
        mandatory=True,
        timeout=_TIMEOUT,
    )
    if not isinstance(confirm, Basic.Ack):
        raise RuntimeError(f"publish not acknowledged: {confirm!r}")


async def publish(
    scratch: Scratch, events: Sequence[OrderCreatedEvent], turns: AnyTurns, side: str
) -> list[float]:
    """[messages per second, client CPU microseconds per message]: published concurrently, up to
    WINDOW unconfirmed at once, a chunk of CHUNK messages per turn."""
    connection = await aiormq.connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    window = asyncio.Semaphore(WINDOW)

    async def one(event: OrderCreatedEvent) -> None:
        async with window:
            await _publish_one(channel, scratch.exchange, event)

    elapsed = cpu = 0.0
    for start in range(0, len(events), CHUNK):
        async with turns.turn(side):
            started, cpu_started = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one(e) for e in events[start : start + CHUNK]))
            elapsed += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
    turns.finish(side)
    await connection.close()
    return [len(events) / elapsed, cpu / len(events) * 1e6]


async def fill(scratch: Scratch, events: Sequence[OrderCreatedEvent]) -> None:
    """Put ``events`` into the scratch queue (for the consume figures)."""
    turns = Turns(["fill"])
    await publish(scratch, events, turns, "fill")


async def consume(scratch: Scratch, count: int) -> tuple[float, float]:
    """Messages per second (and client CPU microseconds per message) parsed into the model, passed
    to a no-op handler and acked one by one."""
    connection = await aiormq.connect(URL)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=PREFETCH)
    meter = Meter(count)

    async def handler(event: OrderCreatedEvent) -> None:
        meter.tick()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        envelope = json.loads(message.body)
        await handler(OrderCreatedEvent.model_validate(envelope["payload"]))
        await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

    await channel.basic_consume(scratch.queue, on_message)
    await meter.done.wait()
    await connection.close()
    return meter.result()


async def latency(
    scratch: Scratch, events: Sequence[OrderCreatedEvent], turns: AnyTurns, side: str
) -> list[float]:
    """Seconds from publish start until the confirm arrived and the handler holds the typed model,
    one message at a time (one per turn)."""
    connection = await aiormq.connect(URL)
    publish_channel = await connection.channel(publisher_confirms=True)
    consume_channel = await connection.channel()
    await consume_channel.basic_qos(prefetch_count=PREFETCH)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        OrderCreatedEvent.model_validate(json.loads(message.body)["payload"])
        arrived.put_nowait(time.perf_counter())
        await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

    await consume_channel.basic_consume(scratch.queue, on_message)
    results = []
    for event in events:
        async with turns.turn(side):
            started = time.perf_counter()
            await _publish_one(publish_channel, scratch.exchange, event)
            confirmed = time.perf_counter()
            results.append(max(confirmed, await arrived.get()) - started)
    turns.finish(side)
    await connection.close()
    return results


def _reply_body(correlation_id: str, reply: OrderReply) -> tuple[bytes, Basic.Properties]:
    message_id = str(uuid.uuid4())
    now, stamp = _stamp()
    headers: dict[str, Any] = {
        "x-message-type": "OrderReply",
        "x-message-kind": "reply",
        "x-source": "mmate-py",
        "x-schema-version": "1.0",
        "x-message-id": message_id,
        "x-correlation-id": correlation_id,
        "x-success": "true" if reply.success else "false",
    }
    body = pydantic_core.to_json(
        {
            "id": message_id,
            "type": "OrderReply",
            "timestamp": stamp,
            "correlationId": correlation_id,
            "headers": headers,
            "payload": reply,
        },
        by_alias=True,
    )
    properties = Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=2,
        correlation_id=correlation_id,
        message_id=message_id,
        timestamp=now.replace(microsecond=0),
        message_type="OrderReply",
        app_id="bench-responder",
    )
    return body, properties


def _query_body(
    query: GetOrderQuery, correlation_id: str, reply_to: str
) -> tuple[bytes, Basic.Properties]:
    message_id = str(uuid.uuid4())
    now, stamp = _stamp()
    headers: dict[str, Any] = {
        "x-message-type": "GetOrderQuery",
        "x-message-kind": "query",
        "x-source": "mmate-py",
        "x-schema-version": "1.0",
        "x-message-id": message_id,
        "x-correlation-id": correlation_id,
    }
    body = pydantic_core.to_json(
        {
            "id": message_id,
            "type": "GetOrderQuery",
            "timestamp": stamp,
            "correlationId": correlation_id,
            "replyTo": reply_to,
            "headers": headers,
            "payload": query.model_copy(update={"reply_to": reply_to}),
        },
        by_alias=True,
    )
    properties = Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=2,
        correlation_id=correlation_id,
        reply_to=reply_to,
        message_id=message_id,
        timestamp=now.replace(microsecond=0),
        message_type="GetOrderQuery",
        app_id="bench",
    )
    return body, properties


async def request_reply(
    scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns, side: str
) -> list[float]:
    """Seconds per round trip, one request at a time (one per turn): a responder validates the
    query, publishes the reply (confirmed, mandatory) to ``payload.replyTo`` and acks; the
    requester matches the reply by correlation id and validates it."""
    responder = await aiormq.connect(URL)
    requester = await aiormq.connect(URL)
    r_publish = await responder.channel(publisher_confirms=True)
    r_consume = await responder.channel()
    await r_consume.basic_qos(prefetch_count=PREFETCH)

    async def answer(message: aiormq.abc.DeliveredMessage) -> None:
        envelope = json.loads(message.body)
        query = GetOrderQuery.model_validate(envelope["payload"])
        body, properties = _reply_body(envelope["correlationId"], OrderReply(order=None))
        confirm = await r_publish.basic_publish(
            body,
            exchange="",
            routing_key=query.reply_to,
            properties=properties,
            mandatory=True,
            timeout=_TIMEOUT,
        )
        if not isinstance(confirm, Basic.Ack):
            raise RuntimeError(f"reply not acknowledged: {confirm!r}")
        await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

    await r_consume.basic_consume(scratch.queue, answer)

    q_publish = await requester.channel(publisher_confirms=True)
    q_consume = await requester.channel()
    reply_queue = f"bench.reply.{uuid.uuid4().hex[:8]}"
    await q_consume.queue_declare(reply_queue, exclusive=True, auto_delete=True)
    waiting: dict[str, asyncio.Future[OrderReply]] = {}

    async def on_reply(message: aiormq.abc.DeliveredMessage) -> None:
        envelope = json.loads(message.body)
        future = waiting.pop(envelope.get("correlationId", ""), None)
        if future is not None and not future.done():
            future.set_result(OrderReply.model_validate(envelope["payload"]))
        await message.channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]

    await q_consume.basic_consume(reply_queue, on_reply)
    loop = asyncio.get_running_loop()
    results = []
    for query in queries:
        async with turns.turn(side):
            started = time.perf_counter()
            correlation_id = str(uuid.uuid4())
            future: asyncio.Future[OrderReply] = loop.create_future()
            waiting[correlation_id] = future
            body, properties = _query_body(query, correlation_id, reply_queue)
            async with asyncio.timeout(_TIMEOUT):
                confirm = await q_publish.basic_publish(
                    body,
                    exchange=scratch.exchange,
                    routing_key=QUERY_KEY,
                    properties=properties,
                    mandatory=True,
                )
                if not isinstance(confirm, Basic.Ack):
                    raise RuntimeError(f"query not acknowledged: {confirm!r}")
                await future
            results.append(time.perf_counter() - started)
    turns.finish(side)
    await requester.close()
    await responder.close()
    return results
