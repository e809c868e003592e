"""The per-queue circuit breaker around processing: stop consuming a queue whose handlers keep
failing transiently, instead of burning every message's retries against a dependency that is down.

Contract (one ``HandlerBreaker`` per consumed queue, built from ``HandlerBreakerOptions``):

* What counts: the outcome of each delivery's handler after its immediate retries. A transient
  failure (``classification.failure_kind``; unknown exceptions per the queue policy; timeouts) is a
  failure; a handler that returned, or raised a permanent error (the dependency answered; the input
  was bad), is a success. Poison messages never reach a handler and do not count.
* **closed** -> **open** after ``failure_threshold`` consecutive failures: the consumer of the
  queue is cancelled (``pause``), so the broker stops delivering to this process (other consumers
  of the queue keep theirs). Messages already delivered are held, unacked, by the workers until
  the breaker lets them through (at most ``prefetch`` of them, for at most ``cool_down`` seconds per
  round; ``cool_down`` is capped at 600 s, far below RabbitMQ's 30 min ``consumer_timeout``).
* **open** -> **half-open** after ``cool_down`` seconds: consuming resumes (``resume``) and exactly
  one message is handled as the trial; the others wait for its verdict.
* **half-open** -> **closed** when the trial succeeds (everyone proceeds), -> **open** when it
  fails (a new cool-down).
* Every state change is logged (warning when opening, info otherwise) and reported to
  ``on_change(queue, old, new)``; the state is ``QueueConsumer.breaker.state``.
* ``stop``: held messages (waiting for an open breaker, or for a half-open trial's verdict) are
  released as "not admitted" (the consumer requeues them) and the cool-down timer is cancelled;
  a closed breaker keeps admitting, so a drain handles the buffered messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from .breaker import BreakerState, CircuitBreaker

log = logging.getLogger("mmate.handler_breaker")

MAX_COOL_DOWN = 600.0

Outcome = Literal["success", "failure"]
ChangeListener = Callable[[str, BreakerState, BreakerState], None]


@dataclass(frozen=True, slots=True)
class HandlerBreakerOptions:
    """Thresholds of the per-queue breaker (``Client(handler_breaker=...)``; None disables it)."""

    failure_threshold: int = 10
    """Consecutive transient handler failures that open the breaker."""
    cool_down: float = 30.0
    """Seconds the queue is not consumed before a trial message."""
    on_change: ChangeListener | None = None
    """Called with (queue, old state, new state) on every change."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("handler breaker: failure_threshold must be at least 1")
        if not 0 < self.cool_down <= MAX_COOL_DOWN:
            raise ValueError(
                f"handler breaker: cool_down must be in (0, {MAX_COOL_DOWN:g}] s, "
                f"got {self.cool_down}"
            )


DEFAULT_HANDLER_BREAKER = HandlerBreakerOptions()
"""On by default: 10 consecutive transient failures, 30 s cool-down."""


class HandlerBreaker:
    """The breaker of one queue; ``pause`` / ``resume`` stop and restart its consumer."""

    def __init__(
        self,
        queue: str,
        options: HandlerBreakerOptions,
        *,
        pause: Callable[[], Awaitable[None]],
        resume: Callable[[], Awaitable[None]],
    ) -> None:
        self.queue = queue
        self._options = options
        self._pause = pause
        self._resume = resume
        self.breaker = CircuitBreaker(
            f"handlers of {queue}",
            failure_threshold=options.failure_threshold,
            cool_down=options.cool_down,
            on_change=self._changed,
        )
        self._changed_event = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._stopped = False
        self._trial: object | None = None
        """The token of the message admitted as the half-open trial."""

    @property
    def state(self) -> BreakerState:
        return self.breaker.state

    async def admit(self, token: object) -> bool:
        """Wait until a message may be handled: true to go ahead (as the trial in half-open
        state), false when it would have to wait while stopping (the caller requeues the
        message). A closed breaker admits while stopping too: the consumer's drain handles what
        it buffered, as it does without a breaker. ``token`` names who handles the message (the
        consumer's worker); ``record`` and ``done`` pass the same one."""
        while True:
            state = self.breaker.state
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and self.breaker.allow():
                self._trial = token
                return True
            if self._stopped:
                return False
            self._changed_event.clear()
            await self._changed_event.wait()

    def record(self, outcome: Outcome, token: object) -> None:
        """The verdict of an admitted message's handler."""
        if self._trial is token:
            self._trial = None
        if outcome == "success":
            self.breaker.success()
        else:
            self.breaker.failure()

    def done(self, token: object) -> None:
        """Call when an admitted message is finished, whatever happened: a trial that ended
        without a verdict (``record``) is released, so that another message can be the trial."""
        if self._trial is not None and self._trial is token:
            self._trial = None
            if self.breaker.state is BreakerState.HALF_OPEN:
                self.breaker.release()
                self._wake()

    def _wake(self) -> None:
        self._changed_event.set()

    def _changed(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            log.warning(
                "circuit breaker of queue %s opened (%s -> open): stopped consuming for %g s",
                self.queue,
                old.value,
                breaker.cool_down,
            )
            if not self._stopped:
                self._timer = asyncio.create_task(
                    self._cool_down(), name=f"mmate:{self.queue}:breaker"
                )
        else:
            log.info("circuit breaker of queue %s: %s -> %s", self.queue, old.value, new.value)
        self._wake()
        if self._options.on_change is not None:
            try:
                self._options.on_change(self.queue, old, new)
            except Exception:
                log.exception("on_change of the breaker of queue %s failed", self.queue)

    async def _cool_down(self) -> None:
        try:
            await self._pause()
        except Exception as exc:
            log.error("pausing the consumer of %s failed: %s", self.queue, exc)
        await asyncio.sleep(self._options.cool_down)
        if self._stopped:
            return
        self.breaker.half_open()
        try:
            await self._resume()
        except Exception as exc:
            log.error("resuming the consumer of %s failed: %s", self.queue, exc)

    async def stop(self) -> None:
        self._stopped = True
        self._wake()
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
