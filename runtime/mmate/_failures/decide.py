"""The one place that decides what happens to a message that could not be handled.

Every failure a consumer meets (a poison body, a type with no handler on the queue, a payload that
fails validation, a handler that raised or timed out) is described as a ``Failure`` and passed to
``decide``, which logs it (queue, type, message id, attempt, reason; never the body) and returns a
``Decision``. The layers are applied in this fixed order, in ``decide`` and nowhere else:

1. **Classification.** Poison (any stage but ``handler``) is permanent. A handler's exception is
   classified by ``classification.failure_kind``; an unknown exception by the queue's
   ``retry.unknown_errors`` (transient by default; transient too for a queue without a policy).
2. **Permanent** -> ``DeadLetter`` at once (reason ``permanent-error`` or the poison reason).
3. **Immediate retries**: a transient failure is retried in-process, at once, up to
   ``retry.immediate`` times per delivery (``RetryNow``); ``RetryAfter`` skips this layer.
4. **Broker retry**: while ``attempt < retry.attempts`` and the queue has wait queues,
   ``RetryLater`` names the wait queue (tier chosen by ``retry``) and the next attempt; a
   ``RetryAfter`` longer than every wait queue goes through the delay cascade when the consumer
   has one (``cascade=True``), else to the longest wait queue.
5. **Dead letter**: otherwise ``DeadLetter`` with reason ``retries-exhausted``.

The consumer carries a decision out (``consumer.QueueConsumer``): it publishes the message to the
wait queue or dead-letter queue and acks it only after the broker confirmed that publish; if the
publish fails it requeues the message after a pause, so it is never lost.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Literal

from .._contract.topology import QueueDef
from ..errors import DecodeError, RetryAfter
from . import deadletter, poison, retry
from .classification import FailureKind, failure_kind

log = logging.getLogger("mmate.failure")

Stage = Literal["poison", "decode", "dispatch", "validate", "handler", "internal"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed delivery (or one failed call of its handler)."""

    stage: Stage
    error: BaseException
    queue: str
    message_type: str
    message_id: str
    redelivered: bool = False
    attempt: int = 1
    """The delivery's attempt number (``retry.attempt_of``)."""
    immediate_done: int = 0
    """How many immediate retries of this delivery already ran."""
    reason: str = ""
    """For stage ``poison``: the poison reason (``poison.check_body``)."""


@dataclass(frozen=True, slots=True)
class RetryNow:
    """Call the handler again at once (an immediate retry)."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Publish the message to ``wait_queue``; it comes back after ``delay_ms`` as
    ``next_attempt``."""

    wait_queue: str
    delay_ms: int
    next_attempt: int
    cascade: bool = False
    """Through the delay cascade (``mmate.delay``) instead of a wait queue (``wait_queue`` is
    empty): a ``RetryAfter`` longer than every wait queue, when the consumer has the cascade."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Publish the message to the queue's dead-letter route with ``reason``."""

    reason: str
    kind: FailureKind


Decision = RetryNow | RetryLater | DeadLetter


def classify(failure: Failure, queue: QueueDef | None) -> tuple[FailureKind, str]:
    """Layer 1: ``(kind, dead-letter reason if it ends there)``."""
    if failure.stage == "poison":
        return "permanent", failure.reason or poison.UNDECODABLE
    if failure.stage == "decode":
        error = failure.error
        reason = (
            poison.decode_reason(error) if isinstance(error, DecodeError) else poison.UNDECODABLE
        )
        return "permanent", reason
    if failure.stage == "dispatch":
        return "permanent", poison.UNKNOWN_TYPE
    if failure.stage == "validate":
        return "permanent", poison.VALIDATION_FAILED
    if failure.stage == "internal":
        return "permanent", poison.INTERNAL_ERROR
    kind = failure_kind(failure.error)
    if kind is None:
        policy = queue.retry if queue is not None else None
        kind = policy.unknown_errors if policy is not None else "transient"
    if kind == "permanent":
        return kind, deadletter.PERMANENT_ERROR
    return kind, deadletter.RETRIES_EXHAUSTED


def decide(
    failure: Failure,
    queue: QueueDef | None = None,
    rng: random.Random | None = None,
    *,
    cascade: bool = False,
) -> Decision:
    """Log ``failure`` and say what to do with the message (layers in the module docstring).

    ``cascade``: the delay cascade is available for a ``RetryAfter`` longer than every wait queue.
    """
    kind, reason = classify(failure, queue)
    policy = queue.retry if queue is not None else None
    decision: Decision
    if kind == "permanent":
        decision = DeadLetter(reason, kind)
    elif (
        policy is not None
        and not isinstance(failure.error, RetryAfter)
        and failure.immediate_done < policy.immediate
    ):
        decision = RetryNow()
    elif (
        policy is not None
        and queue is not None
        and queue.wait_queues
        and failure.attempt < policy.attempts
    ):
        tiers = queue.wait_queues.keys()
        wanted_ms = failure.error.delay * 1000 if isinstance(failure.error, RetryAfter) else 0.0
        if isinstance(failure.error, RetryAfter) and cascade and wanted_ms > max(tiers):
            seconds = math.ceil(failure.error.delay)
            decision = RetryLater("", seconds * 1000, failure.attempt + 1, cascade=True)
            _log(failure, kind, decision)
            return decision
        if isinstance(failure.error, RetryAfter):
            delay = retry.tier_at_least(tiers, wanted_ms)
            if delay < wanted_ms:
                log.warning(
                    "%s %s on queue %s asked to retry after %g s; the longest wait queue of "
                    "%s is %d ms, using it",
                    failure.message_type or "?",
                    failure.message_id or "?",
                    failure.queue,
                    failure.error.delay,
                    failure.queue,
                    delay,
                )
        else:
            delay = retry.backoff_tier(policy, tiers, failure.attempt, rng)
        decision = RetryLater(queue.wait_queues[delay], delay, failure.attempt + 1)
    else:
        decision = DeadLetter(reason, kind)
    _log(failure, kind, decision)
    return decision


def _log(failure: Failure, kind: FailureKind, decision: Decision) -> None:
    what = (
        f"{failure.message_type or '?'} {failure.message_id or '?'} on queue {failure.queue} "
        f"(attempt {failure.attempt})"
    )
    error = retry.error_text(failure.error)
    if failure.stage != "handler":
        log.error(
            "poison message %s (%s): %s; dead-lettering it as %s",
            what,
            failure.stage,
            retry.safe_text(failure.error),
            decision.reason if isinstance(decision, DeadLetter) else "?",
        )
    elif isinstance(decision, RetryNow):
        log.warning(
            "handler for %s failed (%s), immediate retry %d: %s",
            what,
            kind,
            failure.immediate_done + 1,
            error,
        )
    elif isinstance(decision, RetryLater):
        log.warning(
            "handler for %s failed (%s), retrying in %d ms%s as attempt %d: %s",
            what,
            kind,
            decision.delay_ms,
            " (through the delay cascade)" if decision.cascade else "",
            decision.next_attempt,
            error,
        )
    else:
        log.error(
            "handler for %s failed (%s), dead-lettering it (%s): %s",
            what,
            kind,
            decision.reason,
            error,
            exc_info=failure.error,
        )
