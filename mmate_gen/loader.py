"""Load a spec directory into the intermediate model, reporting every problem in one run.

``load_specs`` never raises on bad input: YAML errors, unreadable files and every spec rule broken
become ``Diagnostic``s, sorted by location. The model is returned only when no error was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checks_go import check_go_queue_names
from .checks_schema import (
    PendingDefault,
    TypeTable,
    build_enum,
    build_message,
    build_record,
    check_defaults,
    check_type_name,
)
from .checks_services import Topology, build_external, build_service, check_delivery
from .checks_topology import (
    build_exchanges,
    check_dead_letter_routes,
    check_derived_lengths,
    check_derived_names,
    check_queue,
)
from .diagnostics import Diagnostic, Location
from .ir import Binding, Queue, SpecSet
from .queues import build_queues
from .rawspec import (
    RawExchange,
    RawExternal,
    RawFile,
    RawMessage,
    RawQueue,
    RawService,
    RawType,
    read_file,
)
from .report import Report
from .yamlnodes import Reader, compose_file

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadResult:
    spec: SpecSet | None
    """None when there is any error-level diagnostic."""
    diagnostics: list[Diagnostic]
    """Errors and warnings, sorted by location."""


def load_specs(root: Path) -> LoadResult:
    root_name = root.resolve().name or root.name or "specs"
    sink: list[Diagnostic] = []
    try:
        spec = _load(root, root_name, sink)
    except Exception as exc:  # a bug of ours must still not print a traceback at the user
        sink.append(
            Diagnostic(
                Location(root_name, 1, 1),
                f"internal error of mmate-gen while loading the specs: {exc!r}",
                "report this bug together with the spec directory",
            )
        )
        spec = None
    unique = sorted(set(sink), key=lambda d: (d.loc, d.message, d.level))
    if any(d.level == "error" for d in unique):
        spec = None
    return LoadResult(spec, unique)


def spec_files(root: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` file under ``root``, sorted by relative path."""
    found = [p for p in root.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _spec_files(report: Report, root: Path, root_name: str) -> list[Path]:
    where = Location(root_name, 1, 1)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        report.error(where, f"spec directory {root} {what}", "pass a directory of *.yaml files")
        return []
    try:
        files = spec_files(root)
    except OSError as exc:
        report.error(where, f"cannot list spec directory {root}: {exc}", "make it readable")
        return []
    if not files:
        report.error(where, f"no *.yaml spec files in {root}", "add at least one spec file")
    return files


def _load(root: Path, root_name: str, sink: list[Diagnostic]) -> SpecSet | None:
    report = Report(sink)
    files = _spec_files(report, root, root_name)
    if not files:
        return None
    raws: list[RawFile] = []
    displays: list[str] = []
    for path in files:
        display = f"{root_name}/{path.relative_to(root).as_posix()}"
        displays.append(display)
        before = len(sink)
        node = compose_file(path, display, sink)
        if node is None and len(sink) > before:
            continue
        raws.append(read_file(Reader(display, sink), node))
    return _build(report, raws, root_name, tuple(displays))


def _build(
    report: Report, files: list[RawFile], root_name: str, displays: tuple[str, ...]
) -> SpecSet | None:
    types, messages, exchanges, queues, services, externals = _unique_definitions(report, files)

    enums = {t.name: build_enum(report, t) for t in types if t.enum is not None}
    table = TypeTable(
        enums={name: e.values for name, e in enums.items()},
        records=frozenset(t.name for t in types if t.fields is not None),
        messages=frozenset(m.name for m in messages),
    )
    for t in types:
        check_type_name(report, t.name, t.loc, "type")
    for m in messages:
        check_type_name(report, m.name, m.loc, "message")
    defaults: list[PendingDefault] = []
    raw_records = [t for t in types if t.fields is not None]
    records = [build_record(report, t, table, defaults) for t in raw_records]
    replies = {m.name for m in messages if m.kind == "reply"}
    built_messages = {m.name: build_message(report, m, table, replies, defaults) for m in messages}
    complete = {  # a record some field of which was dropped cannot judge a default
        r.name: r
        for r, t in zip(records, raw_records, strict=True)
        if len(r.fields) == len(t.fields or [])
    }
    check_defaults(report, defaults, table, complete)

    exchange_map = build_exchanges(report, exchanges)
    spec_queue_names = frozenset(q.name for q in queues)
    bindings: list[Binding] = []
    all_queues: dict[str, Queue] = {}
    derived: dict[str, str] = {}
    derived_queues: list[Queue] = []
    unchecked: set[str] = set()
    for raw in queues:
        queue_bindings = check_queue(report, raw, exchange_map)
        if len(queue_bindings) < len(raw.bindings):
            unchecked.add(raw.name)
        bindings.extend(queue_bindings)
        for queue in build_queues(raw, spec_queue_names):
            if queue.origin is not None:
                derived.setdefault(queue.name, queue.origin)
                derived_queues.append(queue)
            if queue.name not in all_queues:
                all_queues[queue.name] = queue
    check_derived_names(report, queues, derived)
    check_derived_lengths(report, queues, derived_queues)
    check_dead_letter_routes(report, queues, exchange_map, bindings)

    publisher_names = [s.name for s in services] + [e.name for e in externals]
    go_names = {f"{name}-queue": name for name in publisher_names}
    check_go_queue_names(report, queues, go_names, frozenset(e.name for e in externals))

    topo = Topology(
        built_messages,
        exchange_map,
        spec_queue_names,
        tuple(bindings),
        frozenset(unchecked),
        {name: q for name, q in all_queues.items() if q.role == "main"},
    )
    built_services = [build_service(report, s, topo) for s in services]
    built_externals = [build_external(report, e, topo) for e in externals]
    check_delivery(report, built_services, services, topo, built_externals, externals)

    if report.has_errors:
        return None
    return SpecSet(
        root=root_name,
        files=displays,
        enums=tuple(sorted(enums.values(), key=lambda e: e.name)),
        records=tuple(sorted(records, key=lambda r: r.name)),
        messages=tuple(sorted(built_messages.values(), key=lambda m: m.name)),
        exchanges=tuple(sorted(exchange_map.values(), key=lambda e: e.name)),
        queues=tuple(sorted(all_queues.values(), key=lambda q: q.name)),
        bindings=tuple(sorted(bindings, key=lambda b: (b.queue, b.exchange, b.routing_key))),
        services=tuple(sorted(built_services, key=lambda s: s.name)),
        external_services=tuple(sorted(built_externals, key=lambda e: e.name)),
    )


def _unique_definitions(
    report: Report, files: list[RawFile]
) -> tuple[
    list[RawType],
    list[RawMessage],
    list[RawExchange],
    list[RawQueue],
    list[RawService],
    list[RawExternal],
]:
    """Every definition once; a name defined again (in any file) is reported and dropped. An
    external service may have the name of a service (the Go instances of a service being
    ported)."""
    classes: dict[str, tuple[str, Location]] = {}
    seen: dict[str, dict[str, Location]] = {
        "exchange": {}, "queue": {}, "service": {}, "external service": {},
    }  # fmt: skip
    types: list[RawType] = []
    messages: list[RawMessage] = []
    exchanges: list[RawExchange] = []
    queues: list[RawQueue] = []
    services: list[RawService] = []
    externals: list[RawExternal] = []

    def first_class(what: str, name: str, loc: Location) -> bool:
        if name in classes:
            other, first = classes[name]
            report.error(
                loc,
                f'{what} "{name}" is defined twice'
                if other == what
                else f'{what} "{name}" has the name of {other} "{name}"',
                f"rename one of them (the first is at {first})"
                + ("" if other == what else "; types and messages become classes of one module"),
            )
            return other != what
        classes[name] = (what, loc)
        return True

    def first(what: str, name: str, loc: Location) -> bool:
        if name in seen[what]:
            report.error(
                loc,
                f'{what} "{name}" is defined twice',
                f"rename one of them (the first is at {seen[what][name]})",
            )
            return False
        seen[what][name] = loc
        return True

    service_queues: dict[str, RawQueue] = {}

    def first_queue(queue: RawQueue) -> bool:
        earlier = service_queues.get(queue.name)
        service_queue = queue if queue.service is not None else earlier
        if service_queue is None or queue.name not in seen["queue"]:
            if queue.service is not None:
                service_queues[queue.name] = queue
            return first("queue", queue.name, queue.loc)
        report.error(
            queue.loc,
            f'queue "{queue.name}" is defined twice: as the service_queue of service '
            f'"{service_queue.service}" (Go\'s <service>-queue) and under queues',
            f"keep one of them (the first is at {seen['queue'][queue.name]})",
        )
        return False

    for f in files:
        types.extend(t for t in f.types if first_class("type", t.name, t.loc))
        messages.extend(m for m in f.messages if first_class("message", m.name, m.loc))
        exchanges.extend(e for e in f.exchanges if first("exchange", e.name, e.loc))
        queues.extend(q for q in f.queues if first_queue(q))
        services.extend(s for s in f.services if first("service", s.name, s.loc))
        externals.extend(e for e in f.external_services if first("external service", e.name, e.loc))
    return types, messages, exchanges, queues, services, externals
