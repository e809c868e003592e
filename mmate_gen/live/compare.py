"""The specs' entities against what a vhost holds: each one ok, missing, different (a declare
would be refused with 406 PRECONDITION_FAILED), found but not compared (AMQP only), or extra
(on the broker, not in the specs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmate._topology.placement import INITIAL_GROUP_SIZE, LEADER_LOCATOR

from ..broker.entities import Arguments, BindingEntity, Entities, ExchangeEntity, QueueEntity
from .management import BrokerState

Status = Literal["ok", "missing", "different", "exists", "extra"]
Kind = Literal["exchange", "queue", "binding"]
KIND_ORDER = {"exchange": 0, "queue": 1, "binding": 2}


@dataclass(frozen=True, slots=True)
class Item:
    kind: Kind
    name: str
    status: Status
    what: str
    """Why the specs want it (``dead-letter queue of ...``), or what it is on the broker."""
    detail: str = ""
    """For ``different``: each setting, broker value against spec value; for ``extra`` queues:
    their message count."""
    wanted: ExchangeEntity | QueueEntity | BindingEntity | None = None


@dataclass
class Plan:
    items: list[Item]
    source: str
    """How the broker was read: ``management API`` or ``AMQP passive declares``."""
    not_compared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def having(self, *statuses: Status) -> list[Item]:
        return [i for i in self.items if i.status in statuses]

    @property
    def problems(self) -> list[Item]:
        return self.having("missing", "different")


def _typed(args: Arguments) -> dict[str, tuple[str, object]]:
    """Arguments compared with their kind: True is not 1, 1000 is 1000.0."""
    out: dict[str, tuple[str, object]] = {}
    for key, value in args:
        if isinstance(value, bool):
            out[key] = ("bool", value)
        elif isinstance(value, int | float):
            out[key] = ("number", float(value))
        else:
            out[key] = ("string", value)
    return out


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def argument_differences(broker: Arguments, wanted: Arguments) -> list[str]:
    have, want = _typed(broker), _typed(wanted)
    shown_have, shown_want = dict(broker), dict(wanted)
    out: list[str] = []
    for key in sorted(have.keys() | want.keys()):
        if have.get(key) != want.get(key):
            b = _show(shown_have[key]) if key in shown_have else "unset"
            w = _show(shown_want[key]) if key in shown_want else "unset"
            out.append(f"{key}: broker {b}, specs {w}")
    return out


def _flags(pairs: list[tuple[str, object, object]]) -> list[str]:
    def plain(value: object) -> str:
        return _show(value) if isinstance(value, bool) else str(value)

    return [f"{name}: broker {plain(b)}, specs {plain(w)}" for name, b, w in pairs if b != w]


def exchange_differences(broker: ExchangeEntity, wanted: ExchangeEntity) -> list[str]:
    return _flags(
        [
            ("type", broker.type, wanted.type),
            ("durable", broker.durable, wanted.durable),
            ("auto_delete", broker.auto_delete, wanted.auto_delete),
        ]
    ) + argument_differences(broker.arguments, wanted.arguments)


PLACEMENT_ARGUMENTS = frozenset({LEADER_LOCATOR, INITIAL_GROUP_SIZE})
"""Not compared: a client declaring a queue that has other placement arguments (or none) uses
the queue as it is instead of failing with 406 (``mmate._topology.placement``)."""


def queue_differences(broker: QueueEntity, wanted: QueueEntity) -> list[str]:
    def unplaced(args: Arguments) -> Arguments:
        return tuple((k, v) for k, v in args if k not in PLACEMENT_ARGUMENTS)

    return _flags(
        [
            ("durable", broker.durable, wanted.durable),
            ("exclusive", broker.exclusive, wanted.exclusive),
            ("auto_delete", broker.auto_delete, wanted.auto_delete),
        ]
    ) + argument_differences(unplaced(broker.arguments), unplaced(wanted.arguments))


def _predeclared(name: str) -> bool:
    return name == "" or name.startswith("amq.")


def compare(wanted: Entities, state: BrokerState) -> Plan:
    items: list[Item] = []
    for e in wanted.exchanges:
        have = state.exchanges.get(e.name)
        if have is None:
            items.append(Item("exchange", e.name, "missing", e.what, wanted=e))
            continue
        diffs = exchange_differences(have, e)
        status: Status = "different" if diffs else "ok"
        items.append(Item("exchange", e.name, status, e.what, "; ".join(diffs), e))
    for q in wanted.queues:
        have_queue = state.queues.get(q.name)
        if have_queue is None:
            items.append(Item("queue", q.name, "missing", q.what, wanted=q))
            continue
        diffs = queue_differences(have_queue, q)
        status = "different" if diffs else "ok"
        items.append(Item("queue", q.name, status, q.what, "; ".join(diffs), q))
    for b in wanted.bindings:
        status = "ok" if b.key in state.bindings else "missing"
        items.append(Item("binding", b.describe(), status, b.what, wanted=b))
    names = {e.name for e in wanted.exchanges}
    for name, have in sorted(state.exchanges.items()):
        if name not in names and not _predeclared(name):
            items.append(Item("exchange", name, "extra", f"{have.type} exchange"))
    queue_names = {q.name for q in wanted.queues}
    for name, have_queue in sorted(state.queues.items()):
        if name not in queue_names:
            count = state.messages.get(name)
            shown = "message count not known yet" if count is None else f"{count} messages"
            flags = [f for f, on in (("exclusive", have_queue.exclusive),
                                     ("auto-delete", have_queue.auto_delete)) if on]  # fmt: skip
            what = " ".join([*flags, f"{have_queue.queue_type} queue"])
            items.append(Item("queue", name, "extra", what, shown))
    keys = {b.key for b in wanted.bindings}
    for key, have_binding in sorted(state.bindings.items(), key=lambda kv: str(kv[0])):
        if key not in keys:
            items.append(Item("binding", have_binding.describe(), "extra", "binding"))
    return Plan(items, "management API", skipped=list(wanted.skipped))
