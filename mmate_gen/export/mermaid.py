"""A mermaid flowchart of a spec set: services, the exchanges they use, queues and every route.

Edges: a service publishes a message to an exchange (labelled with the message and its routing
key), an exchange delivers to a queue (the binding pattern), a queue feeds the service that
handles it (the message types), a queue dead-letters into its dead-letter queue or exchange, and a
query's replier answers its requester. Wait queues are not drawn: a queue's retry delays are part
of its label. The delay cascade is left out (it is the same for every spec set).
"""

from __future__ import annotations

import re

from ..ir import Queue, SpecSet
from ..views import SpecIndex

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:g}s"


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


class _Ids:
    """Node ids: readable, unique, stable for the same spec set."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._taken: set[str] = set()

    def __call__(self, kind: str, name: str) -> str:
        key = (kind, name)
        if key not in self._ids:
            base = f"{kind}_{_UNSAFE.sub('_', name)}"
            candidate, n = base, 2
            while candidate in self._taken:
                candidate, n = f"{base}_{n}", n + 1
            self._taken.add(candidate)
            self._ids[key] = candidate
        return self._ids[key]


def _queue_label(queue: Queue) -> str:
    notes: list[str] = []
    if queue.queue_type == "quorum":
        notes.append("quorum")
    if queue.fifo:
        notes.append("fifo")
    if queue.retry is not None and queue.retry.delays_ms:
        notes.append("retry " + ", ".join(duration(ms) for ms in queue.retry.delays_ms))
    return queue.name + "".join(f"<br/>{n}" for n in notes)


def mermaid_diagram(spec: SpecSet) -> str:
    index = SpecIndex(spec)
    ids = _Ids()
    nodes: list[str] = []
    edges: list[str] = []
    classes: dict[str, list[str]] = {"service": [], "exchange": [], "queue": []}

    for service in spec.services:
        node = ids("svc", service.name)
        nodes.append(f"    {node}([{_label(service.name)}])")
        classes["service"].append(node)

    exchanges: set[str] = {b.exchange for b in spec.bindings}
    exchanges |= {r.exchange for s in spec.services for r in s.publishes}
    for queue in spec.queues:
        target = dict(queue.arguments).get("x-dead-letter-exchange")
        if isinstance(target, str) and target:
            exchanges.add(target)
    for exchange in spec.exchanges:
        if exchange.name in exchanges:
            node = ids("ex", exchange.name)
            text = (
                exchange.name
                if exchange.type == "topic"
                else f"{exchange.name}<br/>{exchange.type}"
            )
            nodes.append(f"    {node}{{{{{_label(text)}}}}}")
            classes["exchange"].append(node)

    drawn = [q for q in spec.queues if q.role != "wait"]
    for queue in drawn:
        node = ids("q", queue.name)
        nodes.append(f"    {node}[({_label(_queue_label(queue))})]")
        classes["queue"].append(node)

    def edge(source: str, label: str, target: str, *, dotted: bool = False) -> None:
        arrow = "-.->" if dotted else "-->"
        edges.append(f"    {source} {arrow}|{_label(label)}| {target}")

    for service in spec.services:
        for route in service.publishes:
            label = f"{route.message}<br/>{route.routing_key}"
            edge(ids("svc", service.name), label, ids("ex", route.exchange))
    for binding in spec.bindings:
        label = binding.routing_key or "(empty key)"
        edge(ids("ex", binding.exchange), label, ids("q", binding.queue))
    for service in spec.services:
        for consume in service.consumes:
            edge(ids("q", consume.queue), "<br/>".join(consume.handles), ids("svc", service.name))
    for queue in drawn:
        args = dict(queue.arguments)
        if "x-dead-letter-exchange" not in args:
            continue
        dl_exchange = str(args["x-dead-letter-exchange"])
        dl_key = str(args.get("x-dead-letter-routing-key", ""))
        if dl_exchange == "" and dl_key in index.queues:
            edge(ids("q", queue.name), "dead letters", ids("q", dl_key), dotted=True)
        elif dl_exchange:
            label = f"dead letters<br/>{dl_key}"
            edge(ids("q", queue.name), label, ids("ex", dl_exchange), dotted=True)
    handlers: dict[str, set[str]] = {}
    for service in spec.services:
        for consume in service.consumes:
            for name in consume.handles:
                handlers.setdefault(name, set()).add(service.name)
    for service in spec.services:
        for route in service.publishes:
            message = index.messages[route.message]
            if message.reply is None:
                continue
            for replier in sorted(handlers.get(message.name, ())):
                label = f"{message.reply} (reply)"
                edge(ids("svc", replier), label, ids("svc", service.name), dotted=True)

    lines = ["flowchart LR", *nodes, *edges]
    lines.append("    classDef service fill:#e8f0fe,stroke:#3b6fd8")
    lines.append("    classDef exchange fill:#fff4e0,stroke:#d08a00")
    lines.append("    classDef queue fill:#e9f7ef,stroke:#2e8b57")
    for name, members in classes.items():
        if members:
            lines.append(f"    class {','.join(members)} {name}")
    return "\n".join(lines) + "\n"


def markdown_page(spec: SpecSet, command: str) -> str:
    """A documentation page holding the diagram (``command`` is how it was made)."""
    return (
        f"# Topology of `{spec.root}/`\n\n"
        f"<!-- Generated by `{command}`. Do not edit: run it again. -->\n\n"
        "Services (rounded), exchanges (hexagons) and queues (cylinders) of the example specs, "
        "with every route: a service publishes a message to an exchange with a routing key, a "
        "binding pattern takes it to a queue, the queue feeds the service that handles it. "
        "Dotted edges are dead-letter routes and replies. Retry delays are noted on their queue "
        "(its wait queues are not drawn); the delay cascade is not drawn. See "
        "[Contract tooling](tooling.md#mermaid) for how it is made.\n\n"
        "```mermaid\n" + mermaid_diagram(spec) + "```\n"
    )
