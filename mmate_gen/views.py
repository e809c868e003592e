"""What the templates render, computed from the intermediate model: names, routes, per-service sets.

Templates receive these views (and the IR objects they wrap) and only loop and print; every
choice (method names, which queues a service declares, the Python expression of a routing key) is
made here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .diagnostics import Diagnostic, Location
from .ir import Exchange, Field, Message, PublishRoute, Queue, Service, SpecSet
from .pyliteral import fstring

METHOD_PREFIX = {"event": "publish", "command": "send", "query": "request", "reply": "publish"}
"""Publisher method prefix per message kind (replies are never published; kept for totality)."""

TOPOLOGY_NAMES = frozenset({"MESSAGES", "EXCHANGES", "QUEUES", "BINDINGS", "SERVICES"})
"""Constants of topology.py that a service's constant must not take."""

SERVICE_MODULE_NAMES = frozenset(
    {
        "ClassVar",
        "HandlerBase",
        "HandlerFactory",
        "HandlerFunc",
        "HandlerRegistry",
        "MessageContext",
        "PublishOptions",
        "Publisher",
        "ServiceTopology",
        "Unpack",
        "abstractmethod",
        "topology",
    }
)
"""Names a service module imports besides its models."""


def handler_method(message: Message) -> str:
    return f"handle_{message.py_name}"


def publish_method(message: Message) -> str:
    return f"{METHOD_PREFIX[message.kind]}_{message.py_name}"


def service_constant(service: Service) -> str:
    return service.py_name.upper()


def routing_key_expression(route: PublishRoute, variable: str = "message") -> str:
    """The Python expression of a route's routing key for a message held in ``variable``:
    ``f"order.{message.region.value}.created"``, or a plain literal when the key has no fields."""
    return fstring([(part.text, _key_value(part.field, variable)) for part in route.key_parts])


def _key_value(field: Field | None, variable: str) -> str | None:
    if field is None:
        return None
    suffix = ".value" if field.type.kind == "enum" else ""
    return f"{variable}.{field.py_name}{suffix}"


@dataclass(frozen=True, slots=True)
class PublishView:
    route: PublishRoute
    message: Message
    method: str
    route_constant: str
    """Module constant holding the route (``_ROUTE_ORDER_CREATED_EVENT``)."""
    key_expression: str
    reply: Message | None

    @property
    def doc(self) -> str:
        """Docstring text of its publisher method: where it goes, then the route's settings."""
        route, name = self.route, self.message.name
        if self.reply is not None:
            first = (
                f"Send {name} to `{route.exchange}` (`{route.routing_key}`) and wait for its "
                f"{self.reply.name}."
            )
        else:
            verb = "Publish" if self.message.kind == "event" else "Send"
            first = f"{verb} {name} to `{route.exchange}` with routing key `{route.routing_key}`."
        notes: list[str] = []
        if route.priority is not None:
            notes.append(
                f"Sent with priority {route.priority} unless the `priority` option says otherwise."
            )
        if route.compress is not None:
            notes.append(
                f"A body above {route.compress_above} bytes is compressed with {route.compress} "
                f"(content-encoding `{route.compress}`): Go Mmate cannot read a compressed body."
            )
        return "\n\n".join([first, " ".join(notes)] if notes else [first])


@dataclass(frozen=True, slots=True)
class HandleView:
    message: Message
    method: str
    reply: Message | None


@dataclass(frozen=True, slots=True)
class ConsumeView:
    queue: str
    handles: tuple[HandleView, ...]


@dataclass(frozen=True, slots=True)
class ServiceView:
    service: Service
    constant: str
    """Name of its ServiceTopology in topology.py (``ORDER_SERVICE``)."""
    publishes: tuple[PublishView, ...]
    consumes: tuple[ConsumeView, ...]
    handlers: tuple[HandleView, ...]
    """One per message type handled, in first-consumed order (a type on two queues: one method)."""
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[int, ...]
    """Indexes into the spec's bindings (``topology.BINDINGS``)."""
    messages: tuple[Message, ...]
    """Every message it publishes, handles or receives as a reply, sorted by name."""
    spec_files: tuple[str, ...]
    """Its own spec file and those of the messages it uses, sorted."""

    @property
    def publisher_doc(self) -> str:
        """Docstring text of its Publisher class."""
        return _class_doc(
            f"Publishes the messages of service `{self.service.name}`.", self.service.description
        )

    @property
    def handlers_doc(self) -> str:
        """Docstring text of its Handlers class."""
        return _class_doc(
            f"Handles the messages service `{self.service.name}` consumes. Subclass it and "
            "implement every method.",
            self.service.description,
        )

    @property
    def routes_doc(self) -> str:
        """Docstring text of its Routes class."""
        return (
            f"Handlers of the messages service `{self.service.name}` consumes, registered one "
            "message type at a time: a function (`@routes.handle_<type>` or "
            "`routes.handle_<type>(func)`, bound methods of several objects included) or a "
            "factory making a handler per message (`routes.handle_<type>_with(factory)`). "
            "`Client.serve(routes)` refuses to start while a type has no handler."
        )

    @property
    def models(self) -> tuple[str, ...]:
        """Model classes its module refers to, sorted."""
        names = {v.message.name for v in self.publishes} | {v.message.name for v in self.handlers}
        replies = [v.reply for v in self.publishes] + [v.reply for v in self.handlers]
        names |= {r.name for r in replies if r is not None}
        return tuple(sorted(names))


def _class_doc(summary: str, description: str | None) -> str:
    """``summary``, then the spec's description (when there is one) as a paragraph of its own."""
    text = (description or "").strip()
    return f"{summary}\n\n{text}" if text else summary


class SpecIndex:
    """Look-ups over a SpecSet by name."""

    def __init__(self, spec: SpecSet) -> None:
        self.spec = spec
        self.messages = {m.name: m for m in spec.messages}
        self.exchanges = {e.name: e for e in spec.exchanges}
        self.queues = {q.name: q for q in spec.queues}

    def reply_of(self, message: Message) -> Message | None:
        return self.messages[message.reply] if message.reply is not None else None


def service_view(index: SpecIndex, service: Service) -> ServiceView:
    publishes = tuple(_publish_view(index, route) for route in service.publishes)
    consumes: list[ConsumeView] = []
    handlers: dict[str, HandleView] = {}
    for consume in service.consumes:
        views: list[HandleView] = []
        for name in consume.handles:
            message = index.messages[name]
            view = HandleView(message, handler_method(message), index.reply_of(message))
            views.append(view)
            handlers.setdefault(name, view)
        consumes.append(ConsumeView(consume.queue, tuple(views)))
    queues = _service_queues(index, [c.queue for c in service.consumes])
    queue_names = {q.name for q in queues}
    binding_indexes = tuple(i for i, b in enumerate(index.spec.bindings) if b.queue in queue_names)
    exchange_names = {r.exchange for r in service.publishes}
    exchange_names |= {index.spec.bindings[i].exchange for i in binding_indexes}
    exchange_names |= {x for q in queues if (x := _dead_letter_exchange(q))}
    used = {v.message.name: v.message for v in publishes} | {
        v.message.name: v.message for v in handlers.values()
    }
    replies = [v.reply for v in publishes] + [v.reply for v in handlers.values()]
    used |= {r.name: r for r in replies if r is not None}
    messages = tuple(used[name] for name in sorted(used))
    return ServiceView(
        service=service,
        constant=service_constant(service),
        publishes=publishes,
        consumes=tuple(consumes),
        handlers=tuple(handlers.values()),
        exchanges=tuple(index.exchanges[n] for n in sorted(exchange_names)),
        queues=queues,
        bindings=binding_indexes,
        messages=messages,
        spec_files=tuple(sorted({service.spec_file} | {m.spec_file for m in messages})),
    )


def _publish_view(index: SpecIndex, route: PublishRoute) -> PublishView:
    message = index.messages[route.message]
    return PublishView(
        route=route,
        message=message,
        method=publish_method(message),
        route_constant=f"_ROUTE_{message.py_name.upper()}",
        key_expression=routing_key_expression(route),
        reply=index.reply_of(message) if message.kind == "query" else None,
    )


def _service_queues(index: SpecIndex, consumed: Iterable[str]) -> tuple[Queue, ...]:
    """The queues a service consumes, each followed by the queues derived from it (dead-letter and
    wait queues) and the queue it dead-letters into when that is another spec queue."""
    result: dict[str, Queue] = {}
    for name in consumed:
        main = index.queues[name]
        result.setdefault(name, main)
        for queue in index.spec.queues:
            if queue.origin == name:
                result.setdefault(queue.name, queue)
        if main.dead_letter_queue is not None and main.dead_letter_queue in index.queues:
            result.setdefault(main.dead_letter_queue, index.queues[main.dead_letter_queue])
    return tuple(result.values())


def _dead_letter_exchange(queue: Queue) -> str | None:
    value = dict(queue.arguments).get("x-dead-letter-exchange")
    return value if isinstance(value, str) else None


def name_clashes(spec: SpecSet, views: Iterable[ServiceView]) -> list[Diagnostic]:
    """Names that would clash in topology.py or a service module."""
    problems: list[Diagnostic] = []
    constants: dict[str, Service] = {}
    for view in views:
        service = view.service
        if view.constant in TOPOLOGY_NAMES:
            problems.append(
                _clash(service.loc, f'service "{service.name}" would be topology.{view.constant}')
            )
        other = constants.setdefault(view.constant, service)
        if other is not service:
            problems.append(
                _clash(service.loc, f'services "{other.name}" and "{service.name}" share a name')
            )
        class_names = {
            f"{service.class_prefix}{kind}" for kind in ("Publisher", "Handlers", "Routes")
        }
        for name in view.models:
            if name in SERVICE_MODULE_NAMES or name in class_names:
                message = next(m for m in spec.messages if m.name == name)
                problems.append(
                    _clash(
                        message.loc, f'message "{name}" clashes with a name in {service.py_name}.py'
                    )
                )
    return problems


def _clash(loc: Location, what: str) -> Diagnostic:
    return Diagnostic(loc, f"{what} in the generated code", "rename one of them")
