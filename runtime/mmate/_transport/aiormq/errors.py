"""The one table that maps aiormq's exceptions onto mmate's (``mmate.errors``), and the broker's
reply code and text they carry.

Every call of the aiormq backend goes through ``translate``; nothing above the transport seam
ever sees an aiormq or pamqp exception. aiormq's stray ``CancelledError`` (it fails the pending
work of a connection it dropped for missed heartbeats with a ``CancelledError`` nobody asked for)
is a lost connection here too (``stray_cancel``).
"""

from __future__ import annotations

import asyncio

import aiormq.exceptions as amqp_exc

from ...errors import (
    AccessRefused,
    BrokerConnectionError,
    ChannelClosed,
    EntityNotFound,
    MmateError,
    NackError,
    PreconditionFailed,
    PublishError,
    ResourceLocked,
    TopologyError,
    UnroutableError,
)

# aiormq exception class -> (mmate class, reply code, short description). The first row the
# exception is an instance of wins, so more specific rows come first.
_TABLE: tuple[tuple[type[BaseException], type[MmateError], int, str], ...] = (
    (amqp_exc.PublishError, UnroutableError, 312, "returned as unroutable"),
    (amqp_exc.DeliveryError, NackError, 0, "nacked"),
    (amqp_exc.ChannelPreconditionFailed, PreconditionFailed, 406, "precondition failed"),
    (amqp_exc.ChannelNotFoundEntity, EntityNotFound, 404, "not found"),
    (amqp_exc.ChannelAccessRefused, AccessRefused, 403, "access refused"),
    (amqp_exc.ChannelLockedResource, ResourceLocked, 405, "resource locked"),
    (amqp_exc.ProbableAuthenticationError, BrokerConnectionError, 403, "authentication failed"),
    (amqp_exc.AuthenticationError, BrokerConnectionError, 403, "authentication failed"),
    (amqp_exc.AMQPConnectionError, BrokerConnectionError, 0, "connection error"),
    (amqp_exc.ChannelInvalidStateError, ChannelClosed, 0, "channel closed"),
    (amqp_exc.ChannelClosed, ChannelClosed, 0, "channel closed"),
    (amqp_exc.AMQPChannelError, ChannelClosed, 0, "channel error"),
    (amqp_exc.AMQPError, MmateError, 0, "AMQP error"),
    (ConnectionError, BrokerConnectionError, 0, "connection error"),
    (OSError, BrokerConnectionError, 0, "network error"),
)


def stray_cancel(exc: BaseException) -> bool:
    """``exc`` is a ``CancelledError`` that nobody asked for (see the module docstring): the current
    task was not cancelled, so it is a lost connection, not a cancellation."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


def reply_of(exc: BaseException) -> tuple[int, str]:
    """The broker's reply code and text carried by an aiormq exception (0 and the exception's
    words when it carries none)."""
    if isinstance(exc, amqp_exc.PublishError):
        frame = getattr(exc, "frame", None)
        return int(getattr(frame, "reply_code", 312) or 312), str(
            getattr(frame, "reply_text", "NO_ROUTE") or "NO_ROUTE"
        )
    args = [a for a in exc.args if a is not None and not isinstance(a, BaseException)]
    code = 0
    for source, _target, row_code, _what in _TABLE:
        if isinstance(exc, source):
            code = row_code
            break
    if args and isinstance(args[0], int):  # ChannelClosed(code, text), AMQPConnectionError(errno,)
        code = code or args[0]
        args = args[1:]
    return code, " ".join(str(a) for a in args) or type(exc).__name__


def translate(exc: BaseException, context: str) -> MmateError:
    """``exc`` (aiormq's, a socket's, or a stray cancel) as mmate's error, its text
    ``"<context>: <what>: <code> <broker's text>"``. mmate errors pass through unchanged."""
    if isinstance(exc, MmateError):
        return exc
    if stray_cancel(exc):
        return BrokerConnectionError(f"{context}: the connection was lost (missed heartbeats)")
    for source, target, _code, what in _TABLE:
        if isinstance(exc, source):
            code, text = reply_of(exc)
            detail = f"{code} {text}" if code else text
            message = f"{context}: {what}: {detail}"
            if issubclass(target, PreconditionFailed):
                return target(message, entity="", wanted={}, broker_reply=text)
            if issubclass(target, TopologyError):
                return target(message, entity="", broker_reply=text)
            if issubclass(target, ChannelClosed):
                return target(message, reply_code=code, reply_text=text)
            if issubclass(target, PublishError):
                return target(message)
            return target(message)
    return MmateError(f"{context}: {type(exc).__name__}: {exc}")
