"""Broker entities as plain values: what is declared, with exactly the arguments it is declared
with. Every collection is sorted, so everything made from them is deterministic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from ..diagnostics import Location
from ..ir import ArgValue

Arguments = tuple[tuple[str, ArgValue], ...]
"""AMQP arguments, sorted by key."""


def arguments(values: Mapping[str, object] | Iterable[tuple[str, object]]) -> Arguments:
    """Sorted (key, value) pairs of ``values``; values must be AMQP scalars."""
    pairs = values.items() if isinstance(values, Mapping) else values
    out: list[tuple[str, ArgValue]] = []
    for key, value in pairs:
        if not isinstance(value, str | int | float | bool):
            raise TypeError(f"argument {key!r} has the non-scalar value {value!r}")
        out.append((key, value))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class ExchangeEntity:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    arguments: Arguments = ()
    what: str = "exchange of the specs"
    """Why it exists, for reports (``built-in Mmate exchange``, ``delay cascade``...)."""
    loc: Location | None = None


@dataclass(frozen=True, slots=True)
class QueueEntity:
    name: str
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: Arguments = ()
    what: str = "queue of the specs"
    loc: Location | None = None

    @property
    def queue_type(self) -> str:
        value = dict(self.arguments).get("x-queue-type", "classic")
        return str(value)


@dataclass(frozen=True, slots=True)
class BindingEntity:
    source: str
    """The exchange."""
    destination: str
    destination_type: Literal["queue", "exchange"]
    routing_key: str
    arguments: Arguments = ()
    what: str = "binding of the specs"
    loc: Location | None = None

    @property
    def key(self) -> tuple[str, str, str, str, Arguments]:
        """What identifies a binding on the broker."""
        return (self.source, self.destination_type, self.destination, self.routing_key,
                self.arguments)  # fmt: skip

    def describe(self) -> str:
        return (
            f"{self.source} -> {self.destination_type} {self.destination} "
            f"(routing key {self.routing_key!r}"
            + (f", arguments {dict(self.arguments)}" if self.arguments else "")
            + ")"
        )


@dataclass(frozen=True, slots=True)
class Entities:
    exchanges: tuple[ExchangeEntity, ...]
    queues: tuple[QueueEntity, ...]
    bindings: tuple[BindingEntity, ...]
    skipped: tuple[str, ...] = ()
    """Entities of the specs that cannot be pre-declared, each with the reason (exclusive queues
    exist only while the connection that declared them is open)."""
