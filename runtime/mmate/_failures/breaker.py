"""``CircuitBreaker``: the closed / open / half-open state machine, with no I/O of its own.

Shared by the per-queue handler breaker (``handler_breaker``) and the publish breaker. Contract:

* **closed**: everything is allowed. ``failure()`` counts consecutive failures, ``success()``
  resets the count; at ``failure_threshold`` consecutive failures the breaker opens.
* **open**: ``allow()`` is false until ``cool_down`` seconds have passed since it opened; the first
  ``allow()`` after that moves it to half-open and lets exactly one trial through.
* **half-open**: one trial at a time. ``half_open_successes`` successful trials in a row (1 by
  default) close the breaker, a ``failure()`` opens it again (a new cool-down). ``release()`` ends
  a trial without a verdict (the next ``allow()`` may start another).
* ``on_change(breaker, old, new)`` is called synchronously on every state change, after the state
  changed; an exception in it is logged and swallowed.
* ``half_open()`` forces the half-open state (for callers that run their own cool-down timer);
  ``reset()`` forces closed.

Not thread-safe; meant for one asyncio event loop (no awaits inside, so no task can interleave).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

log = logging.getLogger("mmate.breaker")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


StateListener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]


class CircuitBreaker:
    """A circuit breaker named ``name`` (used in log lines). See the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cool_down: float = 30.0,
        on_change: StateListener | None = None,
        clock: Callable[[], float] = time.monotonic,
        half_open_successes: int = 1,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"breaker {name!r}: failure_threshold must be at least 1")
        if half_open_successes < 1:
            raise ValueError(f"breaker {name!r}: half_open_successes must be at least 1")
        if cool_down < 0:
            raise ValueError(f"breaker {name!r}: cool_down must not be negative")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self.half_open_successes = half_open_successes
        self._trial_successes = 0
        self._on_change = on_change
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False
        self.opened = 0
        """How many times the breaker opened (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"<mmate.CircuitBreaker {self.name} {self._state.value} failures={self._failures}>"

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def cool_down_left(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cool_down - self._clock())

    def allow(self) -> bool:
        """May the caller go ahead? In half-open state, true for one trial at a time."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self.cool_down_left() > 0:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self._trial:
            return False
        self._trial = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._trial = False
        if self._state is BreakerState.HALF_OPEN:
            self._trial_successes += 1
            if self._trial_successes < self.half_open_successes:
                return
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        self._trial = False
        if self._state is BreakerState.HALF_OPEN:
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def release(self) -> None:
        """End a half-open trial without a verdict."""
        self._trial = False

    def half_open(self) -> None:
        if self._state is not BreakerState.HALF_OPEN:
            self._trial = False
            self._set(BreakerState.HALF_OPEN)

    def reset(self) -> None:
        self._failures = 0
        self._trial = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self.opened += 1
        self._set(BreakerState.OPEN)

    def _set(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._trial_successes = 0
        if self._on_change is not None:
            try:
                self._on_change(self, old, new)
            except Exception:
                log.exception("on_change of breaker %s failed", self.name)
