"""The handler deadline: one watchdog per consumer (``_consuming.deadlines``) fails a handler that
runs past ``handler_timeout`` with ``TimeoutError`` (transient: retried through the wait queues),
and a cancellation from elsewhere (``stop``) stays a cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import aiormq.abc
import mmate
import pytest
from conftest import BROKER_URL, message_count, wait_until
from failure_app import AppFactory, Call, RecordingHandlers, failure_app
from mmate import MessageContext
from mmate._consuming.deadlines import Slot, Watchdog
from sample_app import CreateOrderCommand

__all__ = ["failure_app"]  # a fixture, imported for pytest


async def _guarded(slot: Slot, work: asyncio.Future[None], timeout: float) -> str:
    """What a worker does around a handler call (``QueueConsumer._call``)."""
    slot.deadline = asyncio.get_running_loop().time() + timeout
    try:
        await work
    except BaseException as exc:
        slot.end(exc)
        raise
    slot.end(None)
    return "returned"


async def test_a_handler_past_its_deadline_gets_timeout_error_and_the_next_one_its_own() -> None:
    watchdog = Watchdog(0.05, "test-deadlines")
    watchdog.start()
    results: list[str] = []

    async def worker(hang: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        slot = watchdog.slot(task)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not hang:
            asyncio.get_running_loop().call_later(0.01, future.set_result, None)
        try:
            results.append(await _guarded(slot, future, watchdog.timeout))
        except TimeoutError:
            results.append("timed out")
        # The same slot, a second message: a fresh deadline, nothing left of the first.
        quick: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, quick.set_result, None)
        results.append(await _guarded(slot, quick, watchdog.timeout))
        assert task.cancelling() == 0

    await asyncio.wait_for(asyncio.gather(worker(True), worker(False)), 5)
    await watchdog.stop()
    assert sorted(results) == ["returned", "returned", "returned", "timed out"]


async def test_a_stop_that_cancels_a_worker_past_its_deadline_stays_a_cancellation() -> None:
    watchdog = Watchdog(0.05, "test-deadlines")
    watchdog.start()
    fired = asyncio.Event()

    async def worker() -> None:
        task = asyncio.current_task()
        assert task is not None
        slot = watchdog.slot(task)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.deadline = asyncio.get_running_loop().time() + 0.05
        try:
            await future  # hangs until the watchdog cancels it
        except asyncio.CancelledError as exc:
            assert slot.fired
            fired.set()
            task.cancel()  # stop() cancels the worker too, before the handler unwound
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            slot.end(exc)  # must not turn this into TimeoutError
            raise

    task = asyncio.create_task(worker())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert fired.is_set()
    await watchdog.stop()


@pytest.mark.broker
async def test_a_hanging_handler_times_out_and_its_message_is_retried_then_handled(
    failure_app: AppFactory, raw: aiormq.abc.AbstractChannel
) -> None:
    app = failure_app(attempts=3, tiers=(100, 200))

    class Hanging(RecordingHandlers):
        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: MessageContext
        ) -> None:
            if ctx.attempt == 1:
                self.calls.append(Call("", ctx.attempt, dict(ctx.headers), ctx.message_id))
                await asyncio.sleep(60)  # far past the deadline
            await super().handle_create_order_command(message, ctx)

    handlers = type("OrderHandlers", (Hanging,), {"TOPOLOGY": app.topology})(None)
    async with mmate.Client(BROKER_URL, service="fail-service") as client:
        await client.declare(app.topology)
        serving = await client.serve(handlers, handler_timeout=0.3)
        for n in range(3):
            await app.publisher(client).send_create_order_command(
                CreateOrderCommand(customer_id=f"c-{n}", amount=1)
            )
        await wait_until(lambda: len(handlers.handled) == 3, timeout=20)
        await serving.stop()
        consumer = serving.consumers[0]
        assert consumer.retried == 3 and consumer.handled == 3 and consumer.dead_lettered == 0
        retried = [c for c in handlers.calls if c.attempt == 2]
        assert len(retried) == 3
        assert all("TimeoutError" in str(c.headers["x-mmate-last-error"]) for c in retried)
    for q in app.queues:
        assert await message_count(raw, q) == 0, q
