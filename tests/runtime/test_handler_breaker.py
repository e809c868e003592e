"""The circuit breaker: the state machine alone (``CircuitBreaker``, with a fake clock), and per
queue on the broker: after the threshold of transient failures the queue is not consumed (no
consumer on it, messages wait there instead of burning retries), a half-open trial resumes it."""

from __future__ import annotations

import asyncio
import logging

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, message_count, wait_until
from failure_app import AppFactory, failure_app
from mmate import BreakerState, CircuitBreaker, HandlerBreakerOptions, MessageContext
from sample_app import CreateOrderCommand

__all__ = ["failure_app"]

OPEN, HALF, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_state_machine_closed_open_half_open() -> None:
    clock = Clock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        "b",
        failure_threshold=3,
        cool_down=10,
        clock=clock,
        on_change=lambda b, o, n: changes.append((o, n)),
    )
    breaker.failure()
    breaker.failure()
    breaker.success()  # resets the consecutive count
    breaker.failure()
    breaker.failure()
    assert breaker.state is CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state is OPEN and not breaker.allow()
    clock.now += 9.9
    assert not breaker.allow() and breaker.cool_down_left() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.allow()  # the one trial
    assert breaker.state is HALF and not breaker.allow()
    breaker.failure()  # trial failed: open again, new cool-down
    assert breaker.state is OPEN and not breaker.allow()
    clock.now += 10
    assert breaker.allow()
    breaker.success()
    assert breaker.state is CLOSED and breaker.allow() and breaker.allow()
    assert changes == [(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN), (OPEN, HALF), (HALF, CLOSED)]
    assert breaker.opened == 2


def test_release_ends_a_trial_without_a_verdict_and_bad_settings_raise() -> None:
    clock = Clock()
    breaker = CircuitBreaker("b", failure_threshold=1, cool_down=0, clock=clock)
    breaker.failure()
    assert breaker.allow() and not breaker.allow()
    breaker.release()
    assert breaker.allow() and breaker.state is HALF
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("b", failure_threshold=0)
    with pytest.raises(ValueError, match="cool_down"):
        HandlerBreakerOptions(cool_down=3600)


def test_a_listener_that_raises_does_not_break_the_breaker() -> None:
    def boom(b: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("b", failure_threshold=1, on_change=boom)
    breaker.failure()
    assert breaker.state is OPEN


async def _consumers(raw: aiormq.abc.AbstractChannel, queue: str) -> tuple[int, int]:
    ok = await raw.queue_declare(queue, passive=True)
    return int(ok.consumer_count or 0), int(ok.message_count or 0)


@pytest.mark.broker
async def test_open_breaker_stops_consuming_and_a_half_open_trial_resumes(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mmate.handler_breaker")
    app = failure_app(attempts=5, tiers=(100,), prefetch=1, concurrency=1)
    dependency = {"up": False}

    def needs_dependency(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if not dependency["up"]:
            raise mmate.TransientError("inventory service down")

    changes: list[tuple[str, BreakerState, BreakerState]] = []
    options = HandlerBreakerOptions(
        failure_threshold=3, cool_down=2.0, on_change=lambda q, o, n: changes.append((q, o, n))
    )
    n = 10
    async with mmate.Client(BROKER_URL, service="fail-service", handler_breaker=options) as client:
        await client.declare(app.topology)
        handlers = app.handlers(needs_dependency)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        assert consumer.breaker is not None
        publisher = app.publisher(client)
        for i in range(n):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{i}", amount=i)
            )
        await wait_until(lambda: changes[-1:] == [(app.queue, CLOSED, OPEN)] if changes else False)
        # open: no consumer on the queue; the messages wait in it instead of burning retries
        await wait_until(lambda: consumer.paused and not consumer.consuming)
        consumers, waiting = await _consumers(raw, app.queue)
        assert consumers == 0
        assert len(handlers.calls) == 3 and consumer.retried == 3
        assert consumer.breaker.state is OPEN
        # the dependency comes back; the half-open trial succeeds and consuming resumes
        dependency["up"] = True
        await wait_until(lambda: len(handlers.handled) == n)
        assert consumer.breaker.state is CLOSED
        consumers, waiting = await _consumers(raw, app.queue)
        assert consumers == 1 and waiting == 0
        await serving.stop()
    assert [(o, new) for _, o, new in changes] == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]
    assert f"circuit breaker of queue {app.queue} opened" in caplog.text
    assert f"circuit breaker of queue {app.queue}: half-open -> closed" in caplog.text
    assert len(handlers.calls) == 3 + n  # three failures, then every message once
    assert sorted(set(handlers.handled)) == sorted(handlers.handled)
    assert consumer.dead_lettered == 0


@pytest.mark.broker
async def test_a_failed_trial_opens_the_breaker_again(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=10, tiers=(100,), prefetch=1, concurrency=1)
    dependency = {"up": False}
    trials: list[int] = []

    def needs_dependency(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if not dependency["up"]:
            raise mmate.TransientError("still down")

    changes: list[BreakerState] = []
    options = HandlerBreakerOptions(
        failure_threshold=2, cool_down=0.3, on_change=lambda q, o, new: changes.append(new)
    )
    async with mmate.Client(BROKER_URL, service="fail-service", handler_breaker=options) as client:
        await client.declare(app.topology)
        handlers = app.handlers(needs_dependency)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        assert consumer.breaker is not None
        publisher = app.publisher(client)
        for i in range(3):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{i}", amount=i)
            )
        await wait_until(lambda: changes[:4] == [OPEN, HALF, OPEN, HALF])
        trials.append(len(handlers.calls))
        dependency["up"] = True
        await wait_until(lambda: len(set(handlers.handled)) == 3)
        await serving.stop()
    assert consumer.breaker.breaker.opened >= 2
    assert trials[0] >= 3  # two to open it, one failed trial
    assert len(handlers.handled) == 3 and consumer.dead_lettered == 0


@pytest.mark.broker
async def test_permanent_failures_do_not_open_the_breaker(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=2, tiers=(100,), prefetch=5)

    def invalid(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise mmate.PermanentError("invalid")

    options = HandlerBreakerOptions(failure_threshold=2, cool_down=30)
    async with mmate.Client(BROKER_URL, service="fail-service", handler_breaker=options) as client:
        await client.declare(app.topology)
        serving = await client.serve(app.handlers(invalid))
        consumer = serving.consumers[0]
        publisher = app.publisher(client)
        for i in range(6):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{i}", amount=i)
            )
        await wait_until(lambda: consumer.dead_lettered == 6)
        assert consumer.breaker is not None and consumer.breaker.state is CLOSED
        await serving.stop()


@pytest.mark.broker
async def test_stopping_while_open_requeues_the_held_message_and_loses_none(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=3, tiers=(100,), prefetch=1, concurrency=1)

    def down(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise mmate.TransientError("down")

    options = HandlerBreakerOptions(failure_threshold=1, cool_down=60)
    async with mmate.Client(BROKER_URL, service="fail-service", handler_breaker=options) as client:
        await client.declare(app.topology)
        handlers = app.handlers(down)
        serving = await client.serve(handlers)
        consumer = serving.consumers[0]
        publisher = app.publisher(client)
        for i in range(3):
            await publisher.send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{i}", amount=i)
            )
        await wait_until(lambda: consumer.breaker is not None and consumer.breaker.state is OPEN)
        await serving.stop(timeout=5)
    assert len(handlers.calls) == 1 and consumer.retried == 1
    # the failed one came back from its wait queue, the held one was requeued, one never left
    waiting = 0
    for _ in range(200):
        waiting = await message_count(raw, app.queue)
        if waiting == 3:
            break
        await asyncio.sleep(0.05)
    assert waiting == 3
    assert await message_count(raw, app.dlq) == 0


async def test_a_trial_that_ends_without_a_verdict_lets_the_next_message_try() -> None:
    from mmate._failures.handler_breaker import HandlerBreaker

    async def nothing() -> None:
        return None

    gate = HandlerBreaker(
        "q", HandlerBreakerOptions(failure_threshold=1), pause=nothing, resume=nothing
    )
    gate.breaker.half_open()
    order: list[str] = []

    async def message(name: str, verdict: str | None) -> None:
        assert await gate.admit(name)
        order.append(name)
        await asyncio.sleep(0)
        if verdict == "success":
            gate.record("success", name)
        gate.done(name)

    first = asyncio.create_task(message("first", None))  # e.g. its channel died meanwhile
    second = asyncio.create_task(message("second", "success"))
    third = asyncio.create_task(message("third", None))
    await asyncio.wait_for(asyncio.gather(first, second, third), 5)
    assert order[0] == "first" and set(order) == {"first", "second", "third"}
    assert gate.state is CLOSED
    await gate.stop()


async def test_a_stopped_breaker_admits_when_closed_and_releases_what_it_holds() -> None:
    """Stopping (a consumer's drain): a closed breaker keeps admitting, so the drain handles
    the buffered messages as it does without a breaker; a message waiting for an open breaker
    is released as not admitted (the consumer requeues it)."""
    from mmate._failures.handler_breaker import HandlerBreaker

    async def nothing() -> None:
        return None

    gate = HandlerBreaker(
        "q", HandlerBreakerOptions(failure_threshold=1, cool_down=60), pause=nothing, resume=nothing
    )
    await gate.stop()
    assert await asyncio.wait_for(gate.admit("buffered"), 5)
    gate.done("buffered")

    held = HandlerBreaker(
        "q", HandlerBreakerOptions(failure_threshold=1, cool_down=60), pause=nothing, resume=nothing
    )
    held.record("failure", "first")
    assert held.state is OPEN
    waiting = asyncio.create_task(held.admit("held"))
    await asyncio.sleep(0)
    assert not waiting.done()
    await held.stop()
    assert await asyncio.wait_for(waiting, 5) is False
