"""The backends the conformance suite runs on: RabbitMQ (the machine's broker) and the in-memory
broker. ``conftest.py`` parametrizes every test that uses the ``backend`` fixture (directly or
through ``url``, ``probe``, ``app``) with both, unless its module is marked ``broker`` (a
broker-only module: fault injection, recovery, raw AMQP wire tests).

A backend says what it can do in its ``Features`` record (the one the runtime's backend carries,
``mmate._transport.base.Features``). A test that needs a feature says so with
``@requires("amqp_wire")``; on a backend without it, the test is skipped with the reason
"memory backend lacks amqp_wire" (never silently passed).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
from mmate._transport.aiormq.backend import FEATURES as RABBIT_FEATURES
from mmate._transport.base import Features
from mmate._transport.memory import MemoryBroker

FEATURE_NAMES = frozenset(f.name for f in dataclasses.fields(Features) if f.type != "str")


def requires(*features: str) -> pytest.MarkDecorator:
    """Mark a test as needing these backend features (``Features`` field names)."""
    unknown = sorted(set(features) - FEATURE_NAMES)
    if unknown:
        raise ValueError(f"unknown backend features {unknown}; known: {sorted(FEATURE_NAMES)}")
    return pytest.mark.requires(*features)


@dataclass
class TestBackend:
    """One backend a conformance test runs on: its URL, its features, and (memory) its broker."""

    __test__ = False  # not a test class

    name: str
    url: str
    features: Features
    broker: MemoryBroker | None = None

    @property
    def memory(self) -> bool:
        return self.broker is not None

    def lacks(self, *features: str) -> list[str]:
        return [f for f in features if not getattr(self.features, f)]

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` of broker time pass: the memory broker advances its clock (every
        expiry and timer on the way happens at its moment), RabbitMQ sleeps."""
        if self.broker is not None:
            await self.broker.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    async def connect(self) -> Any:
        """A seam ``Link`` for looking at the broker from outside the client under test: the
        memory broker's own link, or on RabbitMQ a small aiormq probe with the seam's shape
        (``rabbit_probe``), independent of the runtime's aiormq backend."""
        if self.broker is not None:
            return await self.broker.backend.connect(
                self.url, name="probe", heartbeat=0, ssl_context=None, timeout=5
            )
        from rabbit_probe import connect

        return await connect(self.url)


def rabbitmq(url: str) -> TestBackend:
    return TestBackend("rabbitmq", url, RABBIT_FEATURES)


def memory() -> TestBackend:
    broker = MemoryBroker()
    return TestBackend("memory", broker.url, broker.features, broker)
