"""Intermediate models built by hand, so renderer tests do not depend on the loader."""

from __future__ import annotations

import dataclasses

from mmate_gen.diagnostics import Location
from mmate_gen.ir import (
    Binding,
    Constraints,
    Consume,
    EnumType,
    Exchange,
    Field,
    JsonValue,
    KeyPart,
    Message,
    PublishRoute,
    Queue,
    RecordType,
    RetryPolicy,
    Service,
    SpecSet,
    TypeRef,
)
from mmate_gen.names import snake_case

ROOT = "specs"
COMMON = "specs/common.yaml"
SHOP = "specs/shop.yaml"
OTHER = "specs/other.yaml"


def loc(path: str = SHOP, line: int = 1) -> Location:
    return Location(path, line, 1)


def scalar(name: str) -> TypeRef:
    return TypeRef("scalar", name)


def enum(name: str) -> TypeRef:
    return TypeRef("enum", name)


def record(name: str) -> TypeRef:
    return TypeRef("record", name)


def list_of(item: TypeRef) -> TypeRef:
    return TypeRef("list", "list", item)


def map_of(item: TypeRef) -> TypeRef:
    return TypeRef("map", "map", item)


def field(
    json_name: str,
    type_: TypeRef,
    *,
    nullable: bool = False,
    default: JsonValue = None,
    has_default: bool = False,
    description: str | None = None,
    constraints: Constraints | None = None,
    base: bool = False,
) -> Field:
    has_default = has_default or default is not None
    return Field(
        json_name=json_name,
        py_name=snake_case(json_name),
        type=type_,
        required=not (has_default or nullable),
        nullable=nullable,
        has_default=has_default,
        default=default,
        description=description,
        constraints=constraints or Constraints(),
        base=base,
        loc=loc(),
    )


def base_fields(kind: str) -> tuple[Field, ...]:
    string = scalar("string")
    if kind == "command":
        return (
            field("targetService", string, default="", base=True),
            field("replyTo", string, nullable=True, base=True),
        )
    if kind == "event":
        return (
            field("aggregateId", string, default="", base=True),
            field("sequence", scalar("int64"), default=0, base=True),
            field("source", string, nullable=True, base=True),
        )
    if kind == "query":
        return (field("replyTo", string, default="", base=True),)
    return (
        field("success", scalar("bool"), default=True, base=True),
        field("errorCode", string, nullable=True, base=True),
        field("errorMessage", string, nullable=True, base=True),
    )


def message(
    name: str,
    kind: str,
    fields: tuple[Field, ...],
    *,
    description: str | None = None,
    reply: str | None = None,
    spec_file: str = SHOP,
) -> Message:
    assert kind in ("command", "event", "query", "reply")
    return Message(
        name=name,
        py_name=snake_case(name),
        kind=kind,
        fields=base_fields(kind) + fields,
        description=description,
        reply=reply,
        version="1.0",
        spec_file=spec_file,
        loc=loc(spec_file),
    )


def route(msg: Message, exchange: str, template: str, *, explicit: bool = True) -> PublishRoute:
    fields = {f.json_name: f for f in msg.fields}
    parts: list[KeyPart] = []
    rest = template
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        if before:
            parts.append(KeyPart(before))
        parts.append(KeyPart("{" + name + "}", fields[name]))
    if rest:
        parts.append(KeyPart(rest))
    return PublishRoute(msg.name, exchange, template, tuple(parts), True, explicit, loc())


def main_queue(name: str, *, spec_file: str = SHOP) -> tuple[Queue, ...]:
    retry = RetryPolicy(4, "exponential", 1000, 30000, True, (1000, 2000, 4000), 0, "transient")
    waits = tuple((d, f"{name}.wait.{d}") for d in (1000, 2000, 4000))
    main = Queue(
        name=name,
        role="main",
        queue_type="classic",
        durable=True,
        exclusive=False,
        auto_delete=False,
        fifo=False,
        arguments=(
            ("x-dead-letter-exchange", ""),
            ("x-dead-letter-routing-key", f"{name}.dlq"),
        ),
        prefetch=20,
        concurrency=10,
        retry=retry,
        dead_letter_queue=f"{name}.dlq",
        wait_queues=waits,
        max_message_bytes=None,
        origin=None,
        loc=loc(spec_file),
    )
    dlq = Queue(
        f"{name}.dlq", "dead-letter", "classic", True, False, False, False, (), 20, 10, None, None,
        (), None, name, loc(spec_file),
    )  # fmt: skip
    wait = [
        dataclasses.replace(
            dlq,
            name=wait_name,
            role="wait",
            arguments=(
                ("x-dead-letter-exchange", ""),
                ("x-dead-letter-routing-key", name),
                ("x-message-ttl", delay),
            ),
        )
        for delay, wait_name in waits
    ]
    return (main, dlq, *wait)


def builtin_exchanges() -> tuple[Exchange, ...]:
    names = (
        "mmate.commands",
        "mmate.contracts",
        "mmate.dlx",
        "mmate.events",
        "mmate.messages",
        "mmate.queries",
    )
    return tuple(Exchange(n, "topic", True, False, True, None) for n in names)


TRICKY_DESCRIPTION = 'Says "hi" with a \\ backslash, a """triple""" quote and {braces}.'


def shop_spec() -> SpecSet:
    """A small system exercising every scalar, containers, optional fields, enums, records, every
    kind, routes with enum/string/int placeholders, and services with and without each class."""
    region = EnumType(
        "Region", ("eu", "us", "in-progress", "1st"), "Sales region.", COMMON, loc(COMMON)
    )
    color = EnumType("Color", ("red", "green"), TRICKY_DESCRIPTION, OTHER, loc(OTHER))
    line = RecordType(
        "OrderLine",
        (
            field("productId", scalar("string")),
            field("quantity", scalar("int"), constraints=Constraints(minimum=1)),
            field("unitPrice", scalar("decimal"), constraints=Constraints(minimum=0)),
        ),
        "One product line.",
        COMMON,
        loc(COMMON),
    )
    address = RecordType(
        "Address",
        (field("street", scalar("string")), field("color", enum("Color"), default="green")),
        None,
        OTHER,
        loc(OTHER),
    )
    order = RecordType(
        "Order",
        (
            field("orderId", scalar("string")),
            field("lines", list_of(record("OrderLine"))),
            field("shipTo", record("Address"), nullable=True),
            field("tags", map_of(scalar("string")), default={}),
        ),
        "An order.",
        COMMON,
        loc(COMMON),
    )
    created = message(
        "OrderCreatedEvent",
        "event",
        (
            field("orderId", scalar("string")),
            field("amount", scalar("float"), constraints=Constraints(minimum=0)),
            field("region", enum("Region"), default="eu"),
            field("count", scalar("int")),
        ),
        description="An order was created.",
    )
    create = message(
        "CreateOrderCommand",
        "command",
        (
            field("customerId", scalar("string"), constraints=Constraints(min_length=1)),
            field("region", enum("Region")),
            field("lines", list_of(record("OrderLine")), constraints=Constraints(min_length=1)),
        ),
        description=TRICKY_DESCRIPTION,
    )
    everything = message(
        "EverythingCommand",
        "command",
        (
            field(
                "text", scalar("string"), constraints=Constraints(max_length=10, pattern="^[a-z]+$")
            ),
            field("small", scalar("int"), constraints=Constraints(minimum=-5, maximum=5)),
            field("big", scalar("int64"), description="A big one."),
            field("ratio", scalar("float"), default=0.5),
            field("price", scalar("decimal"), constraints=Constraints(minimum=0, maximum=1000)),
            field("flag", scalar("bool"), default=False),
            field("at", scalar("datetime")),
            field("day", scalar("date"), nullable=True),
            field("ref", scalar("uuid")),
            field("blob", scalar("bytes")),
            field("maybeBlob", scalar("bytes"), nullable=True),
            field("tags", list_of(scalar("string")), constraints=Constraints(max_length=3)),
            field("scores", map_of(scalar("int64")), constraints=Constraints(min_length=1)),
            field("color", enum("Color"), nullable=True),
            field("colors", list_of(enum("Color")), default=[]),
            field("ship", record("Address"), nullable=True, default=None),
        ),
        spec_file=OTHER,
    )
    get = message(
        "GetOrderQuery",
        "query",
        (field("orderId", scalar("string")),),
        description="Look an order up.",
        reply="OrderReply",
    )
    reply = message(
        "OrderReply", "reply", (field("order", record("Order"), nullable=True),), spec_file=COMMON
    )
    messages = (create, everything, get, created, reply)
    queues = main_queue("shop-queue") + main_queue("audit-queue", spec_file=OTHER)
    bindings = (
        Binding("mmate.events", "audit-queue", "order.*.created", (), loc(OTHER)),
        Binding("mmate.commands", "shop-queue", "cmd.shop.*", (), loc()),
        Binding("mmate.queries", "shop-queue", "qry.GetOrderQuery", (), loc()),
    )
    shop = Service(
        name="shop",
        py_name="shop",
        class_prefix="Shop",
        publishes=(
            route(created, "mmate.events", "order.{region}.created.{orderId}.{count}"),
            route(everything, "mmate.commands", "cmd.shop.EverythingCommand"),
        ),
        consumes=(
            Consume(
                "shop-queue", ("CreateOrderCommand", "EverythingCommand", "GetOrderQuery"), loc()
            ),
        ),
        spec_file=SHOP,
        loc=loc(),
    )
    audit = Service(
        "order-audit", "order_audit", "OrderAudit", (),
        (Consume("audit-queue", ("OrderCreatedEvent",), loc(OTHER)),), OTHER, loc(OTHER),
    )  # fmt: skip
    storefront = Service(
        name="storefront",
        py_name="storefront",
        class_prefix="Storefront",
        publishes=(
            route(create, "mmate.commands", "cmd.shop.CreateOrderCommand"),
            route(get, "mmate.queries", "qry.GetOrderQuery", explicit=False),
        ),
        consumes=(),
        spec_file=SHOP,
        loc=loc(),
    )
    return SpecSet(
        root=ROOT,
        files=(COMMON, OTHER, SHOP),
        enums=(color, region),
        records=(address, order, line),
        messages=tuple(sorted(messages, key=lambda m: m.name)),
        exchanges=builtin_exchanges(),
        queues=tuple(sorted(queues, key=lambda q: q.name)),
        bindings=bindings,
        services=(audit, shop, storefront),
    )
