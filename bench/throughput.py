"""Throughput benchmark: mmate against hand-written aiormq doing the same work, in one run.

    python bench/throughput.py [--runs 3] [--only publish,batch,consume,latency,rr,memory]
                               [--side both|mmate|raw] [--publish-count 10000] ...

Figures (each the median of ``--runs`` runs, mmate and raw interleaved so both see the same broker
load; the ratio mmate / raw is printed beside each):

* ``publish``: the generated ``publish_order_created_event`` called concurrently for every message
  of a chunk (``asyncio.gather``), confirms and ``mandatory`` on, up to WINDOW unconfirmed; raw:
  the same with ``basic_publish`` behind a semaphore of WINDOW. Both sides (and ``batch``) run at
  once on their own connections and take turns chunk by chunk (CHUNK messages).
* ``batch``: the same messages through ``client.batch()``, one batch per chunk (raw: the concurrent
  figure).
* ``consume``: a pre-filled queue consumed with prefetch 100, each message parsed, validated into
  the model and dispatched to a no-op handler (a subclass of the generated ``OrderAuditHandlers``),
  acked after the handler returned; raw: a ``basic_consume`` callback doing the same, acking each.
  Timed from the first to the last message handled (startup excluded on both sides).
* ``latency``: one message at a time, from the publish call until both its confirm arrived and the
  handler holds the typed model; p50 and p99. Both sides run at once and take turns message by
  message, so that the broker load of this shared box hits them alike.
* ``rr``: request/reply round trips per second, one at a time (generated ``request_get_order_query``
  against a served handler; raw: a hand-written reply queue and responder), taking turns likewise.
* ``memory``: peak RSS (VmHWM) and RSS of an mmate consumer process at 10k, 50k and 100k handled.

Each side runs in a process of its own (``workload.in_processes`` says why), taking turns over its
pipe. Prints a table and one JSON line per figure. Exit status 0 even when a target is missed: the
benchmark is a record, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "runtime")]  # this tree's runtime

import mmate  # noqa: E402
import raw_aiormq  # noqa: E402
from mmate._wire import envelope as codec  # noqa: E402
from workload import (  # noqa: E402
    CHUNK,
    PREFETCH,
    URL,
    WINDOW,
    AnyTurns,
    Meter,
    PipeTurns,
    Scratch,
    broker_version,
    in_processes,
    machine,
    passed_on,
    sample_events,
    sample_query,
    script_main,
)

from generated import topology as gen_topology  # noqa: E402
from generated.models import (  # noqa: E402
    CreateOrderCommand,
    GetOrderQuery,
    OrderCreatedEvent,
    OrderReply,
    ProcessOrderCommand,
)
from generated.order_audit import OrderAuditHandlers  # noqa: E402
from generated.order_service import OrderServiceHandlers, OrderServicePublisher  # noqa: E402
from generated.storefront import StorefrontPublisher  # noqa: E402

TARGETS = {
    "publish": (">=", 1.0),
    "batch": (">=", 1.0),
    "consume": (">=", 1.0),
    "publish_cpu": ("<=", 1.0),
    "batch_cpu": ("<=", 1.0),
    "consume_cpu": ("<=", 1.0),
    "latency_p50": ("<=", 1.15),
    "latency_p99": ("<=", 1.15),
}


# -- mmate side ------------------------------------------------------------------------------------


def _audit_handlers(scratch: Scratch, on_event: Callable[[], None]) -> mmate.HandlerBase:
    class BenchAudit(OrderAuditHandlers):
        TOPOLOGY = scratch.consuming(gen_topology.ORDER_AUDIT, "OrderCreatedEvent")

        async def handle_order_created_event(
            self, message: OrderCreatedEvent, ctx: mmate.MessageContext
        ) -> None:
            on_event()

    return BenchAudit()


async def mmate_publish(
    scratch: Scratch, events: Sequence[OrderCreatedEvent], turns: AnyTurns, side: str
) -> list[float]:
    async with mmate.Client(URL, service="bench", max_in_flight=WINDOW) as client:
        publisher = OrderServicePublisher(client)
        elapsed = cpu = 0.0
        for start in range(0, len(events), CHUNK):
            async with turns.turn(side):
                started, cpu_started = time.perf_counter(), time.process_time()
                await asyncio.gather(
                    *(
                        publisher.publish_order_created_event(e, exchange=scratch.exchange)
                        for e in events[start : start + CHUNK]
                    )
                )
                elapsed += time.perf_counter() - started
                cpu += time.process_time() - cpu_started
        turns.finish(side)
    return [len(events) / elapsed, cpu / len(events) * 1e6]


async def mmate_batch(
    scratch: Scratch, events: Sequence[OrderCreatedEvent], turns: AnyTurns, side: str
) -> list[float]:
    async with mmate.Client(URL, service="bench", max_in_flight=WINDOW) as client:
        elapsed = cpu = 0.0
        for start in range(0, len(events), CHUNK):
            async with turns.turn(side):
                started, cpu_started = time.perf_counter(), time.process_time()
                async with client.batch() as batch:
                    publisher = OrderServicePublisher(batch)
                    for event in events[start : start + CHUNK]:
                        await publisher.publish_order_created_event(
                            event, exchange=scratch.exchange
                        )
                elapsed += time.perf_counter() - started
                cpu += time.process_time() - cpu_started
        turns.finish(side)
    return [len(events) / elapsed, cpu / len(events) * 1e6]


async def mmate_consume(scratch: Scratch, count: int) -> tuple[float, float]:
    meter = Meter(count)
    async with mmate.Client(URL, service="bench") as client:
        serving = await client.serve(_audit_handlers(scratch, meter.tick), prefetch=PREFETCH)
        await meter.done.wait()
        await serving.stop()
    return meter.result()


async def mmate_latency(
    scratch: Scratch, events: Sequence[OrderCreatedEvent], turns: AnyTurns, side: str
) -> list[float]:
    arrived: asyncio.Queue[float] = asyncio.Queue()
    results = []
    async with mmate.Client(URL, service="bench") as client:
        await client.serve(
            _audit_handlers(scratch, lambda: arrived.put_nowait(time.perf_counter())),
            prefetch=PREFETCH,
        )
        publisher = OrderServicePublisher(client)
        for event in events:
            async with turns.turn(side):
                started = time.perf_counter()
                await publisher.publish_order_created_event(event, exchange=scratch.exchange)
                confirmed = time.perf_counter()
                results.append(max(confirmed, await arrived.get()) - started)
        turns.finish(side)
    return results


async def mmate_request_reply(
    scratch: Scratch, queries: Sequence[GetOrderQuery], turns: AnyTurns, side: str
) -> list[float]:
    class BenchOrders(OrderServiceHandlers):
        TOPOLOGY = scratch.consuming(gen_topology.ORDER_SERVICE, "GetOrderQuery")

        async def handle_create_order_command(
            self, message: CreateOrderCommand, ctx: mmate.MessageContext
        ) -> None:
            raise NotImplementedError

        async def handle_process_order_command(
            self, message: ProcessOrderCommand, ctx: mmate.MessageContext
        ) -> None:
            raise NotImplementedError

        async def handle_get_order_query(
            self, message: GetOrderQuery, ctx: mmate.MessageContext
        ) -> OrderReply:
            return OrderReply(order=None)

    async with (
        mmate.Client(URL, service="bench-responder") as responder,
        mmate.Client(URL, service="bench") as requester,
    ):
        await responder.serve(BenchOrders(), prefetch=PREFETCH)
        store = StorefrontPublisher(requester)
        await store.request_get_order_query(sample_query(0), exchange=scratch.exchange)  # warm-up
        results = []
        for query in queries:
            async with turns.turn(side):
                started = time.perf_counter()
                await store.request_get_order_query(query, exchange=scratch.exchange, timeout=10)
                results.append(time.perf_counter() - started)
        turns.finish(side)
    return results


# -- memory (child process) ------------------------------------------------------------------------


def _proc_status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])  # kB
    return values


async def memory_child(queue: str, exchange: str, count: int) -> None:
    scratch = Scratch(exchange, queue)
    marks = {10_000, 50_000, count}
    samples: list[dict[str, int]] = []
    done = asyncio.Event()
    seen = 0

    def on_event() -> None:
        nonlocal seen
        seen += 1
        if seen in marks:
            samples.append({"handled": seen, **_proc_status()})
        if seen == count:
            done.set()

    gc.collect()
    samples.append({"handled": 0, **_proc_status()})
    async with mmate.Client(URL, service="bench-memory") as client:
        serving = await client.serve(_audit_handlers(scratch, on_event), prefetch=PREFETCH)
        await done.wait()
        await serving.stop()
    print(json.dumps(samples))


async def memory(count: int) -> list[dict[str, int]]:
    scratch = Scratch.new("memory")
    await scratch.declare()
    try:
        events = sample_events(10_000)
        for start in range(0, count, len(events)):
            await raw_aiormq.fill(scratch, events[: min(len(events), count - start)])
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--memory-child",
            scratch.queue,
            scratch.exchange,
            str(count),
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed ({proc.returncode})")
        samples: list[dict[str, int]] = json.loads(out.decode().strip().splitlines()[-1])
        return samples
    finally:
        await scratch.delete()


# -- orchestration ---------------------------------------------------------------------------------


async def scratch_run(tag: str, work: Callable[[Scratch], Awaitable[Any]]) -> Any:
    scratch = Scratch.new(tag)
    await scratch.declare()
    try:
        return await work(scratch)
    finally:
        await scratch.delete()


async def consume_run(side: str, count: int) -> tuple[float, float]:
    events = sample_events(count)

    async def work(scratch: Scratch) -> tuple[float, float]:
        await raw_aiormq.fill(scratch, events)
        if side == "raw":
            return await raw_aiormq.consume(scratch, count)
        return await mmate_consume(scratch, count)

    result: tuple[float, float] = await scratch_run("consume", work)
    return result


PER_SIDE: dict[str, dict[str, Callable[[Scratch, Any, AnyTurns, str], Awaitable[list[float]]]]] = {
    "publish": {"raw": raw_aiormq.publish, "mmate": mmate_publish, "batch": mmate_batch},
    "latency": {"raw": raw_aiormq.latency, "mmate": mmate_latency},
    "rr": {"raw": raw_aiormq.request_reply, "mmate": mmate_request_reply},
}


async def side_work(figure: str, side: str, turns: PipeTurns, args: argparse.Namespace) -> Any:
    """One side's part of one figure, in the worker process of that side (workload.py says why
    every side runs in a process of its own)."""
    if figure == "consume":
        return list(await consume_run(side, args.consume_count))
    events = sample_events(args.publish_count)
    items: dict[str, Sequence[Any]] = {
        "publish": events,
        "latency": events[: args.latency_count + 50],
        "rr": [sample_query(i) for i in range(args.rr_count)],
    }
    work = PER_SIDE[figure][side]
    return await scratch_run(
        f"{figure}-{side}", lambda scratch: work(scratch, items[figure], turns, side)
    )


def counts(args: argparse.Namespace) -> list[str]:
    """The counts of this run, for the worker processes."""
    return passed_on(args, "publish_count", "consume_count", "latency_count", "rr_count")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_figures(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    only = set(args.only.split(","))
    sides = ["raw", "mmate"] if args.side == "both" else [args.side]
    figures: dict[str, dict[str, list[float]]] = {}

    def record(name: str, side: str, value: float) -> None:
        figures.setdefault(name, {}).setdefault(side, []).append(value)
        print(f"  {name:<12} {side:<5} {value:12.4f}", file=sys.stderr, flush=True)

    script = Path(__file__).resolve()
    extra = counts(args)
    for run in range(args.runs):
        if "publish" in only:
            # All publishers at once, taking turns chunk by chunk (CHUNK messages each).
            names = [*sides, *(["batch"] if "batch" in only and "mmate" in sides else [])]
            for name, (rate, cpu) in (await in_processes(script, "publish", names, extra)).items():
                figure, side = ("batch", "mmate") if name == "batch" else ("publish", name)
                record(figure, side, rate)
                record(f"{figure}_cpu", side, cpu)
        order = sides if run % 2 == 0 else sides[::-1]
        for side in order:
            if "consume" in only:
                rate, cpu = (await in_processes(script, "consume", [side], extra))[side]
                record("consume", side, rate)
                record("consume_cpu", side, cpu)
    # Latency and round trips: both sides at once, alternating message by message.
    for _run in range(args.runs):
        if "latency" in only:
            for side, seconds in (await in_processes(script, "latency", sides, extra)).items():
                seconds = seconds[50:]  # warm-up
                record("latency_p50", side, percentile(seconds, 0.50) * 1000)
                record("latency_p99", side, percentile(seconds, 0.99) * 1000)
        if "rr" in only:
            for side, seconds in (await in_processes(script, "rr", sides, extra)).items():
                record("rr", side, len(seconds) / sum(seconds))
    if "batch" in figures and "publish" in figures and "raw" in figures["publish"]:
        figures["batch"]["raw"] = figures["publish"]["raw"]
        figures["batch_cpu"]["raw"] = figures["publish_cpu"]["raw"]
    return figures


UNITS = {
    "publish": "msg/s",
    "batch": "msg/s",
    "consume": "msg/s",
    "latency_p50": "ms",
    "latency_p99": "ms",
    "rr": "round trips/s",
    "publish_cpu": "client CPU us/msg",
    "batch_cpu": "client CPU us/msg",
    "consume_cpu": "client CPU us/msg",
}


def report(figures: dict[str, dict[str, list[float]]], meta: dict[str, Any]) -> None:
    print("## Throughput run")
    print(", ".join(f"{k}: {v}" for k, v in meta.items()))
    print()
    print(
        "| figure | mmate | raw aiormq | mmate / raw (medians) | paired ratio (median of runs) "
        "| target | runs (mmate; raw) |"
    )
    print("|---|---:|---:|---:|---:|---|---|")
    lines = []
    for name, sides in figures.items():
        mm = statistics.median(sides["mmate"]) if "mmate" in sides else None
        raw = statistics.median(sides["raw"]) if "raw" in sides else None
        ratio = mm / raw if mm is not None and raw else None
        runs_mm, runs_raw = sides.get("mmate", []), sides.get("raw", [])
        pairs = [m / r for m, r in zip(runs_mm, runs_raw, strict=False) if r]
        paired = statistics.median(pairs) if pairs else None
        target = TARGETS.get(name)
        verdict = ""
        if target is not None and paired is not None:
            ok = paired >= target[1] if target[0] == ">=" else paired <= target[1]
            verdict = f"{target[0]} {target[1]:.2f} {'met' if ok else 'MISSED'}"
        unit = UNITS[name]
        fmt = "{:,.2f}" if unit == "ms" else "{:,.1f}" if "CPU" in unit else "{:,.0f}"

        def cell(v: float | None, fmt: str = fmt) -> str:
            return "-" if v is None else fmt.format(v)

        runs = "; ".join(
            ", ".join(fmt.format(v) for v in sides.get(s, [])) for s in ("mmate", "raw")
        )
        print(
            f"| {name} ({unit}) | {cell(mm)} | {cell(raw)} | {cell(ratio, '{:.2f}')} | "
            f"{cell(paired, '{:.2f}')} | {verdict} | {runs} |"
        )
        lines.append(
            {
                "figure": name,
                "unit": unit,
                "mmate": mm,
                "raw": raw,
                "ratio": ratio,
                "paired_ratio": paired,
                "runs": sides,
            }
        )
    for line in lines:
        print(json.dumps(line))


def report_memory(samples: list[dict[str, int]]) -> None:
    print()
    print("| mmate consumer, handled | VmRSS (MB) | VmHWM peak (MB) |")
    print("|---:|---:|---:|")
    for s in samples:
        print(f"| {s['handled']:,} | {s['VmRSS'] / 1024:.1f} | {s['VmHWM'] / 1024:.1f} |")
    by = {s["handled"]: s for s in samples}
    marks = sorted(by)
    growth = (by[marks[-1]]["VmHWM"] - by[marks[1]]["VmHWM"]) / 1024 if len(marks) > 2 else 0.0
    print(
        json.dumps({"figure": "memory", "unit": "kB", "samples": samples, "hwm_growth_mb": growth})
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="publish,batch,consume,latency,rr,memory")
    parser.add_argument("--side", choices=("both", "mmate", "raw"), default="both")
    parser.add_argument("--publish-count", type=int, default=10_000)
    parser.add_argument("--consume-count", type=int, default=20_000)
    parser.add_argument("--latency-count", type=int, default=1_000)
    parser.add_argument("--rr-count", type=int, default=1_000)
    parser.add_argument("--memory-count", type=int, default=100_000)
    parser.add_argument("--memory-child", nargs=3, metavar=("QUEUE", "EXCHANGE", "COUNT"))
    parser.add_argument("--worker", nargs=2, metavar=("FIGURE", "SIDE"), help=argparse.SUPPRESS)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    if args.memory_child:
        queue, exchange, count = args.memory_child
        await memory_child(queue, exchange, int(count))
        return
    size = len(
        codec.encode(
            gen_topology.MESSAGES["OrderCreatedEvent"], sample_events(1)[0], app_id="bench"
        ).body
    )
    meta: dict[str, Any] = {
        **machine(),
        "broker": await broker_version(),
        "message": f"OrderCreatedEvent envelope, {size} bytes, persistent, durable queue",
        "window": WINDOW,
        "prefetch": PREFETCH,
        "runs": args.runs,
        "pid": os.getpid(),
    }
    figures = await run_figures(args)
    report(figures, meta)
    if "memory" in args.only.split(",") and args.side != "raw":
        report_memory(await memory(args.memory_count))


if __name__ == "__main__":
    script_main(arguments(), side_work, main)
