"""A one-queue service in the generated shape with a retry policy, wait queues and a dead-letter
queue, for the failure-handling tests (retry, dead letters, poison, breaker). Names carry a unique
suffix; ``FailureApp.queues`` / ``.exchanges`` list everything to delete afterwards.

The handler class records every call and fails as ``behaviour(message, ctx, call_number)`` says
(raise to fail, return to succeed).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Unpack

import pytest
from backends import TestBackend
from conftest import _cleanup
from mmate import (
    BindingDef,
    ExchangeDef,
    HandlerBase,
    HandlerRoute,
    MessageContext,
    Publisher,
    PublishOptions,
    PublishRoute,
    QueueDef,
    RetryPolicy,
    ServiceTopology,
)
from pamqp.commands import Basic
from sample_app import MESSAGES, CreateOrderCommand

Behaviour = Callable[[CreateOrderCommand, MessageContext, int], None]


@dataclass
class Call:
    customer_id: str
    attempt: int
    headers: dict[str, Any]
    message_id: str


@dataclass
class FailureApp:
    exchange: str
    queue: str
    dlq: str
    wait_queues: dict[int, str]
    topology: ServiceTopology
    publisher: type[Publisher]
    extra_queues: list[str] = field(default_factory=list)
    extra_exchanges: list[str] = field(default_factory=list)

    @property
    def queues(self) -> list[str]:
        return [self.queue, self.dlq, *self.wait_queues.values(), *self.extra_queues]

    @property
    def exchanges(self) -> list[str]:
        return [self.exchange, *self.extra_exchanges]

    def handlers(self, behaviour: Behaviour | None = None) -> RecordingHandlers:
        cls = type(
            "OrderHandlers",
            (RecordingHandlers,),
            {"TOPOLOGY": self.topology},
        )
        handlers: RecordingHandlers = cls(behaviour)
        return handlers


class RecordingHandlers(HandlerBase):
    TOPOLOGY: ClassVar[ServiceTopology]

    def __init__(self, behaviour: Behaviour | None) -> None:
        self.behaviour = behaviour
        self.calls: list[Call] = []
        self.handled: list[str] = []
        """Message ids whose handler call returned."""

    async def handle_create_order_command(
        self, message: CreateOrderCommand, ctx: MessageContext
    ) -> None:
        self.calls.append(Call(message.customer_id, ctx.attempt, dict(ctx.headers), ctx.message_id))
        n = sum(1 for c in self.calls if c.message_id == ctx.message_id)
        if self.behaviour is not None:
            self.behaviour(message, ctx, n)
        self.handled.append(ctx.message_id)


def make_failure_app(
    *,
    attempts: int = 3,
    tiers: tuple[int, ...] = (100, 200),
    delays: tuple[int, ...] | None = None,
    jitter: bool = False,
    immediate: int = 0,
    unknown_errors: Literal["transient", "permanent"] = "transient",
    max_message_bytes: int | None = None,
    retry: bool = True,
    prefetch: int = 10,
    concurrency: int = 10,
    queue_type: Literal["classic", "quorum"] = "classic",
) -> FailureApp:
    s = uuid.uuid4().hex[:10]
    exchange = f"t.{s}.commands"
    queue = f"t.{s}.fail-queue"
    dlq = f"{queue}.dlq"
    waits = {ms: f"{queue}.wait.{ms}" for ms in tiers} if retry else {}
    type_args: dict[str, str | int | bool] = (
        {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
    )
    policy = (
        RetryPolicy(
            attempts=attempts,
            backoff="exponential",
            initial_delay_ms=tiers[0],
            max_delay_ms=tiers[-1],
            jitter=jitter,
            delays_ms=delays if delays is not None else tuple(tiers[: max(attempts - 1, 0)]),
            immediate=immediate,
            unknown_errors=unknown_errors,
        )
        if retry
        else None
    )
    main_args: dict[str, str | int | bool] = {
        **type_args,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dlq,
    }
    if queue_type == "quorum":
        main_args["x-delivery-limit"] = attempts + 10
    main = QueueDef(
        queue,
        arguments=main_args,
        prefetch=prefetch,
        concurrency=concurrency,
        retry=policy,
        dead_letter_queue=dlq,
        wait_queues=waits,
        max_message_bytes=max_message_bytes,
    )
    wait_defs = tuple(
        QueueDef(
            name,
            arguments={
                **type_args,
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
            },
            role="wait",
        )
        for ms, name in waits.items()
    )
    message = MESSAGES["CreateOrderCommand"]
    route = PublishRoute(message, exchange, "cmd.fail.CreateOrderCommand")
    topology = ServiceTopology(
        name="fail-service",
        exchanges=(ExchangeDef(exchange),),
        queues=(main, QueueDef(dlq, arguments=type_args, role="dead-letter"), *wait_defs),
        bindings=(BindingDef(exchange, queue, "cmd.fail.*"),),
        publishes={"CreateOrderCommand": route},
        consumes={
            queue: {"CreateOrderCommand": HandlerRoute(message, "handle_create_order_command")}
        },
        messages={"CreateOrderCommand": message},
    )

    class FailPublisher(Publisher):
        TOPOLOGY: ClassVar[ServiceTopology] = topology

        async def send_create_order_command(
            self, message: CreateOrderCommand, **options: Unpack[PublishOptions]
        ) -> None:
            await self._transport.publish(route, message, "cmd.fail.CreateOrderCommand", options)

    return FailureApp(exchange, queue, dlq, waits, topology, FailPublisher)


AppFactory = Callable[..., FailureApp]


@pytest.fixture
async def failure_app(backend: TestBackend) -> AsyncIterator[AppFactory]:
    """``failure_app(**options)`` builds a ``make_failure_app``; all are deleted after the test
    (on RabbitMQ; a memory broker is dropped whole)."""
    made: list[FailureApp] = []

    def make(**options: Any) -> FailureApp:
        app = make_failure_app(**options)
        made.append(app)
        return app

    yield make
    if backend.memory:
        return
    for app in made:
        await _cleanup(app.queues, app.exchanges)


async def drain(channel: Any, queue: str) -> list[Any]:
    """Every message in ``queue`` (taken with ``get``, acked): seam ``Delivery`` values through
    a seam channel (``probe``), aiormq messages through a raw aiormq channel."""
    got: list[Any] = []
    if hasattr(channel, "declare_queue"):
        while (delivery := await channel.get(queue, no_ack=True)) is not None:
            got.append(delivery)
        return got
    while True:
        message = await channel.basic_get(queue, no_ack=True)
        if isinstance(message.delivery, Basic.GetEmpty):
            return got
        got.append(message)
