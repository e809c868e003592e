"""Every error the runtime raises, and the one table that maps aiormq's exceptions onto them.

::

    MmateError
    ├── BrokerConnectionError      cannot connect, or the connection is gone (also a builtin
    ConnectionError) ├── TopologyError              declaring or verifying the topology failed
    │   ├── PreconditionFailed     406: the entity exists with other settings (names entity, wanted,
    broker said) │   ├── EntityNotFound         404: passive verify found no such exchange or queue
    │   └── AccessRefused          403: the credentials may not declare / use it
    ├── PublishError               a publish was not confirmed
    │   ├── UnroutableError        mandatory publish reached no queue (names exchange and routing
    key) │   ├── NackError              the broker nacked it
    │   ├── PublishTimeout         no confirm within the timeout (e.g. broker under an alarm)
    │   └── BatchPublishError      some messages of a batch failed; ``failures`` says which
    ├── RequestTimeout             no reply to a query within the timeout (names query type,
    correlation id) ├── RemoteError                the responder answered with an error reply
    (``code``, ``message``) ├── DecodeError                a body is not a valid envelope of a known
    type (a poison message) ├── FeatureNotAvailable        an option this runtime cannot honour yet
    (``delay``, ``schedule_at``) ├── PermanentError             raised by handlers: the same input
    will fail the same way tomorrow └── TransientError             raised by handlers: worth
    retrying later

``ReplyError`` is an alias of ``RemoteError``. Messages never contain passwords: every URL in an
error text goes through ``mmate.url.mask``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiormq.exceptions as amqp_exc


class MmateError(Exception):
    """Base of every error raised by the mmate runtime."""


class BrokerConnectionError(MmateError, ConnectionError):
    """Could not connect to the broker, or the connection was lost."""


class TopologyError(MmateError):
    """Declaring or verifying an exchange, queue or binding failed."""

    def __init__(self, message: str, *, entity: str = "", broker_reply: str = "") -> None:
        super().__init__(message)
        self.entity = entity
        self.broker_reply = broker_reply


class PreconditionFailed(TopologyError):
    """The broker refused a declaration because the entity exists with other settings (406)."""

    def __init__(
        self,
        message: str,
        *,
        entity: str,
        wanted: Mapping[str, Any],
        broker_reply: str,
    ) -> None:
        super().__init__(message, entity=entity, broker_reply=broker_reply)
        self.wanted = dict(wanted)


class EntityNotFound(TopologyError):
    """A passive declaration found no such exchange or queue (404)."""


class AccessRefused(TopologyError):
    """The user may not configure or access the entity (403)."""


class PublishError(MmateError):
    """A publish did not end with the broker's confirm."""

    def __init__(self, message: str, *, exchange: str = "", routing_key: str = "") -> None:
        super().__init__(message)
        self.exchange = exchange
        self.routing_key = routing_key


class UnroutableError(PublishError):
    """The broker returned a mandatory message: no queue is bound for its exchange and routing
    key."""


class NackError(PublishError):
    """The broker negatively acknowledged the message (it did not take responsibility for it)."""


class PublishTimeout(PublishError):
    """The broker did not confirm within the publish timeout."""


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """One message of a batch that failed: its index in the batch, its message id and the error."""

    index: int
    message_id: str
    error: MmateError


class BatchPublishError(PublishError):
    """Some messages of ``publish_many`` / a batch failed; all the others were confirmed."""

    def __init__(self, failures: Sequence[BatchFailure], total: int) -> None:
        detail = "; ".join(f"#{f.index} ({f.message_id}): {f.error}" for f in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {total} messages failed: {detail}{more}")
        self.failures = tuple(failures)
        self.total = total


class RequestTimeout(MmateError, TimeoutError):
    """No reply arrived for a query within its timeout."""

    def __init__(self, query_type: str, correlation_id: str, timeout: float) -> None:
        super().__init__(
            f"no reply to {query_type} (correlation id {correlation_id}) within {timeout:g} s"
        )
        self.query_type = query_type
        self.correlation_id = correlation_id
        self.timeout = timeout


class RemoteError(MmateError):
    """The responder of a query answered with an error reply (``success: false``)."""

    def __init__(
        self, code: str, message: str, *, reply_type: str = "", correlation_id: str = ""
    ) -> None:
        super().__init__(f"{reply_type or 'reply'} error {code}: {message}")
        self.code = code
        self.message = message
        self.reply_type = reply_type
        self.correlation_id = correlation_id


ReplyError = RemoteError


class DecodeError(MmateError):
    """A body is not JSON, not an envelope, names an unknown type, or its payload fails
    validation."""

    def __init__(self, reason: str, *, message_type: str = "", message_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_type = message_type
        self.message_id = message_id


class FeatureNotAvailable(MmateError):
    """An option was asked for that this runtime cannot honour (it never silently ignores one)."""


class PermanentError(MmateError):
    """Raise from a handler when retrying cannot help: the message is dead-lettered at once."""


class TransientError(MmateError):
    """Raise from a handler when the failure may pass: the message may be retried later."""


# aiormq exception class -> (mmate class, short description). Looked up along the MRO, so the most
# specific row wins. The only place that knows aiormq's exception classes.
_AIORMQ_TABLE: tuple[tuple[type[BaseException], type[MmateError], str], ...] = (
    (amqp_exc.PublishError, UnroutableError, "returned as unroutable"),
    (amqp_exc.DeliveryError, NackError, "nacked"),
    (amqp_exc.ChannelPreconditionFailed, PreconditionFailed, "precondition failed (406)"),
    (amqp_exc.ChannelNotFoundEntity, EntityNotFound, "not found (404)"),
    (amqp_exc.ChannelAccessRefused, AccessRefused, "access refused (403)"),
    (amqp_exc.ChannelLockedResource, TopologyError, "resource locked (405)"),
    (amqp_exc.ProbableAuthenticationError, BrokerConnectionError, "authentication failed"),
    (amqp_exc.AuthenticationError, BrokerConnectionError, "authentication failed"),
    (amqp_exc.AMQPConnectionError, BrokerConnectionError, "connection error"),
    (amqp_exc.ChannelInvalidStateError, MmateError, "channel closed"),
    (amqp_exc.AMQPChannelError, MmateError, "channel error"),
    (amqp_exc.AMQPError, MmateError, "AMQP error"),
    (ConnectionError, BrokerConnectionError, "connection error"),
    (OSError, BrokerConnectionError, "network error"),
    (asyncio.TimeoutError, MmateError, "timed out"),
)


def broker_reply(exc: BaseException) -> str:
    """The broker's own words from an aiormq exception (its reply text), without any URL."""
    parts = [str(a) for a in exc.args if a is not None and not isinstance(a, BaseException)]
    return " ".join(parts) or type(exc).__name__


def classify(exc: BaseException) -> type[MmateError]:
    """The mmate class the table maps an aiormq or socket exception to (``MmateError`` if none)."""
    if isinstance(exc, MmateError):
        return type(exc)
    for source, target, _ in _AIORMQ_TABLE:
        if isinstance(exc, source):
            return target
    return MmateError


def translate(exc: BaseException, context: str) -> MmateError:
    """Map an aiormq or socket exception to the mmate class of the table, prefixed with ``context``.

    Callers with more context (the entity of a declaration, the route of a publish) use ``classify``
    and build the error themselves.
    """
    if isinstance(exc, MmateError):
        return exc
    for source, target, what in _AIORMQ_TABLE:
        if isinstance(exc, source):
            reply = broker_reply(exc)
            text = f"{context}: {what}: {reply}"
            if issubclass(target, PreconditionFailed):
                return target(text, entity="", wanted={}, broker_reply=reply)
            if issubclass(target, TopologyError):
                return target(text, entity="", broker_reply=reply)
            return target(text)
    return MmateError(f"{context}: {type(exc).__name__}: {exc}")
