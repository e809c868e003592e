"""Dispatch: which handler receives which message type on which queue (``Route``), built once per
``serve`` (``dispatch_table``) from the handler objects given: generated ``Handlers`` subclasses
(every method implemented) and ``Routes`` registries (handlers registered per message type), any
number of them, for one service or several."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._contract.context import MessageContext
from .._contract.handler import HandlerBase
from .._contract.registry import HandlerRegistry, Registered, callable_name
from .._contract.topology import MessageDef, QueueDef, ServiceTopology
from ..errors import MmateError

HandlerMethod = Callable[[Any, MessageContext], Awaitable[Any]]
Handlers = HandlerBase | HandlerRegistry
"""What ``Client.serve`` accepts: a ``Handlers`` object or a ``Routes`` registry."""


@dataclass(frozen=True, slots=True)
class Route:
    """One dispatch-table entry: a message type on a queue and the handler called for it."""

    message: MessageDef
    method: HandlerMethod
    reply: MessageDef | None = None
    """For a query: the reply contract the method returns."""
    name: str = field(default="")
    """The handler's name for the ``x-mmate-handler`` header (``Class.method``)."""

    @property
    def handler(self) -> str:
        return self.name or callable_name(self.method)


def handler_name(method: HandlerMethod) -> str:
    """``Class.method`` of a bound handler method (for ``x-mmate-handler``)."""
    return callable_name(method)


@dataclass(frozen=True, slots=True)
class Table:
    """What one ``serve`` consumes: queue -> wire type -> route, and the spec's queue
    definitions by name."""

    routes: dict[str, dict[str, Route]]
    queues: dict[str, QueueDef]


def _topology_of(handlers: object) -> ServiceTopology:
    cls = type(handlers)
    if not isinstance(handlers, HandlerBase | HandlerRegistry):
        raise MmateError(
            f"cannot serve {cls.__name__}: pass an instance of a generated Handlers subclass or "
            "a generated Routes registry"
        )
    topology = getattr(cls, "TOPOLOGY", None)
    if not isinstance(topology, ServiceTopology):
        raise MmateError(f"{cls.__name__} has no TOPOLOGY; subclass a generated Handlers class")
    return topology


def _provided(handlers: Handlers, topology: ServiceTopology) -> dict[str, Registered]:
    """Wire type -> handler, for what ``handlers`` handles."""
    if isinstance(handlers, HandlerRegistry):
        return dict(handlers.registered)
    provided: dict[str, Registered] = {}
    cls = type(handlers)
    for queue, types in topology.consumes.items():
        for type_name, handler_route in types.items():
            method = getattr(handlers, handler_route.method, None)
            if not callable(method) or getattr(method, "__isabstractmethod__", False):
                raise MmateError(
                    f"{cls.__name__} does not implement {handler_route.method}() for {type_name} "
                    f"on queue {queue!r}"
                )
            provided[type_name] = Registered(method, callable_name(method))
    return provided


def dispatch_table(handlers: Sequence[Handlers], queues: Iterable[str] | None = None) -> Table:
    """The routes of every queue the services of ``handlers`` consume (or only ``queues``).

    Several objects may share one service (its message types split over them); a type handled by
    two of them, or consumed from a served queue and handled by none, is an ``MmateError`` naming
    the types."""
    if not handlers:
        raise MmateError("serve needs at least one Handlers object or Routes registry")
    by_service: dict[str, tuple[ServiceTopology, dict[str, Registered]]] = {}
    for obj in handlers:
        topology = _topology_of(obj)
        _, merged = by_service.setdefault(topology.name, (topology, {}))
        for type_name, registered in _provided(obj, topology).items():
            if type_name in merged:
                raise MmateError(
                    f"{topology.name}: {type_name} has two handlers, {merged[type_name].name} "
                    f"and {registered.name}"
                )
            merged[type_name] = registered
    consumed = {q for topology, _ in by_service.values() for q in topology.consumes}
    wanted = consumed if queues is None else set(queues)
    unknown = wanted - consumed
    if unknown:
        names = ", ".join(sorted(by_service))
        raise MmateError(f"{names} does not consume {sorted(unknown)}")
    table: dict[str, dict[str, Route]] = {}
    queue_defs: dict[str, QueueDef] = {}
    missing: dict[str, list[str]] = {}
    for topology, merged in by_service.values():
        queue_defs.update((q.name, q) for q in topology.queues)
        for queue, types in topology.consumes.items():
            if queue not in wanted:
                continue
            routes = table.setdefault(queue, {})
            for type_name, handler_route in types.items():
                found = merged.get(type_name)
                if found is None:
                    missing.setdefault(f"{topology.name} (queue {queue})", []).append(type_name)
                    continue
                if type_name in routes:
                    raise MmateError(f"queue {queue!r}: {type_name} is handled by two services")
                routes[type_name] = Route(
                    handler_route.message,
                    found.call,
                    _reply_of(topology, type_name, handler_route.message),
                    found.name,
                )
    if missing:
        what = "; ".join(f"{where}: {', '.join(sorted(t))}" for where, t in missing.items())
        raise MmateError(f"no handler registered for message types the service consumes: {what}")
    return Table(table, queue_defs)


def _reply_of(topology: ServiceTopology, type_name: str, message: MessageDef) -> MessageDef | None:
    if message.kind != "query":
        return None
    reply_name = message.reply or ""
    reply_def = topology.messages.get(reply_name)
    if reply_def is None:
        raise MmateError(
            f"{type_name}: its reply {reply_name!r} is not among the messages of {topology.name}"
        )
    return reply_def
