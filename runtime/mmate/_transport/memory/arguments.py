"""Queue and exchange arguments: which ones RabbitMQ 3.10 checks when a queue is created, which
take part when it is declared again, and the settings the broker model runs on.

Measured on RabbitMQ 3.10 (see ``tests/memory/test_declare.py``):

* unknown arguments (``foo``) are accepted and ignored;
* a known argument the queue type does not support fails on creation
  (``invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type
  rabbit_classic_queue``) but is ignored on a redeclaration;
* a redeclaration compares exactly the arguments of the queue's type, in RabbitMQ's order,
  integers of any width as one type but never an integer against a float, a bool or a string,
  and an argument present on one side only fails too (``x-queue-type`` absent equals
  ``classic`` on a classic queue);
* ``durable`` and ``auto_delete`` are compared; ``exclusive`` is an ownership question (405).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..._wire.expiration import MAX_TTL_MS
from ...errors import FeatureNotAvailable, MmateError
from . import replies
from .values import amqp_type, equivalent, shown

QueueKind = Literal["classic", "quorum"]
Overflow = Literal["drop-head", "reject-publish", "reject-publish-dlx"]

# RabbitMQ's declare_args order: the first difference found is the one reported.
_ORDER = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-queue-master-locator",
    "x-delivery-limit",
)
_OF_TYPE: dict[QueueKind, frozenset[str]] = {
    "classic": frozenset(
        {
            "x-expires",
            "x-message-ttl",
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-max-length",
            "x-max-length-bytes",
            "x-max-priority",
            "x-overflow",
            "x-queue-mode",
            "x-queue-version",
            "x-single-active-consumer",
            "x-queue-type",
            "x-queue-master-locator",
        }
    ),
    "quorum": frozenset(
        {
            "x-expires",
            "x-message-ttl",
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-dead-letter-strategy",
            "x-max-length",
            "x-max-length-bytes",
            "x-max-in-memory-length",
            "x-max-in-memory-bytes",
            "x-overflow",
            "x-single-active-consumer",
            "x-queue-type",
            "x-quorum-initial-group-size",
            "x-delivery-limit",
            "x-queue-leader-locator",
        }
    ),
}
_RABBIT_TYPE = {"classic": "rabbit_classic_queue", "quorum": "rabbit_quorum_queue"}


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What the arguments of a queue make it do."""

    kind: QueueKind = "classic"
    message_ttl: int | None = None
    """``x-message-ttl`` in milliseconds."""
    expires: int | None = None
    """``x-expires``: the queue is deleted after this many milliseconds unused."""
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    at_least_once: bool = False
    """Quorum ``x-dead-letter-strategy: at-least-once`` in effect (it needs ``reject-publish``)."""
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: Overflow = "drop-head"
    max_priority: int | None = None
    single_active_consumer: bool = False
    delivery_limit: int | None = None


def _int_arg(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    kind = {"longstr": "longstr", "bool": "bool", "double": "float"}.get(amqp_type(value))
    return f'"expected integer, got {kind or amqp_type(value)}"'


def _non_negative(value: Any) -> str | None:
    return _int_arg(value) or (f"{{value_negative,{value}}}" if value < 0 else None)


def _ttl(value: Any) -> str | None:
    problem = _non_negative(value)
    if problem is None and value > MAX_TTL_MS:
        return f"{{value_too_large,{value}}}"
    return problem


def _expires(value: Any) -> str | None:
    problem = _ttl(value)
    if problem is None and value == 0:
        return "{value_zero,0}"
    return problem


def _positive(value: Any) -> str | None:
    problem = _non_negative(value)
    if problem is None and value == 0:
        return "{value_zero,0}"
    return problem


def _priority(value: Any) -> str | None:
    problem = _non_negative(value)
    if problem is None and value > 255:
        return f"{{max_value_exceeded,{value}}}"
    return problem


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"{{unacceptable_type,{amqp_type(value)}}}"


def _one_of(allowed: tuple[str, ...], problem: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return _string(value) or (None if value in allowed else problem.format(value=value))

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{amqp_type(value)}}}"


def _anything(value: Any) -> str | None:
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "x-expires": _expires,
    "x-message-ttl": _ttl,
    "x-dead-letter-routing-key": _string,
    "x-dead-letter-strategy": _one_of(("at-most-once", "at-least-once"), "invalid_dlx_strategy"),
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-in-memory-length": _non_negative,
    "x-max-in-memory-bytes": _non_negative,
    "x-max-priority": _priority,
    "x-overflow": _one_of(
        ("drop-head", "reject-publish", "reject-publish-dlx"), "invalid_overflow"
    ),
    "x-queue-mode": _one_of(("default", "lazy"), "\"unsupported queue mode '{value}'\""),
    "x-single-active-consumer": _boolean,
    "x-quorum-initial-group-size": _positive,
    "x-delivery-limit": _anything,
}


def _kind(arguments: Mapping[str, Any], doing: str, name: str) -> QueueKind:
    value = arguments.get("x-queue-type", "classic")
    if not isinstance(value, str):
        raise _invalid(name, "x-queue-type", f"{{unacceptable_type,{amqp_type(value)}}}", doing)
    if value == "stream":
        raise FeatureNotAvailable(
            f"{doing}: the in-memory broker does not model stream queues (x-queue-type: stream); "
            "test them on RabbitMQ"
        )
    if value not in ("classic", "quorum"):
        raise _invalid(name, "x-queue-type", f"\"unsupported queue type '{value}'\"", doing)
    return "quorum" if value == "quorum" else "classic"


def _invalid(name: str, key: str, problem: str, doing: str) -> MmateError:
    text = f"invalid arg '{key}' for {replies.queue_ref(name)}: {problem}"
    return replies.precondition_failed(text, name, doing)


def new_queue_settings(
    name: str,
    *,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    arguments: Mapping[str, Any],
    doing: str,
) -> QueueSettings:
    """Validate the declaration of a new queue as RabbitMQ does and return its settings."""
    kind = _kind(arguments, doing, name)
    for key in _ORDER:
        if key not in arguments:
            continue
        value = arguments[key]
        if key == "x-dead-letter-exchange" and not isinstance(value, str):
            text = f"invalid type '{amqp_type(value)}' for arg '{key}' in {replies.queue_ref(name)}"
            raise replies.precondition_failed(text, name, doing)
        if key == "x-queue-version" and value not in (1, 2):
            raise _invalid(name, key, f"\"unsupported queue version '{shown(value)}'\"", doing)
        check = _CHECKS.get(key)
        problem = check(value) if check else None
        if problem:
            raise _invalid(name, key, problem, doing)
    if "x-dead-letter-routing-key" in arguments and "x-dead-letter-exchange" not in arguments:
        raise _invalid(name, "x-dead-letter-routing-key", "routing_key_but_no_dlx_defined", doing)
    if kind == "quorum":
        _check_quorum(name, durable, exclusive, auto_delete, doing)
    for key in _ORDER:
        if key in arguments and key not in _OF_TYPE[kind]:
            text = (
                f"invalid arg '{key}' for {replies.queue_ref(name)} of queue type "
                f"{_RABBIT_TYPE[kind]}"
            )
            raise replies.precondition_failed(text, name, doing)
    return _settings(kind, arguments)


def _check_quorum(name: str, durable: bool, exclusive: bool, auto_delete: bool, doing: str) -> None:
    if name == "":
        text = "Cannot declare a server-named queue for type rabbit_quorum_queue"
        raise replies.precondition_failed(text, name, doing)
    for problem, bad in (
        ("non-durable", not durable),
        ("auto-delete", auto_delete),
        ("exclusive-owner", exclusive),
    ):
        if bad:
            text = f"invalid property '{problem}' for {replies.queue_ref(name)}"
            raise replies.precondition_failed(text, name, doing)


def _settings(kind: QueueKind, arguments: Mapping[str, Any]) -> QueueSettings:
    def number(key: str) -> int | None:
        value = arguments.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    overflow: Overflow = arguments.get("x-overflow", "drop-head")
    if kind == "quorum" and overflow == "reject-publish-dlx":
        overflow = "drop-head"  # RabbitMQ 3.10 quorum queues treat it as drop-head (measured)
    strategy = arguments.get("x-dead-letter-strategy", "at-most-once")
    dlx = arguments.get("x-dead-letter-exchange")
    return QueueSettings(
        kind=kind,
        message_ttl=number("x-message-ttl"),
        expires=number("x-expires"),
        dead_letter_exchange=dlx,
        dead_letter_routing_key=arguments.get("x-dead-letter-routing-key"),
        at_least_once=(
            kind == "quorum"
            and strategy == "at-least-once"
            and overflow == "reject-publish"
            and dlx is not None
        ),
        max_length=number("x-max-length"),
        max_length_bytes=number("x-max-length-bytes"),
        overflow=overflow,
        max_priority=number("x-max-priority") if kind == "classic" else None,
        single_active_consumer=arguments.get("x-single-active-consumer") is True,
        delivery_limit=number("x-delivery-limit") if kind == "quorum" else None,
    )


def _difference(key: str, now: Any, wanted: Any, what: str) -> str:
    """RabbitMQ's text for an argument that differs (``_MISSING``: absent on that side)."""
    if now is _MISSING:
        received = f"the value '{shown(wanted)}' of type '{amqp_type(wanted)}'"
        return f"inequivalent arg '{key}' for {what}: received {received} but current is none"
    if wanted is _MISSING:
        current = f"the value '{shown(now)}' of type '{amqp_type(now)}'"
        return f"inequivalent arg '{key}' for {what}: received none but current is {current}"
    return (
        f"inequivalent arg '{key}' for {what}: received '{shown(wanted)}' but current is "
        f"'{shown(now)}'"
    )


_MISSING: Any = object()


def check_queue_equivalent(
    name: str,
    kind: QueueKind,
    current: tuple[bool, bool, Mapping[str, Any]],
    wanted: tuple[bool, bool, Mapping[str, Any]],
    doing: str,
    spec: Mapping[str, Any],
) -> None:
    """Raise 406 when a redeclaration differs from the queue: (durable, auto_delete, arguments)
    of each; ``spec`` is what the caller asked for (kept in the error)."""
    what = replies.queue_ref(name)
    for field, now, want in (
        ("durable", current[0], wanted[0]),
        ("auto_delete", current[1], wanted[1]),
    ):
        if now != want:
            text = _difference(field, now, want, what)
            raise replies.precondition_failed(text, name, doing, spec)
    have, want_args = current[2], wanted[2]
    for key in _ORDER:
        if key not in _OF_TYPE[kind]:
            continue
        now_value = have.get(key, _MISSING)
        want_value = want_args.get(key, _MISSING)
        pair = (now_value, want_value)
        if all(v is _MISSING for v in pair) or (
            key == "x-queue-type" and all(v is _MISSING or v == "classic" for v in pair)
        ):
            continue  # absent on both sides; an absent queue type is classic
        if now_value is _MISSING or want_value is _MISSING or not equivalent(now_value, want_value):
            text = _difference(key, now_value, want_value, what)
            raise replies.precondition_failed(text, name, doing, spec)


def check_exchange_equivalent(
    name: str,
    current: tuple[str, bool, bool, Mapping[str, Any]],
    wanted: tuple[str, bool, bool, Mapping[str, Any]],
    doing: str,
    spec: Mapping[str, Any],
) -> None:
    """Raise 406 when an exchange is declared again with another type, durability, auto-delete
    or ``alternate-exchange`` (the only argument RabbitMQ compares): (type, durable,
    auto_delete, arguments) of each."""
    what = replies.exchange_ref(name)
    for field, now, want in zip(
        ("type", "durable", "auto_delete"), current[:3], wanted[:3], strict=True
    ):
        if now != want:
            text = _difference(field, now, want, what)
            raise replies.precondition_failed(text, name, doing, spec)
    key = "alternate-exchange"
    now_value = current[3].get(key, _MISSING)
    want_value = wanted[3].get(key, _MISSING)
    if now_value is _MISSING and want_value is _MISSING:
        return
    if now_value is _MISSING or want_value is _MISSING or not equivalent(now_value, want_value):
        raise replies.precondition_failed(
            _difference(key, now_value, want_value, what), name, doing, spec
        )
