"""Services: publish routes (routing-key templates), consumed queues, and message delivery."""

from __future__ import annotations

import keyword
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .diagnostics import Location
from .ir import (
    DEFAULT_COMPRESS_ABOVE,
    Binding,
    Compression,
    Consume,
    Exchange,
    ExternalService,
    Field,
    KeyPart,
    Message,
    PublishRoute,
    Queue,
    Service,
)
from .names import (
    RESERVED_MODULES,
    SERVICE_RE,
    abbreviated,
    did_you_mean,
    one_of,
    pascal_case,
    quoted,
)
from .rawspec import RawExternal, RawPublish, RawService
from .report import Report
from .routing import TemplatePart, parse_template, route_reaches, template_words

DEFAULT_ROUTES = {
    "command": ("mmate.commands", "cmd.{targetService}.{type}"),
    "event": ("mmate.events", "evt.{aggregateId}.{type}"),
    "query": ("mmate.queries", "qry.{type}"),
}
KEY_FIELD_SCALARS = frozenset({"string", "int", "int64"})


@dataclass(frozen=True, slots=True)
class Topology:
    messages: Mapping[str, Message]
    exchanges: Mapping[str, Exchange]
    queues: frozenset[str]
    """Names of the spec's own queues (the ones a service can consume)."""
    bindings: tuple[Binding, ...]
    unchecked_queues: frozenset[str] = frozenset()
    """Queues with a binding in error (already reported): delivery to them is not checked."""
    main_queues: Mapping[str, Queue] = field(default_factory=dict)
    """The spec's own queues as built, by name (their limits and priorities)."""

    def reached(self, exchange: str, parts: list[TemplatePart]) -> list[Queue]:
        """The spec queues a message published with template ``parts`` to ``exchange`` can
        reach, by name."""
        kind = self.exchanges[exchange].type
        names = {
            b.queue
            for b in self.bindings
            if b.exchange == exchange and route_reaches(kind, parts, b.routing_key)
        }
        return [self.main_queues[n] for n in sorted(names) if n in self.main_queues]


def default_route(message: Message) -> tuple[str, str]:
    exchange, key = DEFAULT_ROUTES.get(message.kind, ("mmate.messages", "msg.{type}"))
    return exchange, key.replace("{type}", message.name)


def build_service(report: Report, raw: RawService, topo: Topology) -> Service:
    what = f'service "{raw.name}"'
    py_name = raw.name.replace("-", "_")
    if not SERVICE_RE.match(raw.name):
        report.error(
            raw.loc,
            f'service name "{raw.name}" is not lowercase with hyphens',
            "write it like order-service (a lowercase letter, then lowercase letters, digits, -)",
        )
    elif py_name in RESERVED_MODULES or keyword.iskeyword(py_name):
        report.error(
            raw.loc,
            f'{what} would become the module "{py_name}.py", which '
            + (
                "the generated package uses itself"
                if py_name in RESERVED_MODULES
                else "is a Python keyword"
            ),
            f'rename it, e.g. "{raw.name}-service"',
        )
    routes = _publish_routes(report, raw.publishes, what, topo)
    consumes = [_consume(report, raw, i, topo) for i in range(len(raw.consumes))]
    own = raw.service_queue
    if own is not None and own.name not in {c.queue for c in raw.consumes}:
        report.error(
            own.loc,
            f'{what} asks for its service_queue "{own.name}" but does not consume it',
            f"add consumes: {{{own.name}: [MESSAGE, ...]}} listing the messages it handles there",
        )
    return Service(
        raw.name,
        py_name,
        pascal_case(raw.name),
        tuple(routes),
        tuple(c for c in consumes if c is not None),
        raw.file,
        raw.loc,
        description=raw.description,
    )


def build_external(report: Report, raw: RawExternal, topo: Topology) -> ExternalService:
    what = f'external service "{raw.name}"'
    if not raw.name.strip():
        report.error(raw.loc, "an external service has an empty name", "write its service name")
    routes = _publish_routes(report, raw.publishes, what, topo, one_per_message=False)
    return ExternalService(raw.name, tuple(routes), raw.file, raw.loc, raw.description)


def _publish_routes(
    report: Report,
    publishes: list[RawPublish],
    what: str,
    topo: Topology,
    one_per_message: bool = True,
) -> list[PublishRoute]:
    """The routes of publish entries. A service has one publisher method per message, so one
    route; an external service may publish a message on several routes."""
    routes: list[PublishRoute] = []
    published: dict[str, Location] = {}
    for publish in publishes:
        if one_per_message and publish.message in published:
            report.error(
                publish.message_loc,
                f"{what} publishes {publish.message} twice",
                "keep one publish entry per message "
                f"(the first is at line {published[publish.message].line})",
            )
            continue
        published[publish.message] = publish.message_loc
        route = _publish_route(report, publish, what, topo)
        if route is not None:
            routes.append(route)
    return routes


def _publish_route(
    report: Report, publish: RawPublish, owner: str, topo: Topology
) -> PublishRoute | None:
    message = topo.messages.get(publish.message)
    if message is None:
        report.error(
            publish.message_loc,
            f'{owner} publishes unknown message "{publish.message}"',
            did_you_mean(publish.message, topo.messages, one_of(topo.messages)),
        )
        return None
    if message.kind == "reply":
        report.error(
            publish.message_loc,
            f"{owner} publishes reply {message.name}; replies are not published",
            "remove it: a query handler returns its reply, the runtime sends it to the requester",
        )
        return None
    default_exchange, default_key = default_route(message)
    exchange_name = publish.exchange or default_exchange
    if exchange_name not in topo.exchanges:
        report.error(
            publish.exchange_loc or publish.loc,
            f'the publish of {message.name} by {owner} names unknown exchange "{exchange_name}"',
            did_you_mean(exchange_name, topo.exchanges, one_of(topo.exchanges)),
        )
        return None
    template = publish.routing_key if publish.routing_key is not None else default_key
    parts = key_parts(
        report,
        template,
        message,
        publish.key_loc or publish.loc,
        f"the publish of {message.name} by {owner}",
    )
    if parts is None:
        return None
    reached = topo.reached(exchange_name, [_template_part(p) for p in parts])
    what = f"the publish of {message.name} by {owner}"
    compress = _compression(publish.compress)
    above = publish.compress_above if publish.compress_above is not None else DEFAULT_COMPRESS_ABOVE
    if publish.priority is not None:
        _check_priority(report, publish, what, reached)
    if compress is not None:
        report.warn(
            publish.compress_loc or publish.loc,
            f"{what} compresses bodies above {above} bytes with {compress}: Go Mmate cannot read "
            "a compressed body",
            f"remove compress if a Go service consumes {message.name} (mmate consumers decode "
            "it by its content-encoding)",
        )
    limits = [q.max_message_bytes for q in reached if q.max_message_bytes is not None]
    return PublishRoute(
        message=message.name,
        exchange=exchange_name,
        routing_key=template,
        key_parts=parts,
        persistent=publish.persistent,
        explicit=publish.exchange is not None or publish.routing_key is not None,
        loc=publish.loc,
        priority=publish.priority,
        compress=compress,
        compress_above=above,
        max_message_bytes=min(limits) if limits else None,
    )


def _compression(name: str | None) -> Compression | None:
    if name == "gzip":
        return "gzip"
    if name == "zstd":
        return "zstd"
    return None


def _check_priority(report: Report, publish: RawPublish, what: str, reached: list[Queue]) -> None:
    """A priority matters only in a queue declared with ``x-max-priority``."""
    flat = [q.name for q in reached if "x-max-priority" not in dict(q.arguments)]
    if not flat:
        return
    report.warn(
        publish.priority_loc or publish.loc,
        f"{what} has priority {publish.priority}, but queue{'s' if len(flat) > 1 else ''} "
        f"{quoted(flat)} it reaches {'have' if len(flat) > 1 else 'has'} no max_priority, so "
        "RabbitMQ ignores the priority there",
        "add max_priority: N (a classic queue, not go_compatible) to "
        + ("them" if len(flat) > 1 else "it")
        + ", or remove priority",
    )


def key_parts(
    report: Report, template: str, message: Message, loc: Location, what: str
) -> tuple[KeyPart, ...] | None:
    """The parts of a routing-key template, each placeholder resolved to a field of ``message``."""
    parts, problems = parse_template(template)
    ok = True
    for problem, hint in problems:
        report.error(loc, f'routing_key "{abbreviated(template)}" of {what} {problem}', hint)
        ok = False
    fields = {f.json_name: f for f in message.fields}
    usable = [f.json_name for f in message.fields if _key_field_problem(f) is None]
    result: list[KeyPart] = []
    for part in parts:
        if part.field is None:
            result.append(KeyPart(part.text))
            continue
        if not part.field:
            continue
        field = fields.get(part.field)
        if field is None:
            report.error(
                loc,
                f'routing_key "{template}" of {what} names unknown field "{part.field}" '
                f"of {message.name}",
                did_you_mean(part.field, usable, _usable_hint(usable)),
            )
            ok = False
            continue
        why = _key_field_problem(field)
        if why is not None:
            report.error(
                loc,
                f'routing_key "{template}" of {what} uses field "{part.field}", which {why}',
                _usable_hint(usable),
            )
            ok = False
            continue
        result.append(KeyPart(part.text, field))
    return tuple(result) if ok else None


def _key_field_problem(field: Field) -> str | None:
    if field.nullable:
        return "is optional"
    ref = field.type
    if ref.kind == "enum" or (ref.kind == "scalar" and ref.name in KEY_FIELD_SCALARS):
        return None
    return f"is of type {ref.name}, not string, int, int64 or an enum"


def _usable_hint(usable: list[str]) -> str:
    if not usable:
        return (
            "use a literal key; the message has no string, int, int64 or enum field to substitute"
        )
    return f"name a non-optional string, int, int64 or enum field: {quoted(usable)}"


def _consume(report: Report, raw: RawService, index: int, topo: Topology) -> Consume | None:
    consume = raw.consumes[index]
    owner = f'service "{raw.name}"'
    if consume.queue not in topo.queues:
        report.error(
            consume.loc,
            f'{owner} consumes unknown queue "{consume.queue}"',
            did_you_mean(consume.queue, topo.queues, one_of(topo.queues)),
        )
        return None
    handles: list[str] = []
    for name, loc in consume.handles:
        message = topo.messages.get(name)
        if message is None:
            report.error(
                loc,
                f'{owner} handles unknown message "{name}" from queue "{consume.queue}"',
                did_you_mean(name, topo.messages, one_of(topo.messages)),
            )
        elif message.kind == "reply":
            report.error(
                loc,
                f"{owner} handles reply {name}; replies are not consumed from queues",
                "remove it: the runtime returns a reply to the service that sent the query",
            )
        elif name in handles:
            report.error(
                loc,
                f'{owner} lists {name} twice for queue "{consume.queue}"',
                "list each message once",
            )
        else:
            handles.append(name)
    return Consume(consume.queue, tuple(handles), consume.loc)


def _template_part(part: KeyPart) -> TemplatePart:
    return TemplatePart(part.text, part.field.json_name if part.field else None)


def _route_parts(route: PublishRoute) -> list[TemplatePart]:
    return [_template_part(p) for p in route.key_parts]


def _reaches(
    topo: Topology, exchange: str, parts: list[TemplatePart], bindings: list[Binding]
) -> bool:
    kind = topo.exchanges[exchange].type
    return any(
        b.exchange == exchange and route_reaches(kind, parts, b.routing_key) for b in bindings
    )


def _example_pattern(parts: list[TemplatePart]) -> str:
    return ".".join(template_words(parts))


def check_delivery(
    report: Report,
    services: list[Service],
    raws: list[RawService],
    topo: Topology,
    externals: Sequence[ExternalService] = (),
    raw_externals: Sequence[RawExternal] = (),
) -> None:
    """A handled message must reach its queue (by a route of a service or an external service);
    warn on messages services publish that nobody gets."""
    routes: dict[str, list[PublishRoute]] = {}
    published = [s.publishes for s in services] + [e.publishes for e in externals]
    for route in (r for publishes in published for r in publishes):
        routes.setdefault(route.message, []).append(route)
    written: dict[str, int] = {}
    entries = [s.publishes for s in raws] + [e.publishes for e in raw_externals]
    for publish in (p for publishes in entries for p in publishes):
        written[publish.message] = written.get(publish.message, 0) + 1
    # a message with a publish entry in error (already reported) has routes we do not know
    unknown_routes = {name for name, count in written.items() if len(routes.get(name, ())) < count}
    all_bindings = list(topo.bindings)
    for service, raw in zip(services, raws, strict=True):
        for route in service.publishes:
            parts = _route_parts(route)
            if not _reaches(topo, route.exchange, parts, all_bindings):
                report.warn(
                    route.loc,
                    f'{route.message} published by service "{service.name}" to "{route.exchange}" '
                    f'with routing key "{route.routing_key}" reaches no queue of the specs',
                    f'bind a queue from "{route.exchange}" with a pattern such as '
                    f'"{_example_pattern(parts)}", unless only services outside these specs get it',
                )
        for consume in raw.consumes:
            if consume.queue not in topo.queues or consume.queue in topo.unchecked_queues:
                continue
            queue_bindings = [b for b in all_bindings if b.queue == consume.queue]
            for name, loc in consume.handles:
                message = topo.messages.get(name)
                if message is None or message.kind == "reply" or name in unknown_routes:
                    continue
                candidates = routes.get(name) or [_default(report, message)]
                reachable = [
                    r
                    for r in candidates
                    if _reaches(topo, r.exchange, _route_parts(r), queue_bindings)
                ]
                if reachable:
                    continue
                shown = ", ".join(f'{r.exchange} "{r.routing_key}"' for r in candidates)
                first = candidates[0]
                report.error(
                    loc,
                    f'{name} handled by service "{service.name}" can never reach queue '
                    f'"{consume.queue}": no binding of the queue matches its route ({shown})',
                    f'bind queue "{consume.queue}" from "{first.exchange}" with a pattern such as '
                    f'"{_example_pattern(_route_parts(first))}"',
                )


def _default(report: Report, message: Message) -> PublishRoute:
    exchange, template = default_route(message)
    parts = key_parts(report, template, message, message.loc, "the default route") or ()
    return PublishRoute(message.name, exchange, template, parts, True, False, message.loc)
