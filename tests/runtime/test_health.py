"""Health checks on both backends: healthy, degraded (a served queue lost its consumer),
unhealthy (a declared queue deleted, the connection closed), queue depth, and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import json

import mmate
from backends import TestBackend, requires
from broker_ctl import ctl, vhost_fixture, vhost_url
from conftest import wait_until
from mmate._transport.base import Channel
from sample_app import App
from test_consume import event, recording_handlers

__all__ = ["vhost_fixture"]


def by_name(report: mmate.HealthReport) -> dict[str, mmate.CheckResult]:
    return {c.name: c for c in report.checks}


async def http(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_healthy_after_declare_and_serve(url: str, app: App) -> None:
    async with mmate.Client(url, service="health-ok") as client:
        await client.declare(app.order_service)
        await client.serve(recording_handlers(app))
        report = await mmate.check_health(client)
        assert report.status == "healthy", report.checks
        names = by_name(report)
        assert {
            "connection",
            "channel",
            f"queue:{app.order_queue}",
            f"exchange:{app.events}",
        } <= set(names)
        assert all(c.status == "healthy" and c.duration_ms >= 0 for c in report.checks)
        served = {q.queue: q for q in report.queues}
        assert served[app.order_queue].consumers == 1
        # the URL as given, its password (RabbitMQ's guest) masked; the memory URL has none
        assert report.broker == url.replace("guest:guest@", "guest:****@")
        assert "guest:guest" not in json.dumps(report.to_dict())


async def test_unhealthy_when_a_declared_queue_is_deleted(
    url: str, app: App, probe: Channel
) -> None:
    async with mmate.Client(url, service="health-missing") as client:
        await client.declare(app.order_service)
        await probe.delete_queue(app.audit_queue)
        report = await mmate.check_health(client)
        assert report.status == "unhealthy"
        checks = by_name(report)
        assert checks[f"queue:{app.audit_queue}"].status == "unhealthy"
        assert checks[f"queue:{app.order_queue}"].status == "healthy"  # channel reopened after 404


async def test_degraded_without_consumer_and_depth_counts_published(url: str, app: App) -> None:
    async with mmate.Client(url, service="health-depth") as client:
        await client.declare(app.order_service)
        serving = await client.serve(recording_handlers(app))
        for consumer in serving.consumers:  # the consumers die while the client still serves
            await consumer.stop(0)
        publisher = app.publisher(client)
        for i in range(3):
            await publisher.publish_order_created_event(event(i))

        async def depth() -> dict[str, mmate.QueueStats]:
            return {q.queue: q for q in (await mmate.check_health(client)).queues}

        seen: dict[str, mmate.QueueStats] = {}

        async def settled() -> bool:
            seen.update(await depth())
            return max(q.messages for q in seen.values()) == 3

        for _ in range(100):
            if await settled():
                break
            await asyncio.sleep(0.05)
        assert max(q.messages for q in seen.values()) == 3
        assert all(q.consumers == 0 for q in seen.values())
        report = await mmate.check_health(client)
        assert report.status == "degraded"
        assert report.ok
        assert by_name(report)[f"consumers:{app.order_queue}"].status == "degraded"


async def test_http_endpoints(url: str, app: App) -> None:
    async with mmate.Client(url, service="health-http") as client:
        await client.declare(app.order_service)
        await client.serve(recording_handlers(app))
        async with await mmate.serve_health(client, port=0) as server:
            assert server.port > 0
            assert await http(server.port, "/live") == (200, {"status": "alive"})
            assert await http(server.port, "/ready") == (200, {"status": "healthy"})
            code, body = await http(server.port, "/health")
            assert code == 200 and body["status"] == "healthy" and body["checks"]
            assert (await http(server.port, "/nope"))[0] == 404
            assert (await http(server.port, "/health", "POST"))[0] == 405
            await client.connection.close()
            code, body = await http(server.port, "/health")
            assert code == 503 and body["status"] == "unhealthy"
            assert (await http(server.port, "/ready")) == (503, {"status": "unhealthy"})
            assert (await http(server.port, "/live"))[0] == 200
        port = server.port
    try:
        await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        pass
    else:
        raise AssertionError("the health server still listens after close")


async def test_connection_closed_is_unhealthy(url: str, app: App) -> None:
    client = mmate.Client(url, service="health-closed")
    await client.connect()
    await client.declare(app.order_service)
    await client.close()
    report = await mmate.check_health(client)
    assert report.status == "unhealthy"
    assert by_name(report)["connection"].status == "unhealthy"
    assert by_name(report)[f"queue:{app.order_queue}"].detail == "not connected"


async def test_a_check_that_times_out_is_degraded(url: str, app: App) -> None:
    async with mmate.Client(url, service="health-timeout") as client:
        await client.declare(app.order_service)
        report = await mmate.check_health(client, timeout=1e-6)
        assert report.status == "degraded", report.checks
        assert by_name(report)["connection"].status == "healthy"
        assert "timed out" in by_name(report)["channel"].detail


@requires("network_faults")
async def test_reconnecting_is_unhealthy_and_says_why(backend: TestBackend, vhost: str) -> None:
    policy = mmate.ReconnectPolicy(initial_delay=0.05, max_delay=0.2)
    async with mmate.Client(vhost_url(vhost), service="health-down", reconnect=policy) as client:
        await ctl("delete_vhost", vhost)
        await wait_until(lambda: client.connection.state == "reconnecting", timeout=15)
        report = await mmate.check_health(client)
        assert report.status == "unhealthy"
        detail = by_name(report)["connection"].detail
        assert "reconnecting" in detail and "attempt" in detail, detail
        await ctl("add_vhost", vhost)
        await ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        await wait_until(lambda: client.connection.state == "recovered", timeout=15)
        report = await mmate.check_health(client)
        assert report.status == "healthy", report.checks
        assert "1 reconnects" in by_name(report)["connection"].detail


async def test_ready_can_require_serving(url: str, app: App) -> None:
    async with mmate.Client(url, service="health-serving") as client:
        await client.declare(app.order_service)
        server = await mmate.serve_health(client, port=0, ready_requires_serving=True)
        async with server:
            assert await http(server.port, "/ready") == (503, {"status": "not serving"})
            serving = await client.serve(recording_handlers(app))
            assert await http(server.port, "/ready") == (200, {"status": "healthy"})
            await serving.stop()
            assert await http(server.port, "/ready") == (503, {"status": "not serving"})


async def test_metrics_route_only_when_given(url: str) -> None:
    async with mmate.Client(url, service="health-metrics") as client:
        async with await mmate.serve_health(client, port=0) as server:
            assert (await http(server.port, "/metrics"))[0] == 404

        def body() -> tuple[bytes, str]:
            return b"mmate_up 1\n", "text/plain; version=0.0.4"

        async with await mmate.serve_health(client, port=0, metrics=body) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await reader.read()
            writer.close()
            head, _, text = data.partition(b"\r\n\r\n")
            assert head.split()[1] == b"200" and text == b"mmate_up 1\n"
            assert b"Content-Type: text/plain; version=0.0.4" in head
            assert (await http(server.port, "/metrics", "POST"))[0] == 405
            assert (await http(server.port, "/live"))[0] == 200


async def test_a_served_queue_whose_consumer_is_paused_is_degraded(url: str, app: App) -> None:
    async with mmate.Client(url, service="health-paused") as client:
        await client.declare(app.order_service)
        serving = await client.serve(recording_handlers(app), queues=[app.audit_queue])
        consumer = serving.consumers[0]
        await consumer._pause()  # what an opened circuit breaker does
        check = by_name(await mmate.check_health(client))[f"consumers:{app.audit_queue}"]
        assert check.status == "degraded" and "paused" in check.detail, check
