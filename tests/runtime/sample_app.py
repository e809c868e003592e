"""A hand-written stand-in for generated code (docs/generated-shape.md), so runtime tests do not
depend on the generator. ``make_app(suffix)`` builds a topology whose exchanges and queues carry a
unique suffix, plus the Publisher and Handlers classes the generator would write for it.
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, ClassVar, Unpack

from mmate import (
    BindingDef,
    ExchangeDef,
    HandlerBase,
    HandlerFactory,
    HandlerFunc,
    HandlerRegistry,
    HandlerRoute,
    JsonDecimal,
    MessageContext,
    MessageDef,
    Model,
    Publisher,
    PublishOptions,
    PublishRoute,
    QueueDef,
    ServiceTopology,
)
from pydantic import Field


class Region(StrEnum):
    EU = "eu"
    US = "us"


class OrderCreatedEvent(Model):
    """An order was created."""

    aggregate_id: Annotated[str, Field(alias="aggregateId")] = ""
    sequence: int = 0
    source: str | None = None
    order_id: Annotated[str, Field(alias="orderId")]
    customer_id: Annotated[str, Field(alias="customerId")]
    amount: float
    region: Region = Region.EU


class CreateOrderCommand(Model):
    target_service: Annotated[str, Field(alias="targetService")] = ""
    reply_to: Annotated[str | None, Field(alias="replyTo")] = None
    customer_id: Annotated[str, Field(alias="customerId", min_length=1)]
    amount: JsonDecimal


class GetOrderQuery(Model):
    reply_to: Annotated[str, Field(alias="replyTo")] = ""
    order_id: Annotated[str, Field(alias="orderId")]


class OrderReply(Model):
    success: bool = True
    error_code: Annotated[str | None, Field(alias="errorCode")] = None
    error_message: Annotated[str | None, Field(alias="errorMessage")] = None
    order_id: Annotated[str, Field(alias="orderId")]
    """Required: error replies cannot be built from this model."""
    status: str = "unknown"


class BankingRequest(Model):
    target_service: Annotated[str, Field(alias="targetService")] = ""
    reply_to: Annotated[str | None, Field(alias="replyTo")] = None
    sequence_no: Annotated[int, Field(alias="sequenceNo")]
    amount: JsonDecimal


MESSAGES = {
    "OrderCreatedEvent": MessageDef("OrderCreatedEvent", "event", OrderCreatedEvent, "1.0"),
    "CreateOrderCommand": MessageDef("CreateOrderCommand", "command", CreateOrderCommand, "1.0"),
    "GetOrderQuery": MessageDef("GetOrderQuery", "query", GetOrderQuery, "1.0", reply="OrderReply"),
    "OrderReply": MessageDef("OrderReply", "reply", OrderReply, "1.0"),
    "BankingRequest": MessageDef("BankingRequest", "command", BankingRequest, "2.1"),
}


def _dlq_args(queue: str) -> dict[str, str | int | bool]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.dlq"}


class OrderRoutes(HandlerRegistry):
    """The generated ``Routes`` shape of the sample order service (``make_app`` subclasses it
    with the app's own ``TOPOLOGY``)."""

    def handle_create_order_command(
        self, handler: HandlerFunc[CreateOrderCommand, None]
    ) -> HandlerFunc[CreateOrderCommand, None]:
        return self._add("CreateOrderCommand", handler)

    def handle_create_order_command_with(
        self, factory: HandlerFactory[CreateOrderCommand, None]
    ) -> HandlerFactory[CreateOrderCommand, None]:
        return self._add_factory("CreateOrderCommand", factory)

    def handle_get_order_query(
        self, handler: HandlerFunc[GetOrderQuery, OrderReply]
    ) -> HandlerFunc[GetOrderQuery, OrderReply]:
        return self._add("GetOrderQuery", handler)

    def handle_get_order_query_with(
        self, factory: HandlerFactory[GetOrderQuery, OrderReply]
    ) -> HandlerFactory[GetOrderQuery, OrderReply]:
        return self._add_factory("GetOrderQuery", factory)

    def handle_order_created_event(
        self, handler: HandlerFunc[OrderCreatedEvent, None]
    ) -> HandlerFunc[OrderCreatedEvent, None]:
        return self._add("OrderCreatedEvent", handler)

    def handle_order_created_event_with(
        self, factory: HandlerFactory[OrderCreatedEvent, None]
    ) -> HandlerFactory[OrderCreatedEvent, None]:
        return self._add_factory("OrderCreatedEvent", factory)


@dataclass
class App:
    suffix: str
    events: str
    commands: str
    queries: str
    banking: str
    order_queue: str
    audit_queue: str
    fifo_queue: str
    order_service: ServiceTopology
    banking_service: ServiceTopology
    publisher: type[Publisher]
    handlers: type[HandlerBase]
    routes: type[OrderRoutes]
    banking_publisher: type[Publisher]
    banking_handlers: type[HandlerBase]

    @property
    def queues(self) -> list[str]:
        names = [self.order_queue, self.audit_queue, self.fifo_queue]
        return names + [f"{n}.dlq" for n in names]

    @property
    def exchanges(self) -> list[str]:
        return [self.events, self.commands, self.queries, self.banking]


def make_app(
    suffix: str | None = None, *, order_prefetch: int = 20, audit_consumers: int = 1
) -> App:
    s = suffix or uuid.uuid4().hex[:10]
    events, commands, queries, banking = (
        f"t.{s}.{n}" for n in ("events", "commands", "queries", "banking")
    )
    order_q, audit_q, fifo_q = (
        f"t.{s}.order-service-queue",
        f"t.{s}.audit-queue",
        f"t.{s}.banking-queue",
    )
    ex = {n: ExchangeDef(n) for n in (events, commands, queries, banking)}

    def main(
        name: str,
        prefetch: int = 10,
        concurrency: int = 10,
        consumers: int = 1,
        **extra: str | int | bool,
    ) -> QueueDef:
        return QueueDef(
            name,
            arguments={**_dlq_args(name), **extra},
            prefetch=prefetch,
            concurrency=concurrency,
            consumers=consumers,
            dead_letter_queue=f"{name}.dlq",
        )

    def dlq(name: str) -> QueueDef:
        return QueueDef(f"{name}.dlq", role="dead-letter")

    order_service = ServiceTopology(
        name="order-service",
        exchanges=(ex[events], ex[commands], ex[queries]),
        queues=(
            main(order_q, prefetch=order_prefetch, concurrency=10),
            dlq(order_q),
            main(audit_q, consumers=audit_consumers),
            dlq(audit_q),
        ),
        bindings=(
            BindingDef(commands, order_q, "cmd.order-service.*"),
            BindingDef(queries, order_q, "qry.GetOrderQuery"),
            BindingDef(events, audit_q, "order.*.created"),
        ),
        publishes={
            "OrderCreatedEvent": PublishRoute(
                MESSAGES["OrderCreatedEvent"], events, "order.{region}.created"
            ),
            "CreateOrderCommand": PublishRoute(
                MESSAGES["CreateOrderCommand"], commands, "cmd.order-service.CreateOrderCommand"
            ),
            "GetOrderQuery": PublishRoute(MESSAGES["GetOrderQuery"], queries, "qry.GetOrderQuery"),
        },
        consumes={
            order_q: {
                "CreateOrderCommand": HandlerRoute(
                    MESSAGES["CreateOrderCommand"], "handle_create_order_command"
                ),
                "GetOrderQuery": HandlerRoute(MESSAGES["GetOrderQuery"], "handle_get_order_query"),
            },
            audit_q: {
                "OrderCreatedEvent": HandlerRoute(
                    MESSAGES["OrderCreatedEvent"], "handle_order_created_event"
                ),
            },
        },
        messages={
            k: MESSAGES[k]
            for k in ("OrderCreatedEvent", "CreateOrderCommand", "GetOrderQuery", "OrderReply")
        },
    )
    banking_service = ServiceTopology(
        name="banking-service",
        exchanges=(ex[banking],),
        queues=(
            main(fifo_q, prefetch=1, concurrency=1, **{"x-single-active-consumer": True}),
            dlq(fifo_q),
        ),
        bindings=(BindingDef(banking, fifo_q, "banking.service.*"),),
        publishes={
            "BankingRequest": PublishRoute(
                MESSAGES["BankingRequest"], banking, "banking.service.{operation}"
            )
        },
        consumes={
            fifo_q: {
                "BankingRequest": HandlerRoute(MESSAGES["BankingRequest"], "handle_banking_request")
            }
        },
        messages={"BankingRequest": MESSAGES["BankingRequest"]},
    )
    routes = order_service.publishes

    class OrderServicePublisher(Publisher):
        TOPOLOGY: ClassVar[ServiceTopology] = order_service

        async def publish_order_created_event(
            self, message: OrderCreatedEvent, **options: Unpack[PublishOptions]
        ) -> None:
            await self._transport.publish(
                routes["OrderCreatedEvent"],
                message,
                f"order.{message.region.value}.created",
                options,
            )

        async def send_create_order_command(
            self, message: CreateOrderCommand, **options: Unpack[PublishOptions]
        ) -> None:
            await self._transport.publish(
                routes["CreateOrderCommand"],
                message,
                "cmd.order-service.CreateOrderCommand",
                options,
            )

        async def request_get_order_query(
            self, message: GetOrderQuery, **options: Unpack[PublishOptions]
        ) -> OrderReply:
            return await self._transport.request(
                routes["GetOrderQuery"], message, "qry.GetOrderQuery", OrderReply, options
            )

    class OrderServiceHandlers(HandlerBase):
        TOPOLOGY: ClassVar[ServiceTopology] = order_service

        @abstractmethod
        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None: ...

        @abstractmethod
        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: MessageContext
        ) -> OrderReply: ...

        @abstractmethod
        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: MessageContext
        ) -> None: ...

    class OrderServiceRoutes(OrderRoutes):
        TOPOLOGY: ClassVar[ServiceTopology] = order_service

    class BankingServicePublisher(Publisher):
        TOPOLOGY: ClassVar[ServiceTopology] = banking_service

        async def send_banking_request(
            self, message: BankingRequest, **options: Unpack[PublishOptions]
        ) -> None:
            await self._transport.publish(
                banking_service.publishes["BankingRequest"],
                message,
                "banking.service.transfer",
                options,
            )

    class BankingServiceHandlers(HandlerBase):
        TOPOLOGY: ClassVar[ServiceTopology] = banking_service

        @abstractmethod
        async def handle_banking_request(
            self, message: BankingRequest, ctx: MessageContext
        ) -> None: ...

    return App(
        suffix=s,
        events=events,
        commands=commands,
        queries=queries,
        banking=banking,
        order_queue=order_q,
        audit_queue=audit_q,
        fifo_queue=fifo_q,
        order_service=order_service,
        banking_service=banking_service,
        publisher=OrderServicePublisher,
        handlers=OrderServiceHandlers,
        routes=OrderServiceRoutes,
        banking_publisher=BankingServicePublisher,
        banking_handlers=BankingServiceHandlers,
    )
