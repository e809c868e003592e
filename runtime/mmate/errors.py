"""Every error the runtime raises: the exception tree.

::

    MmateError
    ├── BrokerConnectionError   cannot connect, or the connection is gone (also ConnectionError)
    ├── ChannelClosed           a channel closed under the caller (``reply_code``, ``reply_text``)
    ├── TopologyError           declaring or verifying the topology failed
    │   ├── PreconditionFailed  406: the entity exists with other settings
    │   ├── EntityNotFound      404: no such exchange or queue
    │   ├── AccessRefused       403: the credentials may not declare / use it
    │   └── ResourceLocked      405: an exclusive queue another connection holds
    ├── PublishError            a publish was not confirmed (names exchange and routing key)
    │   ├── UnroutableError     mandatory publish reached no queue
    │   ├── NackError           the broker nacked it
    │   ├── PublishTimeout      no confirm within the timeout (e.g. broker under an alarm)
    │   ├── MessageTooLarge     the body is over its route's or the client's size limit: not sent
    │   ├── BatchPublishError   some messages of a batch failed; ``failures`` says which
    │   ├── CircuitOpenError    the publish circuit breaker is open: nothing was sent
    │   └── TransactionError    a transaction did not commit (``outcome`` says what happened)
    ├── RequestTimeout          no reply to a query in time (also TimeoutError)
    ├── RemoteError             the responder answered with an error reply (``code``, ``message``)
    ├── DecodeError             a body is not a valid envelope of a known type (a poison message)
    ├── FeatureNotAvailable     an option this runtime cannot honour
    ├── CronError               an invalid cron expression (defined in ``_delays.cron``)
    ├── PermanentError          raise from a handler: the same input fails the same way tomorrow
    └── TransientError          raise from a handler: the failure may pass; retry later
        └── RetryAfter          raise from a handler: retry after ``delay`` seconds

``ReplyError`` is an alias of ``RemoteError``. ``new_permanent_error(text, cause)`` and
``new_transient_error(text, cause)`` build the two with a cause, like Go's
``messaging.NewPermanentError`` / ``NewTransientError``.

How a failure is classified (transient or permanent) is ``_failures.classification``; how a
backend's own exceptions map onto this tree is the backend's (``_transport.aiormq.errors``).

Messages never contain passwords: every URL in an error text goes through ``mmate.url.mask``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


class MmateError(Exception):
    """Base of every error raised by the mmate runtime."""


class BrokerConnectionError(MmateError, ConnectionError):
    """Could not connect to the broker, or the connection was lost."""


class ChannelClosed(MmateError):
    """The channel an operation needed is closed: by the broker (``reply_code`` and
    ``reply_text`` say why, e.g. 404 after a publish to a missing exchange), or with its
    connection (``reply_code`` 0)."""

    def __init__(self, message: str, *, reply_code: int = 0, reply_text: str = "") -> None:
        super().__init__(message)
        self.reply_code = reply_code
        self.reply_text = reply_text


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


class ResourceLocked(TopologyError):
    """An exclusive queue is in use by another connection (405 RESOURCE_LOCKED)."""


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


class MessageTooLarge(PublishError):
    """A publish refused before anything was sent: its body is larger than ``limit`` bytes.
    ``size`` is the body as it would be consumed (before compression) when the limit is the
    route's ``max_message_bytes`` (the queues it reaches would dead-letter it unread), and the
    body on the wire (after compression) when the limit is the client's ``max_publish_bytes``
    (the broker would refuse it). ``limit_name`` says which."""

    def __init__(
        self,
        message: str,
        *,
        message_type: str,
        size: int,
        limit: int,
        limit_name: Literal["max_message_bytes", "max_publish_bytes"],
        exchange: str = "",
        routing_key: str = "",
    ) -> None:
        super().__init__(message, exchange=exchange, routing_key=routing_key)
        self.message_type = message_type
        self.size = size
        self.limit = limit
        self.limit_name = limit_name


class ChannelTimeout(PublishTimeout):
    """No publishing channel was free within ``channel_timeout``: every slot of its window of
    unconfirmed publishes was taken, or its channel or connection was still being (re)opened.
    Nothing was published; the message names the channel of the pool."""


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


class CircuitOpenError(PublishError):
    """The publish circuit breaker refused the publish without sending anything: it is ``open``
    (``retry_in`` seconds until a trial publish is let through) or ``half-open`` with its one trial
    publish still in flight (``retry_in`` is 0)."""

    def __init__(
        self,
        message: str,
        *,
        state: str,
        retry_in: float,
        exchange: str = "",
        routing_key: str = "",
    ) -> None:
        super().__init__(message, exchange=exchange, routing_key=routing_key)
        self.state = state
        self.retry_in = retry_in


class TransactionError(PublishError):
    """A transaction did not commit. ``outcome`` is ``"rolled-back"`` when the broker certainly
    discarded every message of it, ``"unknown"`` when the commit was sent but its answer never
    came (the connection died or the commit timed out): then all of them or none were published;
    ``"partial"`` when a queue refused a message (a full queue with ``x-overflow:
    reject-publish``): RabbitMQ then failed the commit after delivering some of the transaction's
    messages to the other queues they were routed to (which ones, AMQP does not say: measured
    from one to all of them)."""

    def __init__(
        self, message: str, *, outcome: Literal["rolled-back", "unknown", "partial"]
    ) -> None:
        super().__init__(message)
        self.outcome = outcome


class RequestTimeout(MmateError, TimeoutError):
    """No reply arrived for a query within its timeout."""

    def __init__(
        self, query_type: str, correlation_id: str, timeout: float, *, unreadable: str = ""
    ) -> None:
        text = f"no reply to {query_type} (correlation id {correlation_id}) within {timeout:g} s"
        if unreadable:
            text += f"; an unreadable reply with this correlation id was dropped: {unreadable}"
        super().__init__(text)
        self.query_type = query_type
        self.correlation_id = correlation_id
        self.timeout = timeout
        self.unreadable = unreadable
        """Why a reply that carried this request's correlation id could not be read ("" when
        none came)."""


class RemoteError(MmateError):
    """The responder of a query answered with an error reply (``success: false``)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        reply_type: str = "",
        correlation_id: str = "",
        query_type: str = "",
    ) -> None:
        asked = f"{query_type} request {correlation_id}: " if query_type else ""
        super().__init__(f"{asked}{reply_type or 'reply'} error {code}: {message}")
        self.code = code
        self.message = message
        self.reply_type = reply_type
        self.correlation_id = correlation_id
        self.query_type = query_type


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
    """Raise from a handler when retrying cannot help: the message is dead-lettered at once.

    ``cause`` (optional) becomes ``__cause__``, as with ``raise ... from cause``.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause


class TransientError(MmateError):
    """Raise from a handler when the failure may pass: the message is retried after the queue's
    backoff, and dead-lettered after its last attempt."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause


class RetryAfter(TransientError):
    """Raise from a handler to retry the message after ``delay`` seconds (e.g. a rate limit).

    The queue's wait queues have fixed delays: the smallest one of at least ``delay`` is used;
    when ``delay`` exceeds them all, the delay cascade (whole seconds, rounded up) when the client
    relays delayed messages, else the longest wait queue. It counts as an attempt like any transient
    failure and skips the immediate in-process retries.
    """

    def __init__(self, delay: float, message: str = "", cause: BaseException | None = None) -> None:
        if delay < 0:
            raise ValueError(f"RetryAfter delay must not be negative, got {delay}")
        super().__init__(message or f"retry after {delay:g} s", cause)
        self.delay = float(delay)


def new_permanent_error(message: str, cause: BaseException | None = None) -> PermanentError:
    """A ``PermanentError`` with ``cause`` (Go: ``messaging.NewPermanentError(msg, err)``)."""
    return PermanentError(message, cause)


def new_transient_error(message: str, cause: BaseException | None = None) -> TransientError:
    """A ``TransientError`` with ``cause`` (Go: ``messaging.NewTransientError(msg, err)``)."""
    return TransientError(message, cause)
