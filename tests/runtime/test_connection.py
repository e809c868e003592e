"""Connecting: the connection is named after the service, bad vhosts and closed clients fail
clearly."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import mmate
import pytest
from conftest import BROKER_URL

pytestmark = pytest.mark.broker


def _connections() -> str:
    try:
        done = subprocess.run(
            ["rabbitmqctl", "list_connections", "client_properties"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"rabbitmqctl not usable: {exc}")
    return done.stdout


async def test_connection_name_shows_the_service() -> None:
    async with mmate.Client(BROKER_URL, service="conn-name-test-service") as client:
        assert client.connection.is_open
        listing = await asyncio.to_thread(_connections)
        assert "conn-name-test-service (mmate-py, pid" in listing
    assert not client.connection.is_open


async def test_unknown_vhost_is_a_connection_error_without_password() -> None:
    url = BROKER_URL.rstrip("/") + "/no-such-vhost-mmate"
    client = mmate.Client(url, service="svc", connect_timeout=5)
    with pytest.raises(mmate.BrokerConnectionError) as info:
        await client.connect()
    text = str(info.value)
    assert "****" in text or "guest" not in text.split("@")[0]
    assert ":guest@" not in text


async def test_using_a_closed_client_raises_a_clear_error(url: str) -> None:
    client = mmate.Client(url, service="svc")
    from sample_app import MESSAGES, OrderCreatedEvent

    route = mmate.PublishRoute(MESSAGES["OrderCreatedEvent"], "mmate.events", "k")
    with pytest.raises(mmate.PublishError, match="not connected"):
        await client.publish(
            route, OrderCreatedEvent(order_id="o", customer_id="c", amount=1), "k", {}
        )


async def test_heartbeat_is_negotiated() -> None:
    service = f"heartbeat-{uuid.uuid4().hex[:8]}"
    async with mmate.Client(BROKER_URL, service=service, heartbeat=7):
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_connections", "client_properties", "timeout"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    ours = [line for line in listed.splitlines() if service in line]
    assert len(ours) == 1 and ours[0].rsplit("\t", 1)[-1].strip() == "7", listed


async def test_amqps_speaks_tls() -> None:
    """No TLS listener here: a TLS handshake against the plain port must fail cleanly."""
    url = BROKER_URL.replace("amqp://", "amqps://").replace("guest:guest", "guest:tls-secret")
    client = mmate.Client(url + "?no_verify_ssl=1", service="svc", connect_timeout=5)
    with pytest.raises(mmate.BrokerConnectionError) as info:
        await client.connect()
    assert "tls-secret" not in str(info.value)
