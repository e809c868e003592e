"""Session-wide clean-up: tests leave the broker as they found it.

The first delayed publish (or retry through the cascade) of a client declares the shared delay
cascade (``mmate.delay.*``, docs/runtime/delays.md); ``Client.serve`` only relays once it exists.
Tests that use the default prefix would leave its 59 entities behind; when the cascade did not
exist before the session, it is deleted after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import aiormq
import pytest
from mmate._delays.cascade import DelayTopology

BROKER_URL = os.environ.get("MMATE_TEST_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def _cascade_exists(cascade: DelayTopology) -> bool:
    connection = await aiormq.connect(BROKER_URL)
    try:
        channel = await connection.channel()
        await channel.queue_declare(cascade.ready, passive=True)
        return True
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await connection.close()


async def _delete_cascade(cascade: DelayTopology) -> None:
    connection = await aiormq.connect(BROKER_URL)
    try:
        channel = await connection.channel()
        for name, _ in cascade.queues():
            await channel.queue_delete(name)
        for name, _, _ in cascade.exchanges():
            await channel.exchange_delete(name)
    finally:
        await connection.close()


@pytest.fixture(scope="session", autouse=True)
def _broker_left_as_found() -> Iterator[None]:
    cascade = DelayTopology()
    try:
        existed = asyncio.run(_cascade_exists(cascade))
    except (OSError, aiormq.exceptions.AMQPError):
        existed = True  # no broker: nothing to clean, and the broker tests will say why
    yield
    if not existed:
        with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):
            asyncio.run(_delete_cascade(cascade))
