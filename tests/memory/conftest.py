"""Fixtures of the in-memory broker's tests.

``side`` runs a test twice: on a fresh ``MemoryBroker`` and on RabbitMQ (a vhost of this test
session, through the aiormq backend of the seam), so every behaviour asserted there is proven
against the real broker. ``side.wait(seconds)`` lets time pass: the memory broker advances its
clock (milliseconds), RabbitMQ sleeps. ``broker`` is a fresh ``MemoryBroker`` for memory-only
tests.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mmate._transport.memory import MemoryBroker
from sides import Side


def _ctl(*args: str) -> bool:
    try:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str | None]:
    """A vhost for this session's RabbitMQ runs (None: no broker here); deleted afterwards."""
    name = f"mmate-memory-{uuid.uuid4().hex[:8]}"
    if not _ctl("add_vhost", name):
        yield None
        return
    try:
        _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        _ctl("delete_vhost", name)


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.broker)])
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    if request.param == "memory":
        broker = MemoryBroker()
        made = Side("memory", broker.url, broker=broker)
    else:
        rabbit_vhost = request.getfixturevalue("rabbit_vhost")
        if rabbit_vhost is None:
            pytest.skip("no RabbitMQ broker (rabbitmqctl failed)")
        made = Side(
            "rabbitmq",
            f"amqp://guest:guest@127.0.0.1:5672/{rabbit_vhost}",
            vhost=rabbit_vhost,
        )
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    made = MemoryBroker()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def link(broker: MemoryBroker) -> AsyncIterator[Any]:
    made = await broker.backend.connect(
        broker.url, name="test", heartbeat=0, ssl_context=None, timeout=5
    )
    try:
        yield made
    finally:
        await made.close()
