"""Retry with backoff on the broker: transient failures go through the wait queues (fixed TTL,
dead-lettering back) and come back as the next attempt; the last attempt goes to the dead-letter
queue; immediate retries stay in-process; ``RetryAfter`` picks its tier. Every test counts handler
calls and messages on the real broker."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import mmate
import pytest
from conftest import message_count, wait_until
from delay_support import prefix_fixture
from failure_app import AppFactory, FailureApp, drain, failure_app
from mmate import MessageContext, RetryPolicy
from mmate._failures.retry import backoff_tier, tier_at_least, tier_at_most
from mmate._transport.base import Channel
from sample_app import CreateOrderCommand

__all__ = ["failure_app", "prefix_fixture"]  # fixtures, imported for pytest


def _expired_from(headers: dict[str, Any]) -> list[str]:
    """Wait queues the broker says the message expired from (its own ``x-death`` record)."""
    deaths = headers.get("x-death") or []
    return sorted(str(d["queue"]) for d in deaths if str(d["reason"]) == "expired")


async def _empty(probe: Channel, app: FailureApp) -> None:
    for q in [app.queue, *app.wait_queues.values()]:
        assert await message_count(probe, q) == 0, q


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_transient_twice_then_success_is_called_three_times_through_the_wait_queues(
    url: str, failure_app: AppFactory, probe: Channel, queue_type: str
) -> None:
    app = failure_app(attempts=4, tiers=(100, 200, 400), queue_type=queue_type)

    def flaky(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if n <= 2:
            raise mmate.TransientError(f"database busy (call {n})")

    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(flaky)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
        await wait_until(lambda: len(handlers.handled) == 1)
        await serving.stop()
        consumer = serving.consumers[0]
        assert [c.attempt for c in handlers.calls] == [1, 2, 3]
        assert len(handlers.handled) == 1 and consumer.handled == 1
        assert consumer.retried == 2 and consumer.dead_lettered == 0 and consumer.rejected == 0
        # The broker's own record: the message waited in the 100 ms, then the 200 ms wait queue.
        first, second, third = (c.headers for c in handlers.calls)
        assert "x-mmate-attempt" not in first
        assert _expired_from(second) == [app.wait_queues[100]]
        assert app.wait_queues[200] in _expired_from(third)  # its last hop, stamped by the broker
        assert third["x-mmate-attempt"] == 3 and third["x-mmate-retry-delay-ms"] == 200
        assert "database busy (call 2)" in third["x-mmate-last-error"]
        assert third["x-mmate-original-exchange"] == app.exchange
        assert third["x-mmate-original-routing-key"] == "cmd.fail.CreateOrderCommand"
        assert third["x-mmate-first-failure"] <= third["x-mmate-last-failure"]
        await _empty(probe, app)
        assert await message_count(probe, app.dlq) == 0


async def test_after_the_last_attempt_the_message_is_dead_lettered_once(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=3, tiers=(100, 200))

    def down(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise ConnectionError(f"payment service unreachable ({n})")

    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(down)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c-1", amount=1)
        )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
        await serving.stop()
        assert [c.attempt for c in handlers.calls] == [1, 2, 3]
        assert serving.consumers[0].retried == 2
        dead = await drain(probe, app.dlq)
        assert len(dead) == 1
        headers = dead[0].properties.headers
        assert headers["x-mmate-dead-letter-reason"] == "retries-exhausted"
        assert headers["x-mmate-attempts"] == 3
        assert headers["x-mmate-error-class"] == "ConnectionError"
        assert headers["x-mmate-error-message"] == "payment service unreachable (3)"
        assert headers["x-mmate-original-queue"] == app.queue
        assert headers["x-mmate-original-exchange"] == app.exchange
        assert "x-mmate-attempt" not in headers  # a replay starts again at attempt 1
        await _empty(probe, app)


async def test_unknown_exceptions_are_transient_by_default_and_permanent_when_the_spec_says(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    def broken(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise ValueError("no idea")

    for unknown, calls, reason in (
        ("transient", 2, "retries-exhausted"),
        ("permanent", 1, "permanent-error"),
    ):
        app = failure_app(attempts=2, tiers=(100,), unknown_errors=unknown)
        async with mmate.Client(url, service="fail-service") as client:
            await client.declare(app.topology)
            handlers = app.handlers(broken)
            serving = await client.serve(handlers)
            await app.publisher(client).send_create_order_command(
                CreateOrderCommand(customer_id="c", amount=1)
            )
            consumer = serving.consumers[0]
            await wait_until(lambda c=consumer: c.dead_lettered == 1)
            await serving.stop()
            assert len(handlers.calls) == calls, unknown
            dead = await drain(probe, app.dlq)
            assert [d.properties.headers["x-mmate-dead-letter-reason"] for d in dead] == [reason]


async def test_immediate_retries_run_in_process_within_one_attempt(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=2, tiers=(100,), immediate=2)

    def flaky(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if n <= 2:
            raise mmate.TransientError("lock timeout")

    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(flaky)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: len(handlers.handled) == 1)
        await serving.stop()
        consumer = serving.consumers[0]
        assert [c.attempt for c in handlers.calls] == [1, 1, 1]
        assert consumer.immediate_retries == 2 and consumer.retried == 0
        assert consumer.failed == 0 and consumer.handled == 1
        await _empty(probe, app)


async def test_immediate_retries_then_broker_retry_then_dead_letter_in_that_order(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=2, tiers=(100,), immediate=1)

    def down(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        raise mmate.TransientError("still down")

    async with mmate.Client(url, service="fail-service") as client:
        await client.declare(app.topology)
        handlers = app.handlers(down)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: serving.consumers[0].dead_lettered == 1)
        await serving.stop()
        # two attempts, each with one immediate retry
        assert [c.attempt for c in handlers.calls] == [1, 1, 2, 2]
        assert serving.consumers[0].retried == 1
        assert len(await drain(probe, app.dlq)) == 1


async def test_retry_after_uses_the_smallest_tier_not_below_it_or_the_largest(
    url: str, failure_app: AppFactory, probe: Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mmate.failure")
    app = failure_app(attempts=3, tiers=(100, 200, 400), immediate=3)

    def limited(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if n == 1:
            raise mmate.RetryAfter(0.15, "rate limited")
        if n == 2:
            raise mmate.RetryAfter(60)

    # Without the delay relay, a RetryAfter longer than every wait queue uses the longest one.
    async with mmate.Client(url, service="fail-service", delay_relay=False) as client:
        await client.declare(app.topology)
        handlers = app.handlers(limited)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: len(handlers.handled) == 1)
        await serving.stop()
    # RetryAfter skips the immediate retries: each failure is a broker retry.
    assert [c.attempt for c in handlers.calls] == [1, 2, 3]
    assert handlers.calls[1].headers["x-mmate-retry-delay-ms"] == 200
    assert _expired_from(handlers.calls[1].headers) == [app.wait_queues[200]]
    assert handlers.calls[2].headers["x-mmate-retry-delay-ms"] == 400
    assert "asked to retry after 60 s" in caplog.text
    await _empty(probe, app)


async def test_a_retry_after_longer_than_every_wait_queue_goes_through_the_delay_cascade(
    url: str, failure_app: AppFactory, probe: Channel, prefix: str
) -> None:
    app = failure_app(attempts=3, tiers=(100, 200))

    def limited(message: CreateOrderCommand, ctx: MessageContext, n: int) -> None:
        if n == 1:
            raise mmate.RetryAfter(1.2, "rate limited for a while")

    async with mmate.Client(url, service="fail-service", delay_prefix=prefix) as client:
        await client.declare(app.topology)
        handlers = app.handlers(limited)
        serving = await client.serve(handlers)
        await app.publisher(client).send_create_order_command(
            CreateOrderCommand(customer_id="c", amount=1)
        )
        await wait_until(lambda: len(handlers.handled) == 1)
        await serving.stop()
        assert client.delays.relayed == 1  # it went through the cascade and its relay
    assert [c.attempt for c in handlers.calls] == [1, 2]
    second = handlers.calls[1].headers
    assert second["x-mmate-retry-delay-ms"] == 2000  # rounded up to whole seconds
    assert not [k for k in second if k.startswith("x-mmate-delay-")]  # the relay's own headers
    assert serving.consumers[0].retried == 1
    await _empty(probe, app)


async def test_hundreds_of_messages_with_random_failures_none_lost_none_duplicated(
    url: str, failure_app: AppFactory, probe: Channel
) -> None:
    app = failure_app(attempts=3, tiers=(100, 200), jitter=True, immediate=1, prefetch=50)
    rng = random.Random(7)
    n = 300

    def random_failures(message: CreateOrderCommand, ctx: MessageContext, call: int) -> None:
        roll = rng.random()
        if roll < 0.05:
            raise mmate.PermanentError("invalid order")
        if roll < 0.45:
            raise mmate.TransientError("flaky")

    async with mmate.Client(url, service="fail-service", handler_breaker=None) as client:
        await client.declare(app.topology)
        handlers = app.handlers(random_failures)
        serving = await client.serve(handlers)
        publisher = app.publisher(client)
        await asyncio.gather(
            *(
                publisher.send_create_order_command(
                    CreateOrderCommand(customer_id=f"c-{i}", amount=i)
                )
                for i in range(n)
            )
        )
        consumer = serving.consumers[0]
        await wait_until(lambda: consumer.handled + consumer.dead_lettered == n, timeout=60)
        await serving.stop()
        dead = await drain(probe, app.dlq)
        assert len(dead) == consumer.dead_lettered and consumer.rejected == 0
        handled_ids = handlers.handled
        dead_ids = [d.properties.message_id for d in dead]
        assert len(set(handled_ids)) == len(handled_ids)  # each handled once
        assert len(set(dead_ids)) == len(dead_ids)
        assert not set(handled_ids) & set(dead_ids)
        assert len(handled_ids) + len(dead_ids) == n  # none lost
        assert {d.properties.headers["x-mmate-dead-letter-reason"] for d in dead} <= {
            "permanent-error",
            "retries-exhausted",
        }
        assert consumer.retried > 0 and consumer.immediate_retries > 0
        assert max(c.attempt for c in handlers.calls) == 3
        await _empty(probe, app)


def test_tier_choice_is_fixed_by_the_wait_queues() -> None:
    tiers = {100, 200, 400}
    assert tier_at_least(tiers, 150) == 200 and tier_at_least(tiers, 1000) == 400
    assert tier_at_least(tiers, 0) == 100
    assert tier_at_most(tiers, 399) == 200 and tier_at_most(tiers, 50) == 100
    policy = RetryPolicy(
        attempts=4,
        backoff="exponential",
        initial_delay_ms=100,
        max_delay_ms=400,
        jitter=False,
        delays_ms=(100, 200, 400),
    )
    assert [backoff_tier(policy, tiers, a) for a in (1, 2, 3, 9)] == [100, 200, 400, 400]


def test_jitter_spreads_retries_over_the_tier_and_the_one_below() -> None:
    tiers = {100, 200, 400}
    policy = RetryPolicy(
        attempts=4,
        backoff="exponential",
        initial_delay_ms=100,
        max_delay_ms=400,
        jitter=True,
        delays_ms=(100, 200, 400),
    )
    rng = random.Random(1)
    picks = [backoff_tier(policy, tiers, 3, rng) for _ in range(1000)]
    assert set(picks) == {200, 400}
    assert 400 < picks.count(400) < 600  # about half each
    assert {backoff_tier(policy, tiers, 1, rng) for _ in range(100)} == {100}
