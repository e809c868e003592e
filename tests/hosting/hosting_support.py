"""Running ``mmate run`` as a subprocess in tests/hosting: start it, read its log, publish to the
service, count what it handled and what is left in its queue."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import aiormq
import mmate

from generated.inventory_service import InventoryServiceHandlers
from generated.models import UpdateInventoryCommand
from generated.order_service import OrderServicePublisher

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "inventory-service-queue"
WAIT = 60.0


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until true; fails naming ``what`` after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Run:
    """One ``mmate run`` process; stdout and stderr go to files under ``tmp``; ``own_group``:
    in a process group of its own (as a terminal starts it); ``hide``: top-level modules that
    cannot be imported in it, as if not installed; ``command``: how ``mmate`` is started."""

    def __init__(
        self,
        tmp: Path,
        args: Sequence[str],
        env: dict[str, str],
        cwd: Path = ROOT,
        own_group: bool = False,
        hide: Sequence[str] = (),
        command: Sequence[str] = (sys.executable, "-m", "mmate"),
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.out_path = tmp / "stdout"
        self.err_path = tmp / "stderr"
        full_env = dict(os.environ, **env)
        full_env["PYTHONPATH"] = os.pathsep.join([*_hidden(tmp, hide), str(ROOT)])
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*command, "run", *args],
                cwd=cwd,
                env=full_env,
                stdout=out,
                stderr=err,
                process_group=0 if own_group else None,
            )

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def wait_log(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` lines of the output; returns the matches."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = list(re.finditer(pattern, self.output))
            if self.process.poll() is not None and len(found) < count:
                raise AssertionError(f"exited {self.process.returncode}:\n{self.output}")
            return len(found) >= count

        wait_for(seen, f"{pattern!r} in the output")
        return found

    def health_port(self, host: str = "127.0.0.1") -> int:
        return int(self.wait_log(rf"health on http://{re.escape(host)}:(\d+)/")[0][1])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _hidden(tmp: Path, modules: Sequence[str]) -> list[str]:
    """A directory (for the front of PYTHONPATH) whose packages named ``modules`` raise the
    ``ModuleNotFoundError`` a missing package raises: nothing is uninstalled."""
    if not modules:
        return []
    shims = tmp / "hidden"
    for name in modules:
        (shims / name).mkdir(parents=True, exist_ok=True)
        (shims / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"
        )
    return [str(shims)]


def free_port_pair() -> int:
    """A port P with P and P + 1 free just now (for ``--workers 2`` health ports)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two adjacent free ports")


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def handled(log: Path) -> list[tuple[int, str]]:
    """The (pid, product id) lines the service wrote."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [(int(pid), product) for pid, product in (line.split() for line in lines)]


async def _publish(url: str, products: Sequence[str]) -> None:
    async with mmate.Client(url, service="order-service") as client:
        publisher = OrderServicePublisher(client)
        for product in products:
            await publisher.send_update_inventory_command(
                UpdateInventoryCommand(product_id=product, quantity=1)
            )


def publish(url: str, products: Sequence[str]) -> None:
    """Send one UpdateInventoryCommand per product id to inventory-service."""
    asyncio.run(_publish(url, products))


async def _depth(url: str) -> int:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.queue_declare(QUEUE, passive=True)
        return int(declared.message_count or 0)
    finally:
        await connection.close()


async def _declare(url: str) -> None:
    async with mmate.Client(url, service="inventory-service") as client:
        await client.declare(InventoryServiceHandlers.TOPOLOGY)


def declare(url: str) -> None:
    """Declare inventory-service's topology (so messages can wait in its queue)."""
    asyncio.run(_declare(url))


async def _consumers(url: str) -> int:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.queue_declare(QUEUE, passive=True)
        return int(declared.consumer_count or 0)
    finally:
        await connection.close()


def consumers(url: str) -> int:
    """Consumers of inventory-service's queue."""
    return asyncio.run(_consumers(url))


def depth(url: str) -> int:
    """Messages ready in inventory-service's queue (none unacked: call it with no consumer)."""
    return asyncio.run(_depth(url))


async def _counts(url: str, queues: Sequence[str]) -> dict[str, int]:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        counts: dict[str, int] = {}
        for queue in queues:
            declared = await channel.queue_declare(queue, passive=True)
            counts[queue] = int(declared.message_count or 0)
        return counts
    finally:
        await connection.close()


def counts(url: str, queues: Sequence[str]) -> dict[str, int]:
    """Messages ready in each of ``queues`` (none unacked: call it with no consumer)."""
    return asyncio.run(_counts(url, queues))


async def _take(url: str, queue: str) -> list[tuple[bytes, dict[str, object], bool]]:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        taken: list[tuple[bytes, dict[str, object], bool]] = []
        while True:
            got = await channel.basic_get(queue, no_ack=True)
            if got.delivery_tag is None:  # Basic.GetEmpty
                return taken
            headers = dict(got.header.properties.headers or {})
            redelivered = bool(getattr(got.delivery, "redelivered", False))
            taken.append((got.body, headers, redelivered))
    finally:
        await connection.close()


def take(url: str, queue: str) -> list[tuple[bytes, dict[str, object], bool]]:
    """Every message ready in ``queue``, removed from it: (body, headers, redelivered)."""
    return asyncio.run(_take(url, queue))
