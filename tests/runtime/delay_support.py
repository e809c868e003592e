"""Helpers of the delay and schedule tests: a unique delay prefix per test (its cascade deleted
afterwards) and a raw consumer that records when each message arrived."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiormq
import aiormq.abc
import pytest
from backends import TestBackend
from conftest import BROKER_URL
from mmate._delays.cascade import LEVELS, DelayTopology


def unique_prefix() -> str:
    return f"t.{uuid.uuid4().hex[:10]}.delay"


async def delete_cascade(prefix: str) -> None:
    topo = DelayTopology(prefix)
    conn = await aiormq.connect(BROKER_URL)
    try:
        names = [topo.level(level) for level in range(LEVELS)]
        for queue in [*names, topo.ready, topo.dead]:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.queue_delete(queue)
        for exchange in [*names, topo.delivery, topo.plugin]:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.exchange_delete(exchange)
    finally:
        await conn.close()


@pytest.fixture(name="prefix")
async def prefix_fixture(backend: TestBackend) -> AsyncIterator[str]:
    """A unique delay prefix; its cascade is deleted after the test (on RabbitMQ; a memory
    broker is dropped whole)."""
    name = unique_prefix()
    yield name
    if not backend.memory:
        await delete_cascade(name)


@dataclass
class Arrival:
    message: Any
    """A seam ``Delivery`` or an aiormq message (``Recorder.start``)."""
    at: float
    """``time.monotonic()`` on arrival."""

    @property
    def message_id(self) -> str | None:
        header = getattr(self.message, "header", None)
        properties = header.properties if header is not None else self.message.properties
        return properties.message_id  # type: ignore[no-any-return]


@dataclass
class Recorder:
    """Consumes a queue (auto-ack) and records every message with its arrival time."""

    arrivals: list[Arrival] = field(default_factory=list)
    _conn: aiormq.abc.AbstractConnection | None = None

    async def start(self, queue: str, probe: Any = None) -> None:
        """Consume ``queue``: through a seam channel (``probe``, either backend; arrivals are
        seam ``Delivery`` values) or, without one, a raw aiormq connection to RabbitMQ."""
        if probe is not None:
            await probe.consume(
                queue, lambda d: self.arrivals.append(Arrival(d, time.monotonic())), no_ack=True
            )
            return
        self._conn = await aiormq.connect(BROKER_URL)
        channel = await self._conn.channel()
        await channel.basic_consume(queue, self._on, no_ack=True)

    async def _on(self, message: aiormq.abc.DeliveredMessage) -> None:
        self.arrivals.append(Arrival(message, time.monotonic()))

    def by_id(self) -> dict[str, Arrival]:
        return {str(a.message_id): a for a in self.arrivals}

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def count(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    ok = await channel.queue_declare(queue, passive=True)
    return int(ok.message_count or 0)


async def wait_for(predicate: object, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
