"""What recovery from a lost connection looks like from outside: the backoff policy, the states a
connection goes through and the events that report them.

States: ``connecting`` (first ``open``) -> ``connected``; when the connection is lost (not closed
by us): ``lost`` -> ``reconnecting`` (once per attempt, trying the broker URLs in turn) ->
``recovered`` (topology declared again, consumers resuming) or ``failed`` (``max_attempts`` used
up; the client stays down until closed). ``closed`` after ``close``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ConnectionState = Literal[
    "connecting", "connected", "lost", "reconnecting", "recovered", "failed", "closed"
]
"""The states of a ``Connection``; every change is logged and reported to ``on_state`` callbacks."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a lost connection is re-established: jittered exponential backoff, bounded.

    The pause before attempt ``n`` (1-based; the first attempt starts at once) is
    ``min(max_delay, initial_delay * multiplier ** (n - 2))`` times a random factor in
    ``[1 - jitter, 1]``, so many clients that lost the same broker do not come back in step.
    ``max_attempts=None`` tries until the client is closed.
    """

    initial_delay: float = 0.2
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("ReconnectPolicy needs 0 <= initial_delay <= max_delay")
        if self.multiplier < 1:
            raise ValueError("ReconnectPolicy.multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("ReconnectPolicy.jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("ReconnectPolicy.max_attempts must be at least 1 (or None)")

    def pause_before(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt`` (0 before the first)."""
        if attempt <= 1:
            return 0.0
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 2))
        return base * (1.0 - self.jitter * rand())


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One state change of a connection, as passed to ``Connection.on_state`` callbacks."""

    state: ConnectionState
    url: str
    """The broker URL involved (password masked)."""
    attempt: int = 0
    """For ``reconnecting``: which attempt this is (1-based); for ``recovered``/``failed``: how
    many were made."""
    error: str | None = None
    """For ``lost``, ``reconnecting`` (the previous attempt's) and ``failed``: what went wrong."""
    downtime: float | None = None
    """For ``recovered`` and ``failed``: seconds since the connection was lost."""


StateCallback = Callable[[ConnectionEvent], None]
"""Called synchronously, in the event loop, for every state change; must not block. Exceptions
it raises are logged and ignored."""
