"""The circuit breaker around publishing: ``PublishBreakerOptions`` (the client option
``publish_breaker``, off by default), ``counts_as_failure`` (which publish errors count) and
``GuardedPublisher`` (every confirmed publish of the client through one ``CircuitBreaker``;
transactions are not guarded). States, what counts and the logs: docs/runtime/breakers.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._failures.breaker import BreakerState, CircuitBreaker
from ..errors import (
    AccessRefused,
    BatchPublishError,
    CircuitOpenError,
    EntityNotFound,
    MmateError,
    PreconditionFailed,
    UnroutableError,
)
from .confirmed import ConfirmedPublisher, Outgoing
from .pool import PublisherPool

log = logging.getLogger("mmate.publish_breaker")

PublishChangeListener = Callable[[BreakerState, BreakerState], None]

_NOT_COUNTED = (UnroutableError, EntityNotFound, AccessRefused, PreconditionFailed)


@dataclass(frozen=True, slots=True)
class PublishBreakerOptions:
    """Thresholds of the publish breaker (``Client(publish_breaker=...)``; None disables it)."""

    failure_threshold: int = 5
    """Consecutive failed publishes that open the breaker."""
    cool_down: float = 30.0
    """Seconds publishes fail fast before one trial publish is let through."""
    half_open_successes: int = 1
    """Confirmed trial publishes in a row (one at a time) that close the breaker again."""
    on_change: PublishChangeListener | None = None
    """Called with (old state, new state) on every change, synchronously; exceptions are logged."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("publish breaker: failure_threshold must be at least 1")
        if self.cool_down <= 0:
            raise ValueError(f"publish breaker: cool_down must be positive, got {self.cool_down}")
        if self.half_open_successes < 1:
            raise ValueError("publish breaker: half_open_successes must be at least 1")


def counts_as_failure(error: BaseException) -> bool | None:
    """True: a failure of the broker path; None: not counted (see the module docstring)."""
    if not isinstance(error, MmateError):  # cancelled, or nothing the publisher raised
        return None
    if isinstance(error, _NOT_COUNTED):
        return None
    cause = error.__cause__
    if isinstance(cause, _NOT_COUNTED):
        return None  # a plain PublishError wrapping 404 / 403 / 406 from the broker
    return True


class GuardedPublisher:
    """A ``ConfirmedPublisher`` (or a ``PublisherPool``) behind a ``CircuitBreaker`` (same
    ``send`` / ``send_many`` / ``close``)."""

    def __init__(
        self, inner: ConfirmedPublisher | PublisherPool, options: PublishBreakerOptions
    ) -> None:
        self._inner = inner
        self._options = options
        self._last_failure = ""
        self.breaker = CircuitBreaker(
            "publishing",
            failure_threshold=options.failure_threshold,
            cool_down=options.cool_down,
            on_change=self._changed,
            half_open_successes=options.half_open_successes,
        )

    @property
    def timeout(self) -> float:
        return self._inner.timeout

    @property
    def inner(self) -> ConfirmedPublisher | PublisherPool:
        """What the breaker guards."""
        return self._inner

    @property
    def resent(self) -> int:
        return self._inner.resent

    async def close(self) -> None:
        await self._inner.close()

    def _admit(self, out: Outgoing, count: int = 1) -> int:
        """Let the publish through (returns the breaker's generation, its number of opens) or
        raise ``CircuitOpenError``."""
        if self.breaker.allow():
            return self.breaker.opened
        state = self.breaker.state
        what = (
            f"{out.encoded.type} {out.encoded.message_id}"
            if count == 1
            else f"a batch of {count} messages"
        )
        if state is BreakerState.OPEN:
            retry_in = self.breaker.cool_down_left()
            why = (
                f"the publish circuit breaker is open after {self.breaker.failure_threshold} "
                f"consecutive failures (last: {self._last_failure}); "
                f"a trial publish is let through in {retry_in:.1f} s"
            )
        else:
            retry_in = 0.0
            why = "the publish circuit breaker is half-open and its trial publish is in flight"
        raise CircuitOpenError(
            f"{what} was not sent: {why}",
            state=state.value,
            retry_in=retry_in,
            exchange=out.exchange,
            routing_key=out.routing_key,
        )

    def _record(self, error: BaseException | None, generation: int) -> None:
        if self.breaker.opened != generation:
            return  # admitted before the breaker (re)opened: says nothing about it now
        if error is None:
            self.breaker.success()
            return
        if counts_as_failure(error):
            self._last_failure = f"{type(error).__name__}: {error}"
            self.breaker.failure()
        else:
            self.breaker.release()

    async def send(self, out: Outgoing, *, timeout: float | None = None) -> None:
        generation = self._admit(out)
        try:
            await self._inner.send(out, timeout=timeout)
        except BaseException as exc:
            self._record(exc, generation)
            raise
        self._record(None, generation)

    async def send_many(self, items: Sequence[Outgoing], *, timeout: float | None = None) -> None:
        if not items:
            return
        generation = self._admit(items[0], len(items))
        try:
            await self._inner.send_many(items, timeout=timeout)
        except BatchPublishError as exc:
            failed = {f.index: f.error for f in exc.failures}
            counted = False
            for index in range(len(items)):
                error = failed.get(index)
                if error is None or counts_as_failure(error):
                    self._record(error, generation)
                    counted = True
            if not counted and self.breaker.opened == generation:
                self.breaker.release()
            raise
        except BaseException as exc:
            self._record(exc, generation)
            raise
        self._record(None, generation)

    def _changed(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            log.warning(
                "publish circuit breaker opened (%s -> open) after %s; failing fast for %g s",
                old.value,
                self._last_failure,
                breaker.cool_down,
            )
        else:
            log.info("publish circuit breaker: %s -> %s", old.value, new.value)
        if self._options.on_change is not None:
            try:
                self._options.on_change(old, new)
            except Exception:
                log.exception("on_change of the publish circuit breaker failed")
