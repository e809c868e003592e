"""The in-process broker (being built; see the memory-broker branch)."""

from __future__ import annotations

from ...errors import FeatureNotAvailable
from ..base import Backend


def memory_backend() -> Backend:
    raise FeatureNotAvailable("the in-memory broker (memory://) is not available yet")
