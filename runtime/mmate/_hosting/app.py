"""``App`` (with its ``ScheduleEntry``): what ``mmate run`` hosts when more than a handler object
is needed: handlers or functions making them, schedules, client options, startup and shutdown
hooks (docs/running.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, Unpack

from .._consuming.dispatch import Handlers
from .._contract.handler import HandlerBase
from .._contract.model import Model
from .._contract.publish_method import PublishMethod
from .._contract.registry import HandlerRegistry
from ..client import Client, ClientOptions
from ..errors import MmateError

M = TypeVar("M", bound=Model)

HandlerMaker = Callable[[Client], Handlers | Awaitable[Handlers]]
"""A function of the running ``Client`` returning a handler object (sync or async)."""
Hook = Callable[[Client], Awaitable[None]]
"""A startup or shutdown hook: an async function of the running ``Client``."""


@dataclass(frozen=True, slots=True)
class ScheduleEntry(Generic[M]):
    """One schedule of an ``App``: ``publish(client)`` is a generated publisher method,
    ``message(tick)`` the message published at each tick of ``expression``."""

    name: str
    expression: str
    publish: Callable[[Client], PublishMethod[M]]
    message: Callable[[datetime], M]


class App:
    """A service for ``mmate run``: its handlers, schedules, client options and hooks.

    ``handlers``: handler objects (generated ``<Service>Handlers`` subclass instances,
    ``<Service>Routes`` registries) or functions of the ``Client`` returning one (for handlers
    that publish). ``service``: the client's service name; taken from the handlers' topology
    when omitted (needed when every handler is made by a function). ``prefetch`` and
    ``concurrency`` override the spec's values; ``drain_timeout`` is the default seconds
    in-flight handlers get on shutdown. ``options`` are ``Client`` keyword options.
    """

    def __init__(
        self,
        *handlers: Handlers | HandlerMaker,
        service: str | None = None,
        prefetch: int | None = None,
        concurrency: int | None = None,
        drain_timeout: float | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        if not handlers:
            raise MmateError("App needs at least one handler object or handler function")
        self.handlers: tuple[Handlers | HandlerMaker, ...] = handlers
        self.service = service
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.options: ClientOptions = options
        self.schedules: list[ScheduleEntry[Any]] = []
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []

    def schedule(
        self,
        name: str,
        expression: str,
        publish: Callable[[Client], PublishMethod[M]],
        message: Callable[[datetime], M],
    ) -> ScheduleEntry[M]:
        """Publish ``message(tick)`` through ``publish(client)`` on the cron ``expression``
        (``mmate.Scheduler``: each tick once across every running instance)."""
        entry = ScheduleEntry(name, expression, publish, message)
        self.schedules.append(entry)
        return entry

    def on_startup(self, hook: Hook) -> Hook:
        """Run ``hook(client)`` after connecting, before serving (a decorator)."""
        self.startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run ``hook(client)`` after draining, before closing the client (a decorator)."""
        self.shutdown.append(hook)
        return hook

    def settings(self) -> dict[str, object]:
        """The ``mmate run`` settings this app gives (below file, environment and flags)."""
        return {
            "prefetch": self.prefetch,
            "concurrency": self.concurrency,
            "drain_timeout": self.drain_timeout,
        }


def service_of(handlers: Sequence[Handlers | HandlerMaker]) -> str | None:
    """The service of the first handler object given, or None when all are functions."""
    for handler in handlers:
        if isinstance(handler, (HandlerBase, HandlerRegistry)):
            return handler.TOPOLOGY.name
    return None
