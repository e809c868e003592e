"""``Inbox``: the deliveries a consumer holds, waiting for one of its workers.

What ``asyncio.Queue`` offered the consumer (``put_nowait``, ``get``, ``task_done``, ``join``,
``empty``, ``qsize``) and nothing else: no size bound (the prefetch bounds what the broker sends),
no putters. A delivery that arrives while a worker waits is handed to that worker's future
directly, so the worker does not look at the buffer again (``asyncio.Queue`` wakes it to look,
and costs about a microsecond more per message; bench/RESULTS.md, #15).

A worker cancelled after a delivery was handed to it but before it ran puts the delivery back at
the front, for the next worker: nothing handed over is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A FIFO of items for a pool of worker tasks on one event loop."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()
        self._unfinished = 0
        self._all_done: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        """Hand ``item`` to a waiting worker, or keep it for the next one that asks."""
        self._unfinished += 1
        self._give(item)

    async def get(self) -> T:
        """The oldest item; waits for one when there is none."""
        if self._items:
            return self._items.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give(waiter.result(), front=True)  # handed over, not taken: give it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)  # not kept until the next put
            raise

    def task_done(self) -> None:
        """One item that ``get`` returned is finished with."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called more times than there were items")
        self._unfinished -= 1
        if self._unfinished == 0 and self._all_done is not None:
            if not self._all_done.done():
                self._all_done.set_result(None)
            self._all_done = None

    async def join(self) -> None:
        """Wait until every item put was got and finished with."""
        if self._unfinished == 0:
            return
        if self._all_done is None:
            self._all_done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._all_done)

    def empty(self) -> bool:
        """No item waits for a worker."""
        return not self._items

    def qsize(self) -> int:
        """How many items wait for a worker."""
        return len(self._items)

    def _give(self, item: T, *, front: bool = False) -> None:
        """To the first worker still waiting, else into the buffer (at its ``front``: an item
        given back keeps its turn)."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if front:
            self._items.appendleft(item)
        else:
            self._items.append(item)
