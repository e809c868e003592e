"""Client CPU the runtime's own layers add per message, in process, without a broker.

    python bench/overhead.py [--count 50000] [--rounds 3]

Prints microseconds of process CPU per message (the best of ``--rounds``) for:

* ``send``: ``ConfirmedPublisher.send`` on its hot path, with a channel whose ``basic_publish``
  returns at once (what publishing costs around aiormq: window, channel checks, error handling);
* the publish chain (``Interceptors.publish_one`` around a send that does nothing) with no
  interceptor, one that only calls ``call_next``, one that changes a header (the message is encoded
  again), ``PrometheusMetrics`` and ``OpenTelemetryTracing`` (with the SDK's tracer provider and no
  exporter);
* the handle chain (``Interceptors.handle`` around a handler that does nothing) with the same;
* the frames of one message: decoding a delivery (``basic.deliver``, the content header with
  mmate's properties and headers, the body) and encoding a publish (``basic.publish``, content
  header, body), with pamqp alone and through mmate's fast frames (``_transport/aiormq``), and
  decoding the envelope (``parse`` + ``validate``).

The throughput benchmark (``throughput.py``) compares whole runs against raw aiormq through the
broker; this one isolates what those runs cannot resolve on a shared box.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mmate._contract.context import MessageContext
from mmate._observation.interceptors import (
    Draft,
    HandleNext,
    Interceptor,
    Interceptors,
    PublishInfo,
    PublishNext,
    publish_info,
)
from mmate._publishing.confirmed import ConfirmedPublisher, Outgoing
from mmate._wire import envelope as codec

from generated import topology
from generated.models import OrderCreatedEvent, Region

EVENT = topology.MESSAGES["OrderCreatedEvent"]
MESSAGE = OrderCreatedEvent(
    aggregate_id="ORDER-1", order_id="ORDER-1", customer_id="C-1", amount=12.5, region=Region.EU
)


class _Channel:
    """A seam channel whose publish is confirmed at once."""

    is_open = True

    async def publish(self, body: bytes, properties: Any, **_: Any) -> None:
        return None


class _Managed:
    def __init__(self) -> None:
        self.channel = _Channel()

    async def get(self, **_: Any) -> _Channel:
        return self.channel

    async def close(self) -> None:
        return None


class _Connection:
    is_up = True
    wanted = True

    def managed(self, *_: Any, **__: Any) -> _Managed:
        return _Managed()


class PassThrough(Interceptor):
    async def on_publish(self, info: PublishInfo, call_next: PublishNext) -> None:
        await call_next()

    async def on_handle(self, message: Any, ctx: MessageContext, call_next: HandleNext) -> Any:
        return await call_next()


class AddsHeader(Interceptor):
    async def on_publish(self, info: PublishInfo, call_next: PublishNext) -> None:
        info.headers["x-bench"] = "1"
        await call_next()


def _outgoing(headers: Any = None, message_id: str | None = None) -> Outgoing:
    encoded = codec.encode(EVENT, MESSAGE, app_id="bench", headers=headers, message_id=message_id)
    return Outgoing(encoded, "mmate.events", "order.eu.created")


def _context() -> MessageContext:
    return MessageContext(
        message_id="m",
        message_type="OrderCreatedEvent",
        correlation_id=None,
        headers={},
        redelivered=False,
        queue="order-audit-queue",
        exchange="mmate.events",
        routing_key="order.eu.created",
        delivery_tag=1,
        timestamp=None,
        reply_to=None,
        attempt=1,
        transport=None,  # type: ignore[arg-type]
    )


async def _per_message(step: Callable[[], Awaitable[Any]], count: int, rounds: int) -> float:
    for _ in range(1000):
        await step()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(count):
            await step()
        best = min(best, (time.process_time() - start) / count * 1e6)
    return best


def _interceptors() -> dict[str, list[Interceptor]]:
    found: dict[str, list[Interceptor]] = {
        "none": [],
        "pass-through": [PassThrough()],
        "changes a header": [AddsHeader()],
    }
    try:
        from mmate._observation.metrics import PrometheusMetrics
        from prometheus_client import CollectorRegistry

        found["PrometheusMetrics"] = [PrometheusMetrics(registry=CollectorRegistry())]
    except ImportError:
        print("(prometheus-client not installed: no PrometheusMetrics figures)")
    try:
        from mmate._observation.tracing import OpenTelemetryTracing
        from opentelemetry.sdk.trace import TracerProvider

        found["OpenTelemetryTracing"] = [OpenTelemetryTracing(tracer_provider=TracerProvider())]
    except ImportError:
        print("(opentelemetry-sdk not installed: no OpenTelemetryTracing figures)")
    return found


def _per_call(step: Callable[[], Any], count: int, rounds: int) -> float:
    for _ in range(1000):
        step()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(count):
            step()
        best = min(best, (time.process_time() - start) / count * 1e6)
    return best


def wire(count: int, rounds: int) -> None:
    """The frames of one message, with pamqp alone and with mmate's fast frames."""
    import pamqp.frame
    from mmate._transport.aiormq import frames
    from mmate._transport.aiormq.properties import to_pamqp
    from pamqp import body, header
    from pamqp.commands import Basic

    unmarshal = getattr(pamqp.frame.unmarshal, "__wrapped__", pamqp.frame.unmarshal)
    marshal = getattr(pamqp.frame.marshal, "__wrapped__", pamqp.frame.marshal)
    encoded = _outgoing().encoded
    properties = to_pamqp(encoded.properties)
    publish = Basic.Publish(exchange="mmate.events", routing_key="order.eu.created", mandatory=True)
    outgoing = [publish, header.ContentHeader(0, len(encoded.body), properties)]
    outgoing.append(body.ContentBody(encoded.body))
    deliver = Basic.Deliver("ctag", 1, False, "mmate.events", "order.eu.created")
    incoming = [marshal(frame, 1) for frame in [deliver, *outgoing[1:]]]
    fast_decode, fast_encode = frames.tolerant(unmarshal), frames.fast(marshal)
    fast_encode(publish, 1)  # the exchange name validated once, as in a running client
    print(f"{'one message':<42} {'pamqp (us)':>11} {'mmate (us)':>11}")
    for name, slow, fast in [
        (
            "decode a delivery (deliver, header, body)",
            lambda: [unmarshal(data) for data in incoming],
            lambda: [fast_decode(data) for data in incoming],
        ),
        (
            "encode a publish (publish, header, body)",
            lambda: [marshal(frame, 1) for frame in outgoing],
            lambda: [fast_encode(frame, 1) for frame in outgoing],
        ),
    ]:
        print(
            f"{name:<42} {_per_call(slow, count, rounds):>11.2f} "
            f"{_per_call(fast, count, rounds):>11.2f}"
        )
    body_bytes = encoded.body
    envelope = _per_call(lambda: codec.validate(codec.parse(body_bytes), EVENT), count, rounds)
    print(f"{'decode the envelope (parse + validate)':<42} {'':>11} {envelope:>11.2f}")


async def main(count: int, rounds: int) -> None:
    publisher = ConfirmedPublisher(_Connection())  # type: ignore[arg-type]
    out = _outgoing()
    send_cost = await _per_message(lambda: publisher.send(out), count, rounds)
    print(f"ConfirmedPublisher.send hot path: {send_cost:.2f} us per publish")

    async def sent(_: Outgoing) -> None:
        return None

    async def handler() -> None:
        return None

    ctx = _context()
    base_publish = base_handle = 0.0
    print(
        f"{'interceptors':<22} {'publish (us)':>13} {'added':>7} {'handle (us)':>12} {'added':>7}"
    )
    for name, items in _interceptors().items():
        chain = Interceptors(items)

        def draft() -> Draft:
            info = publish_info(out, "publish", None, MESSAGE)
            return Draft(info, out, lambda h: _outgoing(h, out.encoded.message_id))

        async def publish_one(chain: Interceptors = chain) -> None:
            await chain.publish_one(out, draft, sent)

        async def handle_one(chain: Interceptors = chain) -> None:
            await chain.handle(MESSAGE, ctx, handler)

        publish = await _per_message(publish_one, count, rounds)
        handle = await _per_message(handle_one, count, rounds)
        if name == "none":
            base_publish, base_handle = publish, handle
        print(
            f"{name:<22} {publish:>13.2f} {publish - base_publish:>+7.2f} "
            f"{handle:>12.2f} {handle - base_handle:>+7.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.rounds))
    wire(args.count, args.rounds)
