"""Dead-lettering as RabbitMQ 3.10 does it: ``dead_letter`` (the ``x-death`` header, the
``x-first-death-*`` headers and the message a dead-letter exchange receives, malformed
``x-death`` values handled as RabbitMQ handles them) and ``is_cycle`` (a dead letter is not
delivered back into an automatic cycle; a rejection is never one). The rules:
docs/testing.md (Dead-lettering).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from .message import Message
from .values import copy_value

Reason = Literal["rejected", "expired", "maxlen", "delivery_limit"]


def _fold(deaths: list[Any]) -> list[dict[str, Any]] | None:
    """Entries with one per (queue, reason), first wins; None when one is not a table."""
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for entry in deaths:
        if not isinstance(entry, dict):
            return None
        key = (repr(entry.get("queue")), repr(entry.get("reason")))
        if key in seen:
            continue
        seen.add(key)
        out.append(entry)
    return out


def dead_letter(
    message: Message,
    *,
    queue: str,
    reason: Reason,
    time: datetime,
    exchange: str,
    routing_key: str | None,
) -> Message | None:
    """The message ``exchange`` receives when ``message`` dies in ``queue`` (None: RabbitMQ would
    fail to dead-letter it; it is lost)."""
    headers: dict[str, Any] = (
        copy_value(message.properties.headers) if message.properties.headers else {}
    )
    cc = headers.get("CC")
    death_keys = [message.routing_keys[0]] + (
        [key for key in cc if isinstance(key, str)] if isinstance(cc, list) else []
    )
    entry: dict[str, Any] = {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "time": time.replace(microsecond=0),
        "exchange": message.exchange,
        "routing-keys": death_keys,
    }
    if message.properties.expiration is not None:
        entry["original-expiration"] = message.properties.expiration
    if "x-death" not in headers:
        headers["x-death"] = [entry]
        headers["x-first-death-reason"] = reason
        headers["x-first-death-queue"] = queue
        headers["x-first-death-exchange"] = message.exchange
    elif not isinstance(headers["x-death"], list):
        headers["x-death"] = [entry]
    else:
        folded = _fold(headers["x-death"])
        if folded is None:
            return None
        match = next(
            (d for d in folded if d.get("queue") == queue and d.get("reason") == reason), None
        )
        if match is None:
            headers["x-death"] = [entry, *folded]
        else:
            count = match.get("count", 0)
            if isinstance(count, bool) or not isinstance(count, int):
                return None
            bumped = {**match, "count": count + 1}
            headers["x-death"] = [bumped, *(d for d in folded if d is not match)]
    if routing_key is not None:
        headers.pop("CC", None)
        keys: tuple[str, ...] = (routing_key,)
    else:
        keys = message.routing_keys
    properties = replace(message.properties, headers=headers, expiration=None)
    return Message(message.body, properties, exchange, keys[0], keys, None)


def is_cycle(queue: str, message: Message) -> bool:
    """Whether delivering dead letter ``message`` to ``queue`` closes an automatic cycle."""
    headers = message.properties.headers or {}
    deaths = headers.get("x-death")
    if not isinstance(deaths, list):
        return False
    for index, death in enumerate(deaths):
        if isinstance(death, dict) and death.get("queue") == queue:
            return all(
                isinstance(d, dict) and d.get("reason") != "rejected" for d in deaths[: index + 1]
            )
    return False
