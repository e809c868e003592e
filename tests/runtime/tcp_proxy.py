"""A TCP proxy in front of the broker that can cut its current connections silently: ``freeze``
stops forwarding (sockets stay open, nothing is closed, nothing arrives), as a dead network path or
a crashed middlebox does. New connections made after a freeze are forwarded normally."""

from __future__ import annotations

import asyncio
import contextlib


class SilentCutProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5672) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: list[tuple[asyncio.Task[None], asyncio.Task[None]]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        self._pipes.append(
            (
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            )
        )

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    def freeze(self) -> int:
        """Stop forwarding on every current connection, closing nothing; returns how many."""
        pipes, self._pipes = self._pipes, []
        for to_broker, to_client in pipes:
            to_broker.cancel()
            to_client.cancel()
        return len(pipes)

    async def close(self) -> None:
        self.freeze()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
