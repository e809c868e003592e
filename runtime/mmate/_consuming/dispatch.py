"""Dispatch: which handler method receives which message type on which queue (``Route``), built
once per ``serve`` from a handler object's generated ``TOPOLOGY`` (``dispatch_table``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._contract.context import MessageContext
from .._contract.handler import HandlerBase
from .._contract.topology import MessageDef, ServiceTopology
from ..errors import MmateError

HandlerMethod = Callable[[Any, MessageContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One dispatch-table entry: a message type on a queue and the bound handler method."""

    message: MessageDef
    method: HandlerMethod
    reply: MessageDef | None = None
    """For a query: the reply contract the method returns."""


def handler_name(method: HandlerMethod) -> str:
    """``Class.method`` of a bound handler method (for ``x-mmate-handler``)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def dispatch_table(handlers: HandlerBase) -> dict[str, dict[str, Route]]:
    """Queue -> wire type -> route, built once from ``TOPOLOGY.consumes`` (bound methods
    resolved)."""
    cls = type(handlers)
    topology = getattr(cls, "TOPOLOGY", None)
    if not isinstance(topology, ServiceTopology):
        raise MmateError(f"{cls.__name__} has no TOPOLOGY; subclass a generated Handlers class")
    table: dict[str, dict[str, Route]] = {}
    for queue, types in topology.consumes.items():
        routes: dict[str, Route] = {}
        for type_name, handler_route in types.items():
            method = getattr(handlers, handler_route.method, None)
            if not callable(method) or getattr(method, "__isabstractmethod__", False):
                raise MmateError(
                    f"{cls.__name__} does not implement {handler_route.method}() for {type_name} "
                    f"on queue {queue!r}"
                )
            reply_def: MessageDef | None = None
            if handler_route.message.kind == "query":
                reply_name = handler_route.message.reply or ""
                reply_def = topology.messages.get(reply_name)
                if reply_def is None:
                    raise MmateError(
                        f"{type_name}: its reply {reply_name!r} is not among the messages "
                        f"of {topology.name}"
                    )
            routes[type_name] = Route(handler_route.message, method, reply_def)
        table[queue] = routes
    return table
