"""The base of generated ``<Service>Routes`` classes: handlers registered one message type at a
time, as functions or as factories, instead of one object subclassing ``<Service>Handlers``.

A generated subclass has two typed methods per message type the service consumes:

* ``handle_<type>(func)`` registers ``async def func(message, ctx)``; it returns ``func``, so it
  works as a decorator (``@routes.handle_<type>``) and as a call (``routes.handle_<type>(f)``).
  Bound methods of any object register the same way, which splits one service's messages over
  several handler objects.
* ``handle_<type>_with(factory)`` registers a factory called once per message; what it returns
  has an ``async handle(message, ctx)`` method (a ``MessageHandler``). A class whose constructor
  takes no arguments is such a factory.

Both are typed with the message's model and, for a query, its reply model, so mypy rejects a
handler that takes another message or returns another reply. ``Client.serve`` accepts any number
of registries and ``Handlers`` objects; a message type their services consume and nothing handles
is an error then, naming the types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from ..errors import MmateError
from .context import MessageContext
from .topology import ServiceTopology

M = TypeVar("M")
R = TypeVar("R")
M_contra = TypeVar("M_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Made = TypeVar("Made", bound=Callable[[], Any])


class MessageHandler(Protocol[M_contra, R_co]):
    """What a handler factory makes: an object handling one message (``R_co``: None, or a
    query's reply)."""

    def handle(self, message: M_contra, ctx: MessageContext, /) -> Awaitable[R_co]: ...


HandlerFunc = Callable[[M, MessageContext], Awaitable[R]]
"""``async def f(message: M, ctx: MessageContext) -> R`` (R: None, or a query's reply model)."""

HandlerFactory = Callable[[], MessageHandler[M, R]]
"""A callable without arguments making a ``MessageHandler[M, R]`` per message."""


@dataclass(frozen=True, slots=True)
class Registered:
    """One registration: the coroutine function the consumer calls and its name (for the
    ``x-mmate-handler`` header of a dead letter)."""

    call: Callable[[Any, MessageContext], Awaitable[Any]]
    name: str


def callable_name(func: object) -> str:
    """``Class.method`` of a bound method, the qualified name of a function or class."""
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", None) or repr(func)
    if owner is not None:
        return f"{type(owner).__name__}.{name}"
    return str(getattr(func, "__qualname__", name))


class HandlerRegistry:
    """Base of generated ``<Service>Routes`` classes (see the module docstring)."""

    TOPOLOGY: ClassVar[ServiceTopology]

    def __init__(self) -> None:
        self._registered: dict[str, Registered] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {sorted(self._registered)}>"

    @property
    def registered(self) -> Mapping[str, Registered]:
        """Wire type name -> its registration."""
        return dict(self._registered)

    @property
    def missing(self) -> list[str]:
        """The message types the service consumes that nothing in this registry handles."""
        consumed = {t for types in self.TOPOLOGY.consumes.values() for t in types}
        return sorted(consumed - self._registered.keys())

    def _check(self, type_name: str) -> None:
        consumed = {t for types in self.TOPOLOGY.consumes.values() for t in types}
        if type_name not in consumed:
            raise MmateError(f"{self.TOPOLOGY.name} does not consume {type_name}")
        if type_name in self._registered:
            raise MmateError(
                f"{type(self).__name__}: {type_name} already has a handler "
                f"({self._registered[type_name].name})"
            )

    def _add(self, type_name: str, func: F) -> F:
        """Register ``func`` for ``type_name``; returns it (decorator form)."""
        self._check(type_name)
        if not callable(func):
            raise MmateError(f"the handler of {type_name} is not callable: {func!r}")
        self._registered[type_name] = Registered(func, callable_name(func))
        return func

    def _add_factory(self, type_name: str, factory: Made) -> Made:
        """Register ``factory`` for ``type_name``: called per message, its result's ``handle``
        handles it. Returns ``factory``."""
        self._check(type_name)
        if not callable(factory):
            raise MmateError(f"the handler factory of {type_name} is not callable: {factory!r}")

        async def made(message: Any, ctx: MessageContext) -> Any:
            handler = factory()
            handle = getattr(handler, "handle", None)
            if not callable(handle):
                raise MmateError(
                    f"the handler factory of {type_name} ({callable_name(factory)}) made "
                    f"{type(handler).__name__}, which has no handle() method"
                )
            return await handle(message, ctx)

        self._registered[type_name] = Registered(made, f"{callable_name(factory)}().handle")
        return factory
