"""Exchanges, bindings and routing, as RabbitMQ routes.

* **direct**: the binding key equals the routing key (case-sensitive).
* **fanout**: every binding.
* **topic**: words split at ``.``; ``*`` is exactly one word (an empty one too: ``a.*`` matches
  ``a.``), ``#`` zero or more; the empty key has no words (``#`` matches it, ``*`` does not).
* **headers**: ``x-match`` ``all`` (the default) or ``any`` over the binding's arguments that do
  not start with ``x-``; ``all-with-x`` / ``any-with-x`` include those. A binding value of
  ``None`` (AMQP void) matches any value of that header; others compare as Erlang ``==``
  (1 == 1.0; a bool only equals a bool). ``all`` with no arguments matches every message,
  ``any`` with none matches nothing.
* the **default exchange** ``""`` routes to the queue named by the routing key and takes no
  bindings.

A message goes to each queue once, however many bindings or exchange-to-exchange paths lead
there (cycles of exchange bindings included). ``alternate-exchange`` is honoured when an exchange
routes a message nowhere. A message routes on its routing key and the keys of its ``CC`` and
``BCC`` headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .values import erlang_equal

DestinationKind = Literal["queue", "exchange"]
MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


def words(key: str) -> tuple[str, ...]:
    return tuple(key.split(".")) if key else ()


def topic_matches(pattern: Sequence[str], key: Sequence[str]) -> bool:
    """Whether a topic binding's words match a routing key's words."""
    size = len(pattern)

    def closure(states: set[int]) -> set[int]:
        out = set(states)
        stack = list(states)
        while stack:
            at = stack.pop()
            if at < size and pattern[at] == "#" and at + 1 not in out:
                out.add(at + 1)
                stack.append(at + 1)
        return out

    states = closure({0})
    for word in key:
        step: set[int] = set()
        for at in states:
            if at >= size:
                continue
            token = pattern[at]
            if token == "#":
                step.add(at)
            elif token == "*" or token == word:
                step.add(at + 1)
        if not step:
            return False
        states = closure(step)
    return size in states


def headers_match(arguments: Mapping[str, Any], headers: Mapping[str, Any] | None) -> bool:
    """Whether a headers-exchange binding matches a message's headers."""
    mode = arguments.get("x-match", "all")
    with_x = mode.endswith("-with-x")
    wanted = [
        (key, value)
        for key, value in arguments.items()
        if key != "x-match" and (with_x or not key.startswith("x-"))
    ]
    have = headers or {}

    def one(key: str, value: Any) -> bool:
        if key not in have:
            return False
        return value is None or erlang_equal(value, have[key])

    if mode.startswith("any"):
        return any(one(key, value) for key, value in wanted)
    return all(one(key, value) for key, value in wanted)


@dataclass(frozen=True, slots=True)
class Binding:
    """One binding: from exchange ``source`` to a queue or exchange ``destination``."""

    source: str
    destination: str
    kind: DestinationKind
    routing_key: str
    arguments: tuple[tuple[str, Any], ...]
    """Sorted (key, value) pairs; bindings are equal when all five parts are."""

    @property
    def argument_map(self) -> dict[str, Any]:
        return dict(self.arguments)


def binding_arguments(arguments: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((arguments or {}).items(), key=lambda item: item[0]))


@dataclass(slots=True)
class Exchange:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    arguments: dict[str, Any]
    bindings: list[Binding] = field(default_factory=list)
    """Bindings with this exchange as their source, in the order they were made."""
    system: bool = False
    """One of the ``amq.*`` exchanges every broker has."""
    _topic: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def matches(
        self, binding: Binding, keys: Sequence[str], headers: Mapping[str, Any] | None
    ) -> bool:
        if self.type == "fanout":
            return True
        if self.type == "direct":
            return binding.routing_key in keys
        if self.type == "topic":
            pattern = self._topic.get(binding.routing_key)
            if pattern is None:
                pattern = self._topic[binding.routing_key] = words(binding.routing_key)
            return any(topic_matches(pattern, words(key)) for key in keys)
        return headers_match(binding.argument_map, headers)

    def destinations(
        self, keys: Sequence[str], headers: Mapping[str, Any] | None
    ) -> Iterable[Binding]:
        return [b for b in self.bindings if self.matches(b, keys, headers)]
