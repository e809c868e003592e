"""RabbitMQ's reply codes and texts, and the mmate errors that carry them.

The texts are RabbitMQ 3.10's own (``NOT_FOUND - no queue 'orders' in vhost '/'``); the
in-memory broker has one namespace and calls it vhost ``/``. Every error's message starts with
what was being done (``declare queue 'orders'``), then the reply code and text; the text alone
is in ``broker_reply`` (topology errors) or ``reply_text`` (``ChannelClosed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import (
    AccessRefused,
    ChannelClosed,
    EntityNotFound,
    MmateError,
    PreconditionFailed,
    ResourceLocked,
    TopologyError,
)

VHOST = "/"

NOT_FOUND = 404
ACCESS_REFUSED = 403
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
NO_ROUTE = 312
COMMAND_INVALID = 503

_CODES: tuple[tuple[type[TopologyError], int], ...] = (
    (EntityNotFound, NOT_FOUND),
    (AccessRefused, ACCESS_REFUSED),
    (ResourceLocked, RESOURCE_LOCKED),
    (PreconditionFailed, PRECONDITION_FAILED),
)


def queue_ref(name: str) -> str:
    return f"queue '{name}' in vhost '{VHOST}'"


def exchange_ref(name: str) -> str:
    return f"exchange '{name}' in vhost '{VHOST}'"


def not_found(kind: str, name: str, doing: str) -> EntityNotFound:
    reply = f"NOT_FOUND - no {kind} '{name}' in vhost '{VHOST}'"
    return EntityNotFound(f"{doing}: {NOT_FOUND} {reply}", entity=name, broker_reply=reply)


def access_refused(text: str, entity: str, doing: str) -> AccessRefused:
    reply = f"ACCESS_REFUSED - {text}"
    return AccessRefused(f"{doing}: {ACCESS_REFUSED} {reply}", entity=entity, broker_reply=reply)


def default_exchange_refused(doing: str) -> AccessRefused:
    return access_refused("operation not permitted on the default exchange", "", doing)


def resource_locked(queue: str, doing: str) -> ResourceLocked:
    reply = (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked {queue_ref(queue)}. It "
        "could be originally declared on another connection or the exclusive property value "
        "does not match that of the original declaration."
    )
    return ResourceLocked(f"{doing}: {RESOURCE_LOCKED} {reply}", entity=queue, broker_reply=reply)


def precondition_failed(
    text: str, entity: str, doing: str, wanted: Mapping[str, Any] | None = None
) -> PreconditionFailed:
    reply = f"PRECONDITION_FAILED - {text}"
    return PreconditionFailed(
        f"{doing}: {PRECONDITION_FAILED} {reply}",
        entity=entity,
        wanted=wanted or {},
        broker_reply=reply,
    )


def reply_of(error: MmateError) -> tuple[int, str]:
    """The AMQP reply code and text an error closed a channel with."""
    if isinstance(error, TopologyError):
        for cls, code in _CODES:
            if isinstance(error, cls):
                return code, error.broker_reply
    if isinstance(error, ChannelClosed):
        return error.reply_code, error.reply_text
    return 0, str(error)


def channel_closed(number: int, reason: MmateError | None, doing: str) -> ChannelClosed:
    """The error of a call on a closed channel."""
    if reason is None:
        return ChannelClosed(f"{doing}: channel {number} is closed")
    code, text = reply_of(reason)
    return ChannelClosed(
        f"{doing}: channel {number} was closed by the broker: {code} {text}",
        reply_code=code,
        reply_text=text,
    )
