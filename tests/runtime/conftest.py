"""Fixtures of the runtime tests: the broker URL, a unique sample app per test (deleted afterwards),
a raw aiormq channel for looking at what is on the wire, and the Go-shaped fixtures."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiormq
import aiormq.abc
import pytest
from go_json import ENVELOPE_KEYS, marshal_envelope
from mmate._transport import base as mmate_base
from sample_app import App, make_app

BROKER_URL = os.environ.get("MMATE_TEST_URL", "amqp://guest:guest@127.0.0.1:5672/")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "go"


def go_fixture(name: str) -> dict[str, Any]:
    """A Go-shaped message: exchange, routing key, properties, AMQP headers and ``body`` (parsed;
    the exact bytes under ``body_bytes`` when the fixture keeps them in a ``.body`` file)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    if "body_file" in data:
        data["body_bytes"] = (FIXTURES / data["body_file"]).read_bytes()
        data["body"] = json.loads(data["body_bytes"])
    return data


def go_body(fixture: dict[str, Any]) -> bytes:
    """The body bytes as Go's encoding/json writes them (``go_json``); a fixture with keys Go's
    envelope struct does not have (a tolerant-reader case) is written compact in its own order."""
    if set(fixture["body"]) <= set(ENVELOPE_KEYS):
        return marshal_envelope(fixture["body"])
    return json.dumps(fixture["body"], separators=(",", ":")).encode()


@pytest.fixture
def url() -> str:
    return BROKER_URL


@pytest.fixture
async def raw() -> AsyncIterator[aiormq.abc.AbstractChannel]:
    """A raw aiormq channel (no confirms) for inspecting and injecting messages."""
    conn = await aiormq.connect(BROKER_URL)
    try:
        yield await conn.channel(publisher_confirms=False)
    finally:
        await conn.close()


async def _cleanup(queues: list[str], exchanges: list[str]) -> None:
    conn = await aiormq.connect(BROKER_URL)
    try:
        for q in queues:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.queue_delete(q)
        for e in exchanges:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.exchange_delete(e)
    finally:
        await conn.close()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    """A sample app with unique exchange and queue names; everything it names is deleted
    afterwards."""
    a = make_app()
    yield a
    await _cleanup(a.queues, a.exchanges)


@pytest.fixture
async def extra_entities() -> AsyncIterator[tuple[list[str], list[str]]]:
    """Lists to append queue and exchange names to; they are deleted after the test."""
    queues: list[str] = []
    exchanges: list[str] = []
    yield queues, exchanges
    await _cleanup(queues, exchanges)


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Wait until ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def message_count(channel: Any, queue: str) -> int:
    """Messages ready in ``queue``, through a raw aiormq channel or a seam ``Channel``."""
    if isinstance(channel, mmate_base.Channel):
        return (await channel.declare_queue(queue, passive=True)).message_count
    ok = await channel.queue_declare(queue, passive=True)
    return int(ok.message_count or 0)
