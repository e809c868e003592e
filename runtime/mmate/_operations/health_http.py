"""A tiny HTTP/1.1 health endpoint on the standard library (``asyncio.start_server``).

``server = await serve_health(client, host="127.0.0.1", port=8080)`` (port 0 picks a free one,
read it from ``server.port``; ``await server.close()`` or ``async with``). GET only (405 otherwise),
one request per connection (``Connection: close``), JSON bodies:

* ``/live``: 200 ``{"status": "alive"}`` while the event loop runs.
* ``/ready``: 200 when the report is healthy or degraded, else 503; body ``{"status": ...}``. With
  ``ready_requires_serving=True`` (a service whose job is to handle messages) it is also 503,
  ``{"status": "not serving"}``, until ``Client.serve`` has started consuming.
* ``/health``: the full ``HealthReport`` as JSON; 200 when healthy or degraded, else 503.
* ``/metrics`` (only with ``metrics=``, a function returning the body and its content type, e.g.
  ``prometheus_client.generate_latest``): the Prometheus text exposition.
* anything else: 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from .health import check_health

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger("mmate.health")

MetricsBody = Callable[[], tuple[bytes, str]]
"""Returns the ``/metrics`` body and its content type."""

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS[503] = "Service Unavailable"


class HealthServer:
    """A running health endpoint; ``port`` is the bound port."""

    def __init__(
        self,
        client: Client,
        server: asyncio.Server,
        timeout: float,
        requires_serving: bool,
        metrics: MetricsBody | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._server = server
        self._timeout = timeout
        self._requires_serving = requires_serving
        self.port: int = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and wait for the server to close."""
        self._server.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _respond(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        if path not in ("/live", "/ready", "/health"):
            return 404, {"error": "not found"}
        if method != "GET":
            return 405, {"error": "method not allowed"}
        if path == "/live":
            return 200, {"status": "alive"}
        report = await check_health(self._client, timeout=self._timeout)
        code = 200 if report.ok else 503
        if path == "/ready":
            if self._requires_serving and not self._client.servings:
                return 503, {"status": "not serving"}
            return code, {"status": report.status}
        return code, report.to_dict()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            content_type = "application/json"
            if len(parts) != 3:
                code, body = 400, {"error": "bad request"}
                data = json.dumps(body).encode()
            elif self._metrics is not None and parts[1].split("?", 1)[0] == "/metrics":
                if parts[0] == "GET":
                    code, (data, content_type) = 200, self._metrics()
                else:
                    code, data = 405, json.dumps({"error": "method not allowed"}).encode()
            else:
                code, body = await self._respond(parts[0], parts[1].split("?", 1)[0])
                data = json.dumps(body).encode()
            head = (
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n"
            )
            if code == 405:
                head += "Allow: GET\r\n"
            writer.write(head.encode() + b"\r\n" + data)
            await writer.drain()
        except Exception as exc:
            log.debug("health request failed: %r", exc)
        finally:
            writer.close()


async def serve_health(
    client: Client,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    timeout: float = 5.0,
    ready_requires_serving: bool = False,
    metrics: MetricsBody | None = None,
) -> HealthServer:
    """Start serving ``/live``, ``/ready`` and ``/health`` for ``client``; see the module doc."""
    holder: list[HealthServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await holder[0]._handle(reader, writer)

    server = await asyncio.start_server(handle, host, port)
    holder.append(HealthServer(client, server, timeout, ready_requires_serving, metrics))
    return holder[0]
