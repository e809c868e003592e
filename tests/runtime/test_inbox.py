"""The consumer's buffer (``mmate._consuming.inbox``): first in, first out, handed straight to a
waiting worker, never losing an item to a worker cancelled while it was handed over, and
``join`` waiting for every item to be finished with (no broker needed)."""

from __future__ import annotations

import asyncio

import pytest
from mmate._consuming.inbox import Inbox


async def test_items_come_out_in_order_and_join_waits_for_task_done() -> None:
    inbox: Inbox[int] = Inbox()
    for i in range(5):
        inbox.put_nowait(i)
    assert inbox.qsize() == 5 and not inbox.empty()
    got = [await inbox.get() for _ in range(5)]
    assert got == [0, 1, 2, 3, 4] and inbox.empty()
    join = asyncio.create_task(inbox.join())
    for _ in range(4):
        inbox.task_done()
    await asyncio.sleep(0)
    assert not join.done()
    inbox.task_done()
    await asyncio.wait_for(join, 1)
    await asyncio.wait_for(inbox.join(), 1)  # nothing unfinished: returns at once
    with pytest.raises(ValueError):
        inbox.task_done()


async def test_a_waiting_worker_is_handed_the_item() -> None:
    inbox: Inbox[str] = Inbox()
    workers = [asyncio.create_task(inbox.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in ("a", "b", "c"):
        inbox.put_nowait(item)
    assert inbox.empty()  # all three went straight to the waiting workers
    assert sorted(await asyncio.gather(*workers)) == ["a", "b", "c"]


async def test_a_worker_cancelled_while_handed_an_item_passes_it_on() -> None:
    inbox: Inbox[str] = Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")  # handed to the first waiter...
    first.cancel()  # ...which is cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == "x"

    lonely = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("y")
    inbox.put_nowait("z")
    lonely.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lonely
    assert [await inbox.get(), await inbox.get()] == ["y", "z"]  # back at the front, in order


async def test_a_cancelled_waiter_is_skipped() -> None:
    inbox: Inbox[int] = Inbox()
    gone = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    inbox.put_nowait(1)
    assert inbox.qsize() == 1 and await inbox.get() == 1


async def test_a_join_that_times_out_can_be_waited_for_again() -> None:
    inbox: Inbox[int] = Inbox()
    inbox.put_nowait(1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(inbox.join(), 0.01)
    await inbox.get()
    waiting = asyncio.create_task(inbox.join())
    await asyncio.sleep(0)
    inbox.task_done()
    await asyncio.wait_for(waiting, 1)
