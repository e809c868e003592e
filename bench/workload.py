"""The shared workload of the throughput benchmark: the message, a scratch topology, machine facts.

Both sides (mmate and the hand-written aiormq baseline) publish the generated
``OrderCreatedEvent`` of the example system to a uniquely named durable topic exchange bound to a
uniquely named durable queue (routing key ``order.eu.created``, as the generated publisher fills
``order.{region}.created``); both are deleted afterwards. Nothing shared (``mmate.events``, the
example services' queues) is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import aiormq
import aiormq.abc
from mmate import BindingDef, HandlerRoute, QueueDef, ServiceTopology

from generated import topology as gen_topology
from generated.models import GetOrderQuery, OrderCreatedEvent, Region

URL = os.environ.get("MMATE_TEST_URL", "amqp://guest:guest@127.0.0.1:5672/")
WINDOW = 1000
"""Unconfirmed publishes in flight, both sides (``mmate.Client``'s default ``max_in_flight``)."""
PREFETCH = 100
CHUNK = 1000
"""Publishes per turn when the sides take turns (publish figures)."""
ROUTING_KEY = "order.eu.created"
QUERY_KEY = "qry.GetOrderQuery"


def sample_event(i: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        aggregate_id=f"ORDER-{i:06d}",
        sequence=i,
        order_id=f"ORDER-{i:06d}",
        customer_id="C-000001",
        amount=99.99,
        region=Region.EU,
    )


def sample_events(count: int) -> list[OrderCreatedEvent]:
    return [sample_event(i) for i in range(count)]


def sample_query(i: int) -> GetOrderQuery:
    return GetOrderQuery(order_id=f"ORDER-{i:06d}")


@dataclass(frozen=True)
class Scratch:
    """A uniquely named durable exchange and queue, bound for events and queries; deleted after."""

    exchange: str
    queue: str

    @classmethod
    def new(cls, tag: str) -> Scratch:
        suffix = uuid.uuid4().hex[:8]
        return cls(f"bench.{tag}.{suffix}", f"bench.{tag}.{suffix}")

    async def declare(self) -> None:
        connection = await aiormq.connect(URL)
        try:
            channel = await connection.channel()
            await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            await channel.queue_declare(self.queue, durable=True)
            await channel.queue_bind(self.queue, self.exchange, routing_key="order.*.created")
            await channel.queue_bind(self.queue, self.exchange, routing_key=QUERY_KEY)
        finally:
            await connection.close()

    async def count(self) -> int:
        connection = await aiormq.connect(URL)
        try:
            channel = await connection.channel()
            ok = await channel.queue_declare(self.queue, passive=True)
            return int(ok.message_count or 0)
        finally:
            await connection.close()

    async def delete(self) -> None:
        connection = await aiormq.connect(URL)
        try:
            channel = await connection.channel()
            await channel.queue_delete(self.queue)
            await channel.exchange_delete(self.exchange)
        finally:
            await connection.close()

    def queue_def(self) -> QueueDef:
        """The scratch queue: prefetch 100, the example's concurrency, no retries or dead letters
        (nothing fails here)."""
        base = gen_topology.QUEUES["order-audit-queue"]
        return dataclasses.replace(
            base,
            name=self.queue,
            arguments={},
            prefetch=PREFETCH,
            retry=None,
            dead_letter_queue=None,
            wait_queues={},
        )

    def consuming(self, base: ServiceTopology, message: str) -> ServiceTopology:
        """``base`` (a generated service topology) consuming ``message`` from this queue only."""
        route = next(r[message] for r in base.consumes.values() if message in r)
        return dataclasses.replace(
            base,
            queues=(self.queue_def(),),
            bindings=(BindingDef(self.exchange, self.queue, ROUTING_KEY),),
            consumes={self.queue: {message: HandlerRoute(route.message, route.method)}},
        )


class Meter:
    """Counts handled messages; the rate runs from the first to the last one (startup, such as
    declaring and consuming, is not throughput), with the process's CPU time over the same span."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.done = asyncio.Event()
        self._first = (0.0, 0.0)
        self._last = (0.0, 0.0)

    def tick(self) -> None:
        self.seen += 1
        if self.seen == 1:
            self._first = (time.perf_counter(), time.process_time())
        if self.seen == self.count:
            self._last = (time.perf_counter(), time.process_time())
            self.done.set()

    def result(self) -> tuple[float, float]:
        """Messages per second and client CPU microseconds per message."""
        n = self.count - 1
        return n / (self._last[0] - self._first[0]), (self._last[1] - self._first[1]) / n * 1e6


class Turns:
    """Alternates two sides sample by sample (``async with turns.turn(side)``), so that both see
    the same broker load: on this shared box load drifts within seconds, which per-run medians do
    not cancel."""

    def __init__(self, sides: Sequence[str]) -> None:
        self._sides = list(sides)
        self._ready = {side: asyncio.Event() for side in self._sides}
        self._ready[self._sides[0]].set()
        self._finished: set[str] = set()

    @contextlib.asynccontextmanager
    async def turn(self, side: str) -> AsyncIterator[None]:
        await self._ready[side].wait()
        self._ready[side].clear()
        try:
            yield
        finally:
            self._pass(side)

    def finish(self, side: str) -> None:
        """``side`` takes no more turns."""
        self._finished.add(side)
        if self._ready[side].is_set():
            self._ready[side].clear()
            self._pass(side)

    def _pass(self, side: str) -> None:
        at = self._sides.index(side)
        for step in range(1, len(self._sides) + 1):
            following = self._sides[(at + step) % len(self._sides)]
            if following not in self._finished:
                self._ready[following].set()
                return


# -- every side in a process of its own ------------------------------------------------------------
#
# mmate installs its own AMQP frame codec into pamqp for the whole process (see
# runtime/mmate/_transport/aiormq/frames.py). A hand-written aiormq side in the same process would
# run on it too and be measured faster than aiormq as its users have it, so every side runs in a
# process of its own: the parent starts one worker per side (``script --worker FIGURE SIDE``), and
# the workers still take turns, now over their pipes: a worker waits for ``go`` before each turn and
# writes ``done`` after it; ``ready`` before its first turn, ``result <json>`` at the end.


class PipeTurns:
    """The worker's end of ``in_processes``, with the interface of ``Turns``."""

    def __init__(self, reader: asyncio.StreamReader, out: TextIO) -> None:
        self._reader = reader
        self._out = out
        self._ready = False

    def _say(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def ready(self) -> None:
        if not self._ready:
            self._ready = True
            self._say("ready")

    @contextlib.asynccontextmanager
    async def turn(self, side: str) -> AsyncIterator[None]:
        self.ready()
        line = await self._reader.readline()
        if line != b"go\n":
            raise RuntimeError(f"worker {side}: expected 'go' from the parent, got {line!r}")
        try:
            yield
        finally:
            self._say("done")

    def finish(self, side: str) -> None:
        """Nothing to pass on: the parent moves to the next side when this one reports."""

    def result(self, value: Any) -> None:
        self.ready()
        self._say("result " + json.dumps(value))


AnyTurns = Turns | PipeTurns


def passed_on(args: Any, *names: str) -> list[str]:
    """Options of the parent's ``args`` (``publish_count``...) as arguments for its workers."""
    return [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in names]


Work = Callable[[str, str, PipeTurns], Awaitable[Any]]


def worker_main(figure: str, side: str, work: Work) -> None:
    """Run ``work(figure, side, turns)`` as a worker of ``in_processes`` and report its result."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        sys.stdout = sys.stderr  # the pipe carries the protocol only
        turns = PipeTurns(reader, out)
        turns.result(await work(figure, side, turns))

    asyncio.run(main())


def script_main(
    args: Any,
    side_work: Callable[[str, str, PipeTurns, Any], Awaitable[Any]],
    main: Callable[[Any], Awaitable[None]],
) -> None:
    """A benchmark script's entry: a worker of ``in_processes`` when started with ``--worker FIGURE
    SIDE``, else the parent (``main``)."""
    if args.worker:
        figure, side = args.worker
        worker_main(figure, side, lambda f, s, t: side_work(f, s, t, args))
    else:
        asyncio.run(main(args))


async def in_processes(
    script: Path, figure: str, sides: Sequence[str], extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Run ``figure`` for every side at once, each in a process of its own, taking turns in
    ``sides`` order once every worker is ready; return each side's result."""
    procs = {}
    for side in sides:
        procs[side] = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            "--worker",
            figure,
            side,
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
    results: dict[str, Any] = {}

    async def line_of(side: str) -> bytes:
        stdout = procs[side].stdout
        assert stdout is not None
        line = await stdout.readline()
        if not line:
            code = await procs[side].wait()
            raise RuntimeError(f"{figure}: the worker of {side} ended (exit {code})")
        return line

    try:
        for side in sides:  # every side set up before the first turn
            line = await line_of(side)
            if line != b"ready\n":
                raise RuntimeError(f"{figure}: unexpected line from {side}: {line!r}")
        pending = list(sides)
        while pending:
            for side in list(pending):
                stdin = procs[side].stdin
                assert stdin is not None
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stdin.write(b"go\n")
                    await stdin.drain()
                line = await line_of(side)
                if line.startswith(b"result "):
                    results[side] = json.loads(line[7:])
                    pending.remove(side)
                elif line != b"done\n":
                    raise RuntimeError(f"{figure}: unexpected line from {side}: {line!r}")
    finally:
        for proc in procs.values():
            if proc.returncode is None and proc.stdin is not None:
                proc.stdin.close()
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return results


def machine() -> dict[str, str]:
    """Machine and versions, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": f"{cpu} x{os.cpu_count()}",
        "os": platform.platform(terse=True),
        "python": sys.version.split()[0],
        "aiormq": metadata.version("aiormq"),
        "pamqp": metadata.version("pamqp"),
        "pydantic": metadata.version("pydantic"),
    }


async def broker_version() -> str:
    connection = await aiormq.connect(URL)
    try:
        props = connection.server_properties
        version = props.get("version", b"?")
        product = props.get("product", b"?")
        return " ".join(v.decode() if isinstance(v, bytes) else str(v) for v in (product, version))
    finally:
        await connection.close()
