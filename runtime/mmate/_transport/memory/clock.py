"""The in-memory broker's time: real time plus what a test advanced it by, and the timers that
run on it (message expiry, queue expiry, retries of held dead letters, ``Clock.sleep``).

Timers fire on the event loop in real time (one ``loop.call_later`` for the earliest) and when a
test moves the clock with ``advance``: then the clock steps from timer to timer in due order, so
a message that expires at t+1 s and is dead-lettered into a queue with a 2 s TTL expires there at
t+3 s, not at "the end of the advance + 2 s". Between steps, ``settle`` (given by the broker) lets
the consumers react at that moment of virtual time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

TimerCallback = Callable[[], None]

log = logging.getLogger("mmate.memory")


class Timer:
    """A callback due at a clock time; ``cancel`` it if it is no longer wanted."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: TimerCallback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Real time by default; ``advance`` moves it forward (never back).

    ``time()`` is seconds since the epoch (a float), ``now()`` the same as an aware UTC
    datetime. Implements the seam's ``Clock`` protocol.
    """

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self._offset = 0.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._advancing: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # -- reading ------------------------------------------------------------------------------

    def time(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    @property
    def advanced_by(self) -> float:
        """How many seconds tests have moved this clock ahead of real time."""
        return self._offset

    def next_due(self) -> float | None:
        """The clock time of the earliest pending timer (None when there is none)."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    # -- timers -------------------------------------------------------------------------------

    def call_at(self, when: float, callback: TimerCallback) -> Timer:
        """Run ``callback`` once the clock reaches ``when`` (clock time, seconds)."""
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._order), timer))
        self._arm()
        return timer

    def call_later(self, delay: float, callback: TimerCallback) -> Timer:
        return self.call_at(self.time() + max(delay, 0.0), callback)

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock have passed (in real time, or sooner when a test
        advances the clock)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not future.done() and not loop.is_closed():
                future.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    def fire_due(self) -> int:
        """Run every timer that is due now; returns how many ran."""
        ran = 0
        now = self.time()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            ran += 1
            try:
                timer.callback()
            except Exception:
                log.exception("a memory broker timer failed")
        self._arm()
        return ran

    # -- advancing ----------------------------------------------------------------------------

    async def advance(self, seconds: float, settle: Callable[[], Awaitable[None]]) -> None:
        """Move the clock ``seconds`` forward, stopping at every timer due on the way: the clock
        reads that timer's time while it runs, then ``settle`` lets the system react."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"advance needs a finite number of seconds >= 0, got {seconds!r}")
        async with self._lock():
            target = self.time() + seconds
            await settle()  # what is under way now happens now
            while True:
                due = self.next_due()
                if due is None or due > target:
                    break
                self._move_to(due)
                self.fire_due()
                await settle()
            self._move_to(target)
            self.fire_due()
            await settle()

    def _move_to(self, when: float) -> None:
        gap = when - self.time()
        if gap > 0:
            self._offset += gap

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._advancing is None or self._lock_loop is not loop:
            self._advancing = asyncio.Lock()
            self._lock_loop = loop
        return self._advancing

    # -- the real-time alarm ------------------------------------------------------------------

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)

    def _arm(self) -> None:
        """Keep one loop alarm at the earliest timer (re-armed on a new event loop)."""
        self._drop_cancelled()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: armed by the next call made from one
        if loop is not self._loop:
            self._loop = loop
            self._handle = None
            self._handle_when = math.inf
        if not self._heap:
            return
        when = self._heap[0][0]
        if self._handle is not None and self._handle_when <= when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle_when = when
        self._handle = loop.call_later(max(when - self.time(), 0.0), self._alarm)

    def _alarm(self) -> None:
        self._handle = None
        self._handle_when = math.inf
        self.fire_due()
