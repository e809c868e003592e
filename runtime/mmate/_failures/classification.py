"""Classification: will the same input fail the same way tomorrow? One table answers it per
exception class: permanent for ``PermanentError``, ``DecodeError`` (bad JSON, no type, unknown type,
failed validation), unroutable publishes and topology errors; transient for ``TransientError``,
lost connections, closed channels, unconfirmed publishes and timeouts (a handler timeout
included). Anything else is unknown (``None``): the queue's ``retry.unknown_errors`` decides
(transient unless the spec says otherwise)."""

from __future__ import annotations

from typing import Literal

from ..errors import (
    BrokerConnectionError,
    ChannelClosed,
    DecodeError,
    FeatureNotAvailable,
    PermanentError,
    PublishError,
    RequestTimeout,
    TopologyError,
    TransientError,
    UnroutableError,
)

FailureKind = Literal["transient", "permanent"]

# Exception class -> what a failure of that class is. The first row the exception is an instance
# of wins, so more specific rows come first.
_FAILURE_TABLE: tuple[tuple[type[BaseException], FailureKind], ...] = (
    (PermanentError, "permanent"),
    (TransientError, "transient"),
    (DecodeError, "permanent"),
    (UnroutableError, "permanent"),  # a follow-up has no route: configuration, not bad luck
    (TopologyError, "permanent"),  # 404, 403, 405, 406
    (FeatureNotAvailable, "permanent"),
    (BrokerConnectionError, "transient"),
    (ChannelClosed, "transient"),
    (PublishError, "transient"),  # nacked, not confirmed in time
    (RequestTimeout, "transient"),
    (TimeoutError, "transient"),  # also a handler that exceeded handler_timeout
    (ConnectionError, "transient"),
)


def failure_kind(exc: BaseException) -> FailureKind | None:
    """``"permanent"`` or ``"transient"`` by the table, ``None`` for an unknown exception (the
    queue's ``unknown_errors`` policy decides)."""
    for source, kind in _FAILURE_TABLE:
        if isinstance(exc, source):
            return kind
    return None
