"""Go Mmate's service queue: what a ``go_compatible`` queue cannot have, the RabbitMQ policy that
gives it those settings instead, and the warning for a queue named like a Go service queue that
Go would refuse to share.

Go Mmate declares ``<service>-queue`` durable, not exclusive, not auto-delete, with no arguments
but ``x-single-active-consumer: true`` in FIFO mode (docs/interop.md). Queue arguments are
part of a queue's identity, so anything more is a 406 PRECONDITION_FAILED for whichever side
declares second. A policy (``rabbitmqctl set_policy``) applies settings without a redeclare and is
not part of the identity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from .ir import ArgValue
from .queues import main_arguments
from .rawspec import RawQueue
from .report import Report

_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")
_GO_FLAGS = {"durable": True, "exclusive": False, "auto_delete": False}
"""How Go declares its service queue, flag by flag."""


def policy_settings(raw: RawQueue) -> dict[str, ArgValue]:
    """The policy keys that would give ``raw`` the settings a go_compatible queue cannot declare:
    ``max-length``, ``message-ttl``, ``dead-letter-exchange`` (+ ``dead-letter-routing-key``)."""
    settings: dict[str, ArgValue] = {}
    dl = raw.dead_letter
    if dl.enabled and dl.exchange is not None:
        settings["dead-letter-exchange"] = dl.exchange
        if dl.routing_key:
            settings["dead-letter-routing-key"] = dl.routing_key
    if raw.max_length is not None:
        settings["max-length"] = raw.max_length
    if raw.message_ttl_ms is not None:
        settings["message-ttl"] = raw.message_ttl_ms
    return settings


def policy_command(queue: str, settings: Mapping[str, ArgValue]) -> str:
    """``rabbitmqctl set_policy`` applying ``settings`` to exactly the queue ``queue``."""
    pattern = "^" + _REGEX_SPECIAL.sub(r"\\\1", queue) + "$"
    definition = json.dumps(dict(settings), separators=(",", ":"))
    return f"rabbitmqctl set_policy {queue} '{pattern}' '{definition}' --apply-to queues"


def check_go_compatible(report: Report, raw: RawQueue) -> None:
    """Every setting of a go_compatible queue that Go's declaration does not have."""
    what = raw.what
    at = raw.locs.get
    leave = (
        "define the queue under queues: instead of service_queue"
        if raw.service is not None
        else "write go_compatible: false if no Go instance declares this queue"
    )
    settings = policy_settings(raw)
    by_policy = (
        "set it through a RabbitMQ policy instead, which applies without a redeclare (one policy "
        f"holds all of the queue's settings): {policy_command(raw.name, settings)}"
    )
    for key, wanted in _GO_FLAGS.items():
        value = getattr(raw, key)
        if value != wanted:
            report.error(
                at(key, raw.loc),
                f"{what} is go_compatible and cannot have {key}: {str(value).lower()}: Go Mmate "
                "declares its queue durable, not exclusive and not auto-delete, and a declare "
                "that differs fails with 406 PRECONDITION_FAILED",
                f"remove {key}, or {leave}",
            )
    if raw.type == "quorum":
        report.error(
            at("type", raw.loc),
            f"{what} is go_compatible and cannot be a quorum queue: Go Mmate declares a classic "
            "queue, and a queue's type is fixed when it is declared (no policy changes it)",
            f"remove type: quorum, or {leave}",
        )
    for key, setting in (("max_length", "max-length"), ("message_ttl", "message-ttl")):
        if setting in settings:
            report.error(
                at(key, raw.loc),
                f"{what} is go_compatible and cannot have {key} (the queue argument x-{setting}, "
                "which Go Mmate does not declare)",
                f"remove {key} and {by_policy}",
            )
    if raw.max_priority is not None:
        report.error(
            at("max_priority", raw.loc),
            f"{what} is go_compatible and cannot have max_priority: priorities need the queue "
            "argument x-max-priority, which Go Mmate does not declare and no policy can set",
            f"remove max_priority, or {leave}",
        )
    if raw.delivery_limit is not None:
        report.error(
            at("delivery_limit", raw.loc),
            f"{what} is go_compatible and cannot have delivery_limit: a delivery limit belongs to "
            "quorum queues and a go_compatible queue is classic",
            "remove it (retry attempts already bound how often mmate redelivers a failed message)",
        )
    if "dead-letter-exchange" in settings:
        report.error(
            raw.dead_letter.loc or raw.loc,
            f"{what} is go_compatible and cannot dead-letter through exchange "
            f'"{raw.dead_letter.exchange}" (the queue arguments x-dead-letter-exchange and '
            "x-dead-letter-routing-key, which Go Mmate does not declare)",
            f"remove dead_letter (mmate then moves dead letters to {raw.name}.dlq itself), or, "
            f"for broker-side dead-lettering, {by_policy}",
        )


def check_go_queue_names(
    report: Report, raws: list[RawQueue], services: Mapping[str, str], externals: frozenset[str]
) -> None:
    """Warn on a queue named like the Go service queue of a service of the specs
    (``<service>-queue``) that Go Mmate could not share: its declaration has arguments or flags
    Go's has not. ``go_compatible`` written either way silences it. ``services`` maps each
    service's queue name to the service's name; ``externals`` are the external services among
    them."""
    for raw in raws:
        service = services.get(raw.name)
        if service is None or raw.go_compatible or "go_compatible" in raw.locs:
            continue
        differences = [
            name for name, _ in main_arguments(raw) if name != "x-single-active-consumer"
        ]
        differences += [
            f"{key}: {str(getattr(raw, key)).lower()}"
            for key, wanted in _GO_FLAGS.items()
            if getattr(raw, key) != wanted
        ]
        if not differences:
            continue
        kind = "external service" if service in externals else "service"
        report.warn(
            raw.loc,
            f'queue "{raw.name}" is named like the Go service queue of {kind} "{service}" but is '
            f"declared with {', '.join(differences)}, which Go Mmate does not use: a Go instance "
            "and this one cannot both declare it (406 PRECONDITION_FAILED)",
            "write go_compatible: true to declare it as Go does (retries and dead letters still "
            "work), or go_compatible: false if no Go instance shares it",
        )
