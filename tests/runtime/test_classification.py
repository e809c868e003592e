"""Error classification and the fixed order of the failure layers (``errors.failure_kind``,
``failure.decide``), the attempt count from headers, and the error helpers. No broker needed."""

from __future__ import annotations

import logging
from typing import Any

import aiormq.exceptions as amqp_exc
import mmate
import pytest
from mmate import QueueDef, RetryPolicy
from mmate._failures.classification import failure_kind
from mmate._failures.decide import DeadLetter, Failure, RetryLater, RetryNow, Stage, decide
from mmate._failures.retry import attempt_of
from mmate._transport.aiormq.errors import translate


def _queue(
    *,
    attempts: int = 3,
    immediate: int = 0,
    unknown: str = "transient",
    waits: dict[int, str] | None = None,
) -> QueueDef:
    policy = RetryPolicy(
        attempts=attempts,
        backoff="exponential",
        initial_delay_ms=100,
        max_delay_ms=400,
        jitter=False,
        delays_ms=(100, 200, 400)[: attempts - 1],
        immediate=immediate,
        unknown_errors=unknown,  # type: ignore[arg-type]
    )
    return QueueDef(
        "q",
        retry=policy,
        dead_letter_queue="q.dlq",
        wait_queues=waits if waits is not None else {100: "q.wait.100", 200: "q.wait.200"},
    )


def _failure(error: BaseException, *, attempt: int = 1, immediate: int = 0) -> Failure:
    return Failure(
        "handler",
        error,
        "q",
        "CreateOrderCommand",
        "m-1",
        attempt=attempt,
        immediate_done=immediate,
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (mmate.PermanentError("bad"), "permanent"),
        (mmate.TransientError("busy"), "transient"),
        (mmate.RetryAfter(5), "transient"),
        (mmate.DecodeError("body is not JSON"), "permanent"),
        (mmate.UnroutableError("no route"), "permanent"),
        (mmate.EntityNotFound("gone"), "permanent"),
        (mmate.PreconditionFailed("406", entity="q", wanted={}, broker_reply=""), "permanent"),
        (mmate.BrokerConnectionError("lost"), "transient"),
        (mmate.PublishTimeout("slow"), "transient"),
        (mmate.NackError("nacked"), "transient"),
        (mmate.RequestTimeout("GetOrderQuery", "c-1", 5), "transient"),
        (TimeoutError(), "transient"),
        (ConnectionResetError(), "transient"),
        (translate(amqp_exc.AMQPConnectionError("reset"), "the backend"), "transient"),
        (translate(amqp_exc.ChannelNotFoundEntity("404"), "the backend"), "permanent"),
        (translate(amqp_exc.ChannelAccessRefused("403"), "the backend"), "permanent"),
        (translate(amqp_exc.DeliveryError("nack", None), "the backend"), "transient"),
        (translate(amqp_exc.ChannelInvalidStateError("closed"), "the backend"), "transient"),
        (ValueError("?"), None),
        (KeyError("?"), None),
        (mmate.RemoteError("E1", "remote handler failed"), None),
    ],
)
def test_the_one_table_classifies_errors(error: BaseException, kind: str | None) -> None:
    assert failure_kind(error) == kind


def test_helpers_match_the_go_constructors_and_keep_the_cause() -> None:
    cause = OSError("disk full")
    permanent = mmate.new_permanent_error("invalid order", cause)
    transient = mmate.new_transient_error("database error", cause)
    assert isinstance(permanent, mmate.PermanentError) and permanent.__cause__ is cause
    assert isinstance(transient, mmate.TransientError) and transient.__cause__ is cause
    assert str(permanent) == "invalid order"
    assert isinstance(mmate.RetryAfter(3), mmate.TransientError)
    assert mmate.RetryAfter(3).delay == 3.0
    with pytest.raises(ValueError, match="negative"):
        mmate.RetryAfter(-1)


@pytest.mark.parametrize(
    ("stage", "error", "reason"),
    [
        ("decode", mmate.DecodeError("body is not JSON: Expecting value"), "invalid-json"),
        ("decode", mmate.DecodeError("envelope has no type"), "no-type"),
        (
            "decode",
            mmate.DecodeError("body is JSON list, not an envelope object"),
            "not-an-envelope",
        ),
        ("dispatch", mmate.DecodeError("no handler for type 'X'"), "unknown-type"),
        ("validate", mmate.DecodeError("payload of X fails validation"), "validation-failed"),
    ],
)
def test_poison_is_dead_lettered_at_once_whatever_the_policy(
    stage: Stage, error: BaseException, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="mmate.failure")
    failure = Failure(stage, error, "orders-q", "CreateOrderCommand", "m-1")
    assert decide(failure, _queue(immediate=3)) == DeadLetter(reason, "permanent")
    assert "orders-q" in caplog.text and "m-1" in caplog.text and str(error) in caplog.text


def test_layers_run_in_order_classification_immediate_broker_dead_letter() -> None:
    queue = _queue(attempts=3, immediate=2)
    busy = mmate.TransientError("busy")
    # 1. classification: permanent skips every retry layer
    assert decide(_failure(mmate.PermanentError("no")), queue) == DeadLetter(
        "permanent-error", "permanent"
    )
    # 2. immediate retries first, `immediate` times per attempt
    assert decide(_failure(busy, immediate=0), queue) == RetryNow()
    assert decide(_failure(busy, immediate=1), queue) == RetryNow()
    # 3. then the broker retry, with the tier of the attempt
    assert decide(_failure(busy, immediate=2), queue) == RetryLater("q.wait.100", 100, 2)
    assert decide(_failure(busy, attempt=2, immediate=2), queue) == RetryLater("q.wait.200", 200, 3)
    # 4. then the dead-letter queue
    assert decide(_failure(busy, attempt=3, immediate=2), queue) == DeadLetter(
        "retries-exhausted", "transient"
    )


def test_unknown_errors_follow_the_queue_policy() -> None:
    assert isinstance(decide(_failure(ValueError("?")), _queue()), RetryLater)
    assert decide(_failure(ValueError("?")), _queue(unknown="permanent")) == DeadLetter(
        "permanent-error", "permanent"
    )


def test_without_a_retry_policy_or_wait_queues_a_transient_failure_is_dead_lettered() -> None:
    busy = mmate.TransientError("busy")
    assert decide(_failure(busy), QueueDef("q", dead_letter_queue="q.dlq")) == DeadLetter(
        "retries-exhausted", "transient"
    )
    assert decide(_failure(busy), _queue(waits={})) == DeadLetter("retries-exhausted", "transient")
    assert decide(_failure(busy), None) == DeadLetter("retries-exhausted", "transient")


def test_retry_after_skips_immediate_retries_and_picks_a_tier() -> None:
    queue = _queue(immediate=5)
    assert decide(_failure(mmate.RetryAfter(0.15)), queue) == RetryLater("q.wait.200", 200, 2)
    assert decide(_failure(mmate.RetryAfter(0.05)), queue) == RetryLater("q.wait.100", 100, 2)
    assert decide(_failure(mmate.RetryAfter(30)), queue) == RetryLater("q.wait.200", 200, 2)
    assert decide(_failure(mmate.RetryAfter(30), attempt=3), queue) == DeadLetter(
        "retries-exhausted", "transient"
    )
    # with the delay cascade, a longer wait goes there (rounded up to whole seconds)
    assert decide(_failure(mmate.RetryAfter(29.5)), queue, cascade=True) == RetryLater(
        "", 30000, 2, cascade=True
    )
    assert decide(_failure(mmate.RetryAfter(0.15)), queue, cascade=True) == RetryLater(
        "q.wait.200", 200, 2
    )


def _death(queue: str, reason: str, count: int) -> dict[str, Any]:
    return {"queue": queue, "reason": reason, "count": count, "exchange": ""}


def test_attempt_comes_from_our_header_or_the_broker_s_rejections() -> None:
    assert attempt_of(None, "q") == 1  # e.g. a Go message: none of our headers
    assert attempt_of({"x-message-type": "X"}, "q") == 1
    assert attempt_of({"x-mmate-attempt": 3}, "q") == 3
    assert attempt_of({"x-mmate-attempt": "2"}, "q") == 2
    assert attempt_of({"x-mmate-attempt": "junk"}, "q") == 1
    # waiting in a wait queue (expired) is not an attempt; rejections from this queue are
    waited = {"x-mmate-attempt": 2, "x-death": [_death("q.wait.100", "expired", 1)]}
    assert attempt_of(waited, "q") == 2
    rejected = {"x-death": [_death("q", "rejected", 2), _death("other", "rejected", 5)]}
    assert attempt_of(rejected, "q") == 3
    assert attempt_of({"x-death": [_death("q", "rejected", 1)], "x-mmate-attempt": 4}, "q") == 4
