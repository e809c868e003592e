"""TOPOLOGY: what the broker refuses on redeclare (406) and what strands messages.

Queues (main, dead-letter and wait), exchanges and bindings are matched by name (a binding by
exchange, queue, pattern and arguments); publish routes by service and message. Which queues a
route reaches is decided with the same matching the generator's checks use
(``mmate_gen.routing.route_reaches``).

A removed durable queue is flagged as breaking: the specs cannot know whether it still holds
messages on the broker, so the migration points at ``mmate topology verify``, which lists it as an
extra entity with its message count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from ..diagnostics import Location
from ..ir import ArgValue, Binding, Exchange, PublishRoute, Queue, RetryPolicy, Service, SpecSet
from ..routing import TemplatePart, route_reaches, template_words
from .findings import Finding, finding

ARGUMENT_RULES: Mapping[str, str] = {
    "x-dead-letter-exchange": "dead-letter-route-changed",
    "x-dead-letter-routing-key": "dead-letter-route-changed",
}
"""Queue argument -> rule when it changes; any other argument: ``queue-arguments-changed``
(``x-queue-type`` is reported as ``queue-type-changed``)."""

QUEUE_FLAGS: tuple[tuple[str, Callable[[Queue], object]], ...] = (
    ("durable", lambda q: q.durable),
    ("exclusive", lambda q: q.exclusive),
    ("auto_delete", lambda q: q.auto_delete),
)
"""Declare flags of a queue: a change is ``queue-flags-changed`` (406)."""

CONSUMER_SETTINGS: tuple[tuple[str, Callable[[Queue], object]], ...] = (
    ("prefetch", lambda q: q.prefetch),
    ("concurrency", lambda q: q.concurrency),
    ("retry", lambda q: describe_retry(q.retry)),
    ("max_message_bytes", lambda q: q.max_message_bytes),
    ("consumers", lambda q: q.consumers),
)
"""Client-side settings of a queue: a change is ``consumer-settings-changed`` (nothing is
redeclared)."""

EXCHANGE_FLAGS: tuple[tuple[str, Callable[[Exchange], object]], ...] = (
    ("durable", lambda e: e.durable),
    ("auto_delete", lambda e: e.auto_delete),
)


def describe_compression(route: PublishRoute) -> str:
    if route.compress is None:
        return "off"
    return f"{route.compress} above {route.compress_above} bytes"


PUBLISH_SETTINGS: tuple[tuple[str, Callable[[PublishRoute], object], str], ...] = (
    ("persistent", lambda r: r.persistent, "publish-persistence-changed"),
    ("compress", describe_compression, "publish-compression-changed"),
    (
        "priority",
        lambda r: "none" if r.priority is None else r.priority,
        "publish-priority-changed",
    ),
)
"""Settings of a publish route other than where it goes, each with its rule."""


def describe_retry(retry: RetryPolicy | None) -> str:
    if retry is None:
        return "off"
    delays = ", ".join(f"{ms}ms" for ms in retry.delays_ms) or "none"
    return f"{retry.attempts} attempts ({retry.backoff}, delays {delays})"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parts(route: PublishRoute) -> list[TemplatePart]:
    return [TemplatePart(p.text, p.field.json_name if p.field else None) for p in route.key_parts]


def covers(wide: tuple[str, ...], narrow: tuple[str, ...]) -> bool:
    """Whether every routing key matching topic pattern ``narrow`` also matches ``wide``
    (``*`` one word, ``#`` zero or more). Conservative: False when unsure."""

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(wide):
            return all(w == "#" for w in narrow[j:])
        if wide[i] == "#":
            return go(i + 1, j) or (j < len(narrow) and go(i, j + 1))
        if j == len(narrow) or narrow[j] == "#":
            return False
        if wide[i] == "*" or wide[i] == narrow[j]:
            return go(i + 1, j + 1)
        return False

    return go(0, 0)


def narrower(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """Of two overlapping patterns, the one the other covers (``a`` when neither does)."""
    return b if covers(a, b) and not covers(b, a) else a


def _binding_key(b: Binding) -> tuple[str, str, str, tuple[tuple[str, ArgValue], ...]]:
    return (b.exchange, b.queue, b.routing_key, b.arguments)


def binding_subject(b: Binding) -> str:
    return f"{b.exchange} -> {b.queue} [{b.routing_key}]"


@dataclass(frozen=True)
class _Routes:
    spec: SpecSet

    def exchange_type(self, name: str) -> str | None:
        return next((e.type for e in self.spec.exchanges if e.name == name), None)

    def delivers(self, route: PublishRoute, queue: str, old_pattern: str, kind: str) -> bool:
        """Whether this spec set's bindings of ``queue`` still deliver every key of ``route``
        that binding pattern ``old_pattern`` delivered."""
        mine = [b for b in self.spec.bindings if b.queue == queue and b.exchange == route.exchange]
        if kind != "topic":
            return any(route_reaches(kind, parts(route), b.routing_key) for b in mine)
        keys = narrower(template_words(parts(route)), tuple(old_pattern.split(".")))
        return any(covers(tuple(b.routing_key.split(".")), keys) for b in mine)

    def reached(self, exchange: str, route: PublishRoute) -> set[str]:
        """Queues of this spec set that a message on ``route`` (published to ``exchange``)
        reaches."""
        kind = self.exchange_type(exchange)
        if kind is None:
            return set()
        return {
            b.queue
            for b in self.spec.bindings
            if b.exchange == exchange and route_reaches(kind, parts(route), b.routing_key)
        }


def _settings(q: Queue) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in q.arguments) or "no arguments"


class TopologyDiff:
    def __init__(self, old: SpecSet, new: SpecSet) -> None:
        self.old, self.new = old, new
        self.out: list[Finding] = []

    def add(
        self, rule_id: str, subject: str, message: str, old: Location | None, new: Location | None
    ) -> None:
        self.out.append(finding(rule_id, subject, message, old, new))

    def run(self) -> list[Finding]:
        self._exchanges()
        self._queues()
        self._bindings()
        self._routes()
        return self.out

    def _exchanges(self) -> None:
        old = {e.name: e for e in self.old.exchanges}
        new = {e.name: e for e in self.new.exchanges}
        for name, e in old.items():
            if name not in new:
                self.add(
                    "exchange-removed", name, f"exchange {name} ({e.type}) was removed", e.loc, None
                )
                continue
            n = new[name]
            if e.type != n.type:
                self.add(
                    "exchange-type-changed",
                    name,
                    f"exchange {name}: type {e.type} -> {n.type}",
                    e.loc,
                    n.loc,
                )
            changed = [
                f"{key} {_value(get(e))} -> {_value(get(n))}"
                for key, get in EXCHANGE_FLAGS
                if get(e) != get(n)
            ]
            if changed:
                self.add(
                    "exchange-flags-changed",
                    name,
                    f"exchange {name}: {', '.join(changed)}",
                    e.loc,
                    n.loc,
                )
        for name, n in new.items():
            if name not in old:
                self.add(
                    "exchange-added", name, f"exchange {name} ({n.type}) was added", None, n.loc
                )

    def _queues(self) -> None:
        old = {q.name: q for q in self.old.queues}
        new = {q.name: q for q in self.new.queues}
        for name, q in old.items():
            if name in new:
                self._queue(q, new[name])
                continue
            origin = new.get(q.origin) if q.origin is not None else None
            near = origin.loc if origin is not None else None
            if q.role == "wait":
                self.add(
                    "wait-queue-removed",
                    name,
                    f"wait queue {name} of {q.origin} is no longer used",
                    q.loc,
                    near,
                )
            elif q.durable and not q.auto_delete and not q.exclusive:
                what = "dead-letter queue" if q.role == "dead-letter" else "queue"
                extra = f" of {q.origin}" if q.origin else ""
                self.add(
                    "queue-removed", name, f"durable {what} {name}{extra} was removed", q.loc, near
                )
            else:
                self.add("transient-queue-removed", name, f"queue {name} was removed", q.loc, near)
        for name, n in new.items():
            if name not in old:
                self.add("queue-added", name, f"queue {name} ({n.role}) was added", None, n.loc)

    def _queue(self, o: Queue, n: Queue) -> None:
        name = o.name
        flags = [
            f"{key} {_value(get(o))} -> {_value(get(n))}"
            for key, get in QUEUE_FLAGS
            if get(o) != get(n)
        ]
        if flags:
            self.add("queue-flags-changed", name, f"queue {name}: {', '.join(flags)}", o.loc, n.loc)
        before, after = dict(o.arguments), dict(n.arguments)
        groups: dict[str, list[str]] = {}
        for key in sorted(before.keys() | after.keys()):
            if key == "x-queue-type" or before.get(key) == after.get(key):
                continue
            shown = f"{key} {before.get(key, 'unset')!r} -> {after.get(key, 'unset')!r}".replace(
                "'unset'", "unset"
            )
            groups.setdefault(ARGUMENT_RULES.get(key, "queue-arguments-changed"), []).append(shown)
        if o.queue_type != n.queue_type:
            self.add(
                "queue-type-changed",
                name,
                f"queue {name}: type {o.queue_type} -> {n.queue_type} "
                f"(arguments: {_settings(o)} -> {_settings(n)})",
                o.loc,
                n.loc,
            )
            groups.pop("queue-arguments-changed", None)
        for rule_id, changes in groups.items():
            self.add(rule_id, name, f"queue {name}: {'; '.join(changes)}", o.loc, n.loc)
        if o.role == "main" and n.role == "main":
            settings = [
                f"{key} {_value(get(o))} -> {_value(get(n))}"
                for key, get in CONSUMER_SETTINGS
                if get(o) != get(n)
            ]
            if settings:
                self.add(
                    "consumer-settings-changed",
                    name,
                    f"queue {name}: {'; '.join(settings)}",
                    o.loc,
                    n.loc,
                )

    def _bindings(self) -> None:
        old = {_binding_key(b): b for b in self.old.bindings}
        new = {_binding_key(b): b for b in self.new.bindings}
        new_queues = {q.name: q for q in self.new.queues}
        old_routes, new_routes = _Routes(self.old), _Routes(self.new)
        for key, b in old.items():
            if key in new or b.queue not in new_queues:
                continue  # a removed queue is reported as such
            kind = old_routes.exchange_type(b.exchange) or "topic"
            stranded: list[str] = []
            for spec in (self.old, self.new):
                for service in spec.services:
                    for route in service.publishes:
                        if route.exchange != b.exchange or not route_reaches(
                            kind, parts(route), b.routing_key
                        ):
                            continue
                        if new_routes.delivers(route, b.queue, b.routing_key, kind):
                            continue
                        used = f"{service.name} publishes {route.message} with {route.routing_key}"
                        if used not in stranded:
                            stranded.append(used)
            near = new_queues[b.queue].loc
            if stranded:
                self.add(
                    "binding-removed",
                    binding_subject(b),
                    f"binding {binding_subject(b)} was removed; {'; '.join(stranded)}",
                    b.loc,
                    near,
                )
            else:
                self.add(
                    "unused-binding-removed",
                    binding_subject(b),
                    f"binding {binding_subject(b)} was removed",
                    b.loc,
                    near,
                )
        for key, b in new.items():
            if key not in old:
                self.add(
                    "binding-added",
                    binding_subject(b),
                    f"binding {binding_subject(b)} was added",
                    None,
                    b.loc,
                )

    def _routes(self) -> None:
        old_services = {s.name: s for s in self.old.services}
        new_services = {s.name: s for s in self.new.services}
        for name, service in old_services.items():
            if name in new_services:
                self._service_routes(service, new_services[name])

    def _service_routes(self, o: Service, n: Service) -> None:
        old = {r.message: r for r in o.publishes}
        new = {r.message: r for r in n.publishes}
        new_queues = {q.name for q in self.new.queues}
        for message, before in old.items():
            subject = f"{o.name}/{message}"
            if message not in new:
                self.add(
                    "publish-removed",
                    subject,
                    f"{o.name} no longer publishes {message}",
                    before.loc,
                    n.loc,
                )
                continue
            after = new[message]
            for key, get, rule_id in PUBLISH_SETTINGS:
                if get(before) != get(after):
                    self.add(
                        rule_id,
                        subject,
                        f"{key} of {subject}: {_value(get(before))} -> {_value(get(after))}",
                        before.loc,
                        after.loc,
                    )
            if (before.exchange, before.routing_key) == (after.exchange, after.routing_key):
                continue
            moved = (
                f"{subject}: {before.exchange} {before.routing_key} -> "
                f"{after.exchange} {after.routing_key}"
            )
            reached_before = _Routes(self.old).reached(before.exchange, before)
            reached_now = _Routes(self.new).reached(after.exchange, after)
            lost = sorted((reached_before - reached_now) & new_queues)
            if lost:
                self.add(
                    "publish-route-changed",
                    subject,
                    f"{moved}; no longer reaches {', '.join(lost)}",
                    before.loc,
                    after.loc,
                )
            else:
                self.add("publish-route-moved", subject, moved, before.loc, after.loc)
        for message, after in new.items():
            if message not in old:
                self.add(
                    "publish-added",
                    f"{o.name}/{message}",
                    f"{o.name} now publishes {message}",
                    o.loc,
                    after.loc,
                )


def topology_findings(old: SpecSet, new: SpecSet) -> list[Finding]:
    return TopologyDiff(old, new).run()
