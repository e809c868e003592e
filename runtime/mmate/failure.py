"""The one place that decides what happens to a message that could not be handled.

Every failure a consumer meets (a body that is not a valid envelope, a type with no handler on the
queue, a payload that fails validation, a handler that raised or timed out) is described as a
``Failure`` and passed to ``decide``, which logs it (queue, type, message id, reason; never the
body) and returns the ``Action``.

Current policy (issue #3): every failure is dead-lettered at once: ``nack`` without requeue, so the
broker moves it to the queue's dead-letter route and nothing is requeued in a loop. The retry
machinery (issue #4) replaces ``decide``; nothing else needs to change.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("mmate.failure")

Stage = Literal["decode", "dispatch", "validate", "handler"]


class Action(enum.Enum):
    ACK = "ack"
    """Done with it (e.g. a failure that was answered and must not come back)."""
    DEAD_LETTER = "dead-letter"
    """``basic.nack`` with ``requeue=False``: the broker dead-letters it (or drops it without a
    route)."""
    REQUEUE = "requeue"
    """``basic.nack`` with ``requeue=True``: deliver it again (only for failures known to pass)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed delivery."""

    stage: Stage
    error: BaseException
    queue: str
    message_type: str
    message_id: str
    redelivered: bool


def decide(failure: Failure) -> Action:
    """Log ``failure`` and say what to do with the message. See the module docstring for the
    policy."""
    if failure.stage == "handler":
        log.error(
            "handler for %s %s on queue %s failed, dead-lettering it: %s: %s",
            failure.message_type or "?",
            failure.message_id or "?",
            failure.queue,
            type(failure.error).__name__,
            failure.error,
            exc_info=failure.error,
        )
    else:
        log.error(
            "poison message %s (type %s) on queue %s, dead-lettering it (%s): %s",
            failure.message_id or "?",
            failure.message_type or "?",
            failure.queue,
            failure.stage,
            failure.error,
        )
    return Action.DEAD_LETTER
