"""Driving the local broker from tests: ``rabbitmqctl`` off the event loop, a vhost of a test's own
(created, and deleted with everything in it afterwards), and the broker started again after a test
that stopped it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator

import pytest


def run_ctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, timeout=120)


async def ctl(*args: str) -> None:
    """rabbitmqctl, off the event loop (it takes a second or two; the clients must keep running)."""
    await asyncio.to_thread(run_ctl, *args)


def broker_running() -> None:
    """Start the broker application if a test left it stopped, and wait until it serves."""
    run_ctl("start_app", check=False)
    run_ctl("await_startup", check=False)


@pytest.fixture(name="vhost")
async def vhost_fixture() -> AsyncIterator[str]:
    """A vhost for this test only (guest may use it); deleted afterwards with all it holds."""
    name = f"mmate-test-{uuid.uuid4().hex[:8]}"
    await ctl("add_vhost", name)
    try:
        await ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        await asyncio.to_thread(broker_running)
        await asyncio.to_thread(run_ctl, "delete_vhost", name, check=False)


def vhost_url(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
