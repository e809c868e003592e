"""Everything a spec set wants on the broker: the exchanges its services use and the ones it
defines, every queue (main, dead-letter, wait), every binding, and (by default) the delay cascade
that a client declares on its first delayed publish (and relays while it serves).

Quorum queues carry the placement arguments a client adds with its default settings
(``x-queue-leader-locator: balanced``), except queues declared exactly as Go Mmate declares them,
so definitions exported from the specs create what a client would have declared."""

from __future__ import annotations

from dataclasses import replace

from mmate._topology.placement import QueuePlacement

from ..ir import Queue, SpecSet
from .delay_cascade import DEFAULT_PREFIX, cascade_entities
from .delay_cascade import WHAT as CASCADE
from .entities import Arguments, BindingEntity, Entities, ExchangeEntity, QueueEntity, arguments

__all__ = ["CASCADE", "queue_what", "used_exchanges", "wanted_entities"]


def queue_what(queue: Queue) -> str:
    if queue.role == "dead-letter":
        return f"dead-letter queue of {queue.origin}"
    if queue.role == "wait":
        ttl = dict(queue.arguments).get("x-message-ttl")  # a wait queue's delay is its TTL
        return f"wait queue ({ttl} ms) of {queue.origin}"
    return "queue of the specs"


def used_exchanges(spec: SpecSet) -> set[str]:
    """Exchanges some publish route, binding or dead-letter route of the specs names, and every
    exchange the specs define themselves."""
    names = {e.name for e in spec.exchanges if not e.builtin}
    names |= {b.exchange for b in spec.bindings}
    names |= {r.exchange for s in spec.services for r in s.publishes}
    for queue in spec.queues:
        target = dict(queue.arguments).get("x-dead-letter-exchange")
        if isinstance(target, str) and target:
            names.add(target)
    return names


DEFAULT_PLACEMENT = QueuePlacement()
"""What a client with default settings adds to the quorum queues it declares."""


def placed(args: Arguments, placement: QueuePlacement) -> Arguments:
    """``args`` with the placement arguments ``placement`` adds to them (none to classic queues)."""
    extra = placement.added(dict(args))
    return arguments([*args, *extra.items()]) if extra else args


def wanted_entities(
    spec: SpecSet,
    *,
    delay_cascade: bool = True,
    delay_prefix: str = DEFAULT_PREFIX,
    placement: QueuePlacement = DEFAULT_PLACEMENT,
) -> Entities:
    used = used_exchanges(spec)
    exchanges = [
        ExchangeEntity(
            e.name,
            e.type,
            e.durable,
            e.auto_delete,
            (),
            "built-in Mmate exchange" if e.builtin else "exchange of the specs",
            e.loc,
        )
        for e in spec.exchanges
        if e.name in used
    ]
    queues: list[QueueEntity] = []
    skipped: list[str] = []
    for q in spec.queues:
        if q.exclusive:
            skipped.append(
                f"queue {q.name}: exclusive, it exists only while the connection that declared "
                "it is open"
            )
            continue
        args = q.arguments if q.go_compatible else placed(q.arguments, placement)
        queues.append(
            QueueEntity(q.name, q.durable, False, q.auto_delete, args, queue_what(q), q.loc)
        )
    kept = {q.name for q in queues}
    bindings = [
        BindingEntity(b.exchange, b.queue, "queue", b.routing_key, b.arguments, loc=b.loc)
        for b in spec.bindings
        if b.queue in kept
    ]
    if delay_cascade:
        c_exchanges, c_queues, c_bindings = cascade_entities(delay_prefix)
        exchanges += c_exchanges
        queues += [replace(c, arguments=placed(c.arguments, placement)) for c in c_queues]
        bindings += c_bindings
    return Entities(
        exchanges=tuple(sorted(exchanges, key=lambda e: e.name)),
        queues=tuple(sorted(queues, key=lambda q: q.name)),
        bindings=tuple(sorted(bindings, key=lambda b: b.key)),
        skipped=tuple(skipped),
    )
