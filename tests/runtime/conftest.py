"""Fixtures of the runtime tests: the backend a test runs on and its URL, a unique sample app per
test (deleted afterwards), a seam channel (``probe``) or a raw aiormq channel (``raw``, broker-only
modules) for looking at what is on the broker, and the Go-shaped fixtures.

The conformance suite: a test that uses ``backend`` (directly or through ``url``, ``probe``,
``app``, ``extra_entities``) runs twice, on RabbitMQ (``[rabbitmq]``, marked ``broker``) and on a
fresh in-memory broker (``[memory]``), unless its module is marked ``broker`` (broker-only: it
then runs on RabbitMQ alone). ``@requires(feature)`` (``backends.py``) skips a test by name on a
backend whose ``Features`` lack it."""

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
from backends import TestBackend, memory, rabbitmq
from go_json import ENVELOPE_KEYS, marshal_envelope
from mmate._transport.base import Properties
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("broker") is not None:
        metafunc.parametrize("backend", ["rabbitmq"], indirect=True)  # a broker-only test
        return
    metafunc.parametrize(
        "backend", [pytest.param("rabbitmq", marks=pytest.mark.broker), "memory"], indirect=True
    )


@pytest.fixture
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[TestBackend]:
    made = rabbitmq(BROKER_URL) if request.param == "rabbitmq" else memory()
    marker = request.node.get_closest_marker("requires")
    missing = made.lacks(*marker.args) if marker is not None else []
    if missing:
        if made.broker is not None:
            made.broker.close()
        pytest.skip(f"{made.name} backend lacks {', '.join(missing)}")
    try:
        yield made
    finally:
        if made.broker is not None:
            made.broker.close()


@pytest.fixture
def url(backend: TestBackend) -> str:
    return backend.url


@pytest.fixture
async def probe(backend: TestBackend) -> AsyncIterator[Any]:
    """A seam ``Channel`` without confirms on the test's backend, for looking at and injecting
    messages from outside the client under test (``get``, ``publish``, ``declare_queue``...)."""
    link = await backend.connect()
    try:
        yield await link.channel(confirms=False)
    finally:
        await link.close()


@pytest.fixture
async def raw() -> AsyncIterator[aiormq.abc.AbstractChannel]:
    """A raw aiormq channel (no confirms) for inspecting and injecting AMQP frames (broker-only
    tests)."""
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
async def app(backend: TestBackend) -> AsyncIterator[App]:
    """A sample app with unique exchange and queue names; everything it names is deleted
    afterwards (on RabbitMQ; a memory broker is dropped whole)."""
    a = make_app()
    yield a
    if not backend.memory:
        await _cleanup(a.queues, a.exchanges)


@pytest.fixture
async def extra_entities(backend: TestBackend) -> AsyncIterator[tuple[list[str], list[str]]]:
    """Lists to append queue and exchange names to; they are deleted after the test."""
    queues: list[str] = []
    exchanges: list[str] = []
    yield queues, exchanges
    if not backend.memory:
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


async def inject(
    channel: Any,
    body: bytes,
    *,
    routing_key: str,
    exchange: str = "",
    properties: Properties | None = None,
) -> None:
    """Publish ``body`` through a seam channel (``probe``) as another client would: raw bytes,
    the given properties, no confirm."""
    await channel.publish(
        body, properties or Properties(), exchange=exchange, routing_key=routing_key
    )


async def message_count(channel: Any, queue: str) -> int:
    """Messages ready in ``queue``, through a raw aiormq channel or a seam ``Channel``."""
    if hasattr(channel, "declare_queue"):
        return (await channel.declare_queue(queue, passive=True)).message_count
    ok = await channel.queue_declare(queue, passive=True)
    return int(ok.message_count or 0)
