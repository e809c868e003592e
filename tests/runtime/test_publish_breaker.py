"""The circuit breaker around publishing, on the broker: a queue that rejects every publish
(``x-max-length: 0``, ``x-overflow: reject-publish``) nacks them, the breaker opens, publishes fail
fast without being sent, and a trial after the cool-down closes it once the queue is fixed. Every
outcome is counted, and the messages in the queue are counted on the broker."""

from __future__ import annotations

import asyncio
import logging
import uuid

import aiormq
import aiormq.abc
import aiormq.exceptions
import mmate
import pytest
from conftest import BROKER_URL, message_count
from mmate import BreakerState, PublishBreakerOptions
from mmate._publishing.breaker import counts_as_failure
from sample_app import App, OrderCreatedEvent

pytestmark = pytest.mark.broker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
Change = tuple[BreakerState, BreakerState]

FULL = {"x-max-length": 0, "x-overflow": "reject-publish"}


def event(n: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(order_id=f"O-{n}", customer_id="C-1", amount=n)


async def declare(raw: aiormq.abc.AbstractChannel, queue: str, *, full: bool) -> None:
    await raw.queue_declare(queue, durable=True, arguments=FULL if full else None)


async def fix(raw: aiormq.abc.AbstractChannel, queue: str) -> None:
    """Delete the rejecting queue and declare it again without a length limit."""
    await raw.queue_delete(queue)
    await declare(raw, queue, full=False)


async def publish(transport: mmate.PublishTransport, app: App, queue: str, n: int) -> None:
    await app.publisher(transport).publish_order_created_event(
        event(n), exchange="", routing_key=queue
    )


async def until_half_open_is_due(breaker: mmate.CircuitBreaker) -> None:
    """Wait out the cool-down (a wait, not an assertion about time)."""
    while breaker.cool_down_left() > 0:
        await asyncio.sleep(breaker.cool_down_left() + 0.01)


@pytest.fixture
def queue(extra_entities: tuple[list[str], list[str]]) -> str:
    name = f"t.{uuid.uuid4().hex[:10]}.breaker"
    extra_entities[0].append(name)
    return name


async def test_nacks_open_the_breaker_then_a_trial_closes_it_once_the_queue_is_fixed(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mmate.publish_breaker")
    changes: list[Change] = []
    options = PublishBreakerOptions(
        failure_threshold=3, cool_down=2.0, on_change=lambda old, new: changes.append((old, new))
    )
    await declare(raw, queue, full=True)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None and breaker.state is CLOSED
        nacked = 0
        for n in range(3):
            with pytest.raises(mmate.NackError):
                await publish(client, app, queue, n)
            nacked += 1
        assert nacked == 3 and breaker.state is OPEN and changes == [(CLOSED, OPEN)]

        # Open: the queue is fixed now, but nothing is sent until the cool-down is over.
        await fix(raw, queue)
        refused = 0
        for n in range(10):
            with pytest.raises(mmate.CircuitOpenError) as info:
                await publish(client, app, queue, 100 + n)
            refused += 1
        assert refused == 10
        assert info.value.state == "open" and 0 < info.value.retry_in <= 2.0
        assert info.value.routing_key == queue
        assert "NackError" in str(info.value) and "trial publish" in str(info.value)
        assert await message_count(raw, queue) == 0  # none of the 10 was sent

        await until_half_open_is_due(breaker)
        await publish(client, app, queue, 200)  # the trial
        assert breaker.state is CLOSED
        await asyncio.gather(*(publish(client, app, queue, 300 + n) for n in range(20)))
        assert await message_count(raw, queue) == 21
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    opened = [r for r in caplog.records if "opened" in r.getMessage()]
    assert len(opened) == 1 and opened[0].levelno == logging.WARNING
    assert "NackError" in opened[0].getMessage()


async def test_a_failed_trial_opens_the_breaker_again(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str
) -> None:
    changes: list[Change] = []
    options = PublishBreakerOptions(
        failure_threshold=2, cool_down=0.3, on_change=lambda old, new: changes.append((old, new))
    )
    await declare(raw, queue, full=True)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None
        for n in range(2):
            with pytest.raises(mmate.NackError):
                await publish(client, app, queue, n)
        await until_half_open_is_due(breaker)
        with pytest.raises(mmate.NackError):
            await publish(client, app, queue, 2)  # the trial, still nacked
        assert breaker.state is OPEN
        with pytest.raises(mmate.CircuitOpenError):
            await publish(client, app, queue, 3)
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    assert breaker.opened == 2


async def test_half_open_lets_exactly_one_trial_through(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str
) -> None:
    options = PublishBreakerOptions(failure_threshold=1, cool_down=0.3)
    await declare(raw, queue, full=True)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None
        with pytest.raises(mmate.NackError):
            await publish(client, app, queue, 0)
        await fix(raw, queue)
        await until_half_open_is_due(breaker)
        results = await asyncio.gather(
            *(publish(client, app, queue, n) for n in range(8)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, mmate.CircuitOpenError)]
        assert results[0] is None  # the first one started is the trial
        assert len(refused) == 7 and all(r.state == "half-open" for r in refused)
        assert breaker.state is CLOSED
        assert await message_count(raw, queue) == 1


async def test_unroutable_and_missing_exchange_do_not_count(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str
) -> None:
    options = PublishBreakerOptions(failure_threshold=2, cool_down=30)
    await declare(raw, queue, full=False)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None
        for n in range(5):
            with pytest.raises(mmate.UnroutableError):
                await publish(client, app, f"{queue}.nobody", n)
        for n in range(3):
            with pytest.raises(mmate.PublishError) as info:
                await app.publisher(client).publish_order_created_event(
                    event(n), exchange=f"t.{uuid.uuid4().hex}.missing"
                )
            assert not isinstance(info.value, mmate.CircuitOpenError)
        assert breaker.state is CLOSED and breaker.consecutive_failures == 0
        await publish(client, app, queue, 9)
        assert await message_count(raw, queue) == 1


async def test_a_batch_is_admitted_as_a_whole_and_each_message_counts(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str
) -> None:
    options = PublishBreakerOptions(failure_threshold=3, cool_down=30)
    await declare(raw, queue, full=True)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None
        with pytest.raises(mmate.BatchPublishError) as info:
            async with client.batch() as batch:
                for n in range(4):
                    await publish(batch, app, queue, n)
        assert len(info.value.failures) == 4
        assert all(isinstance(f.error, mmate.NackError) for f in info.value.failures)
        assert breaker.state is OPEN
        await fix(raw, queue)
        with pytest.raises(mmate.CircuitOpenError, match="a batch of 5 messages"):
            async with client.batch() as batch:
                for n in range(5):
                    await publish(batch, app, queue, 10 + n)
        assert await message_count(raw, queue) == 0


async def test_no_breaker_by_default(app: App, raw: aiormq.abc.AbstractChannel, queue: str) -> None:
    await declare(raw, queue, full=True)
    async with mmate.Client(BROKER_URL, service="breaker-test", publish_timeout=1.0) as client:
        assert client.publish_breaker is None
        # twice the default breaker's threshold of consecutive failures, and never BreakerOpen
        for n in range(2 * PublishBreakerOptions().failure_threshold):
            with pytest.raises(mmate.NackError):
                await publish(client, app, queue, n)


def test_which_failures_count() -> None:
    def caused(error: mmate.PublishError, cause: BaseException) -> mmate.PublishError:
        error.__cause__ = cause
        return error

    assert counts_as_failure(mmate.NackError("nacked")) is True
    assert counts_as_failure(mmate.PublishTimeout("slow")) is True
    assert counts_as_failure(caused(mmate.PublishError("gone"), ConnectionResetError())) is True
    assert counts_as_failure(mmate.BrokerConnectionError("down")) is True
    assert counts_as_failure(mmate.UnroutableError("nobody")) is None
    not_found = mmate.EntityNotFound("NOT_FOUND - no exchange")
    assert counts_as_failure(caused(mmate.PublishError("404"), not_found)) is None
    assert counts_as_failure(asyncio.CancelledError()) is None
    assert counts_as_failure(ValueError("not from the publisher")) is None


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        PublishBreakerOptions(failure_threshold=0)
    with pytest.raises(ValueError, match="cool_down"):
        PublishBreakerOptions(cool_down=0)


async def test_half_open_needs_the_configured_number_of_confirmed_trials(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str
) -> None:
    changes: list[Change] = []
    options = PublishBreakerOptions(
        failure_threshold=1,
        cool_down=0.3,
        half_open_successes=3,
        on_change=lambda old, new: changes.append((old, new)),
    )
    await declare(raw, queue, full=True)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None
        with pytest.raises(mmate.NackError):
            await publish(client, app, queue, 0)
        await fix(raw, queue)
        await until_half_open_is_due(breaker)
        states = []
        for n in range(3):
            await publish(client, app, queue, n)  # one trial at a time, each confirmed
            states.append(breaker.state)
        assert states == [HALF_OPEN, HALF_OPEN, CLOSED]
        assert await message_count(raw, queue) == 3
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


async def test_a_late_confirm_does_not_close_a_breaker_that_opened_meanwhile(
    app: App, raw: aiormq.abc.AbstractChannel, queue: str
) -> None:
    options = PublishBreakerOptions(failure_threshold=1, cool_down=30)
    await declare(raw, queue, full=False)
    async with mmate.Client(
        BROKER_URL, service="breaker-test", publish_timeout=1.0, publish_breaker=options
    ) as client:
        breaker = client.publish_breaker
        assert breaker is not None
        late = asyncio.create_task(publish(client, app, queue, 1))
        await asyncio.sleep(0)  # admitted and on the wire; its confirm cannot be here yet
        assert not late.done()
        breaker.failure()  # another publish failed meanwhile: open
        await late  # confirmed, after the breaker opened
        assert breaker.state is OPEN
        assert await message_count(raw, queue) == 1


def test_the_state_machine_counts_trials_and_resets_them_on_reopening() -> None:
    now = [0.0]
    breaker = mmate.CircuitBreaker(
        "b", failure_threshold=2, cool_down=10, half_open_successes=2, clock=lambda: now[0]
    )
    breaker.failure()
    breaker.failure()
    assert breaker.state is OPEN and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state is HALF_OPEN
    assert not breaker.allow()  # one trial at a time
    breaker.success()
    assert breaker.state is HALF_OPEN and breaker.allow()
    breaker.failure()  # the second trial fails: open again, the first success is forgotten
    assert breaker.state is OPEN
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is HALF_OPEN
    assert breaker.allow()
    breaker.success()
    assert breaker.state is CLOSED and breaker.allow()
    with pytest.raises(ValueError, match="half_open_successes"):
        mmate.CircuitBreaker("b", half_open_successes=0)
    with pytest.raises(ValueError, match="half_open_successes"):
        PublishBreakerOptions(half_open_successes=0)
