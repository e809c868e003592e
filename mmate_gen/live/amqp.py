"""Talking to the broker over AMQP through the runtime's public API only: existence checks
(``Client.declare(..., passive=True)`` of one entity at a time, ``EntityNotFound`` meaning
missing) when the management API cannot be used, and the declares of ``mmate topology apply``."""

from __future__ import annotations

from mmate import (
    BindingDef,
    Client,
    EntityNotFound,
    ExchangeDef,
    QueueDef,
    ServiceTopology,
)

from ..broker.entities import Entities, ExchangeEntity, QueueEntity
from ..broker.wanted import CASCADE
from .compare import Item, Plan

SERVICE = "mmate-topology"


def _topology(
    exchanges: tuple[ExchangeDef, ...] = (),
    queues: tuple[QueueDef, ...] = (),
    bindings: tuple[BindingDef, ...] = (),
) -> ServiceTopology:
    return ServiceTopology(
        name=SERVICE,
        exchanges=exchanges,
        queues=queues,
        bindings=bindings,
        publishes={},
        consumes={},
        messages={},
    )


def exchange_def(e: ExchangeEntity) -> ExchangeDef:
    kind = e.type if e.type in ("topic", "direct", "fanout", "headers") else "topic"
    return ExchangeDef(e.name, kind, e.durable, e.auto_delete)  # type: ignore[arg-type]


def queue_def(q: QueueEntity) -> QueueDef:
    return QueueDef(q.name, q.durable, q.exclusive, q.auto_delete, dict(q.arguments))


async def probe(client: Client, wanted: Entities) -> Plan:
    """Which exchanges and queues exist, by passive declares; nothing else can be known."""
    items: list[Item] = []
    for e in wanted.exchanges:
        try:
            await client.declare(_topology(exchanges=(exchange_def(e),)), passive=True)
        except EntityNotFound:
            items.append(Item("exchange", e.name, "missing", e.what, wanted=e))
        else:
            items.append(Item("exchange", e.name, "exists", e.what, wanted=e))
    for q in wanted.queues:
        try:
            await client.declare(_topology(queues=(queue_def(q),)), passive=True)
        except EntityNotFound:
            items.append(Item("queue", q.name, "missing", q.what, wanted=q))
        else:
            items.append(Item("queue", q.name, "exists", q.what, wanted=q))
    found = len([i for i in items if i.status == "exists"])
    not_compared = [
        f"type, flags and arguments of the {found} exchanges and queues that exist "
        "(a passive declare only says whether they exist)",
        f"whether the {len(wanted.bindings)} bindings exist",
        "extra entities on the broker (listing them needs the management API)",
    ]
    return Plan(items, "AMQP passive declares", not_compared, list(wanted.skipped))


async def declare_missing(client: Client, plan: Plan, wanted: Entities) -> list[str]:
    """Declare what the plan found missing (and, over AMQP only, every binding: binding is
    idempotent and never refused); the cascade through the client's own delay service. Returns
    what was declared, for the report."""
    missing = {(i.kind, i.name) for i in plan.having("missing")}
    cascade = any(
        i.wanted is not None and i.wanted.what == CASCADE for i in plan.having("missing")
    ) or (plan.source != "management API" and any(b.what == CASCADE for b in wanted.bindings))
    exchanges = tuple(
        exchange_def(e)
        for e in wanted.exchanges
        if ("exchange", e.name) in missing and e.what != CASCADE
    )
    queues = tuple(
        queue_def(q) for q in wanted.queues if ("queue", q.name) in missing and q.what != CASCADE
    )
    bindings = tuple(
        BindingDef(b.source, b.destination, b.routing_key, dict(b.arguments))
        for b in wanted.bindings
        if b.what != CASCADE
        and b.destination_type == "queue"
        and (plan.source != "management API" or ("binding", b.describe()) in missing)
    )
    done: list[str] = []
    if exchanges or queues or bindings:
        await client.declare(_topology(exchanges, queues, bindings))
        done += [f"exchange {e.name}" for e in exchanges]
        done += [f"queue {q.name}" for q in queues]
        done += [f"binding {b.exchange} -> queue {b.queue} ({b.routing_key!r})" for b in bindings]
    if cascade:
        await client.delays.ensure()
        done.append("the delay cascade (through the client's delay service)")
    return done
