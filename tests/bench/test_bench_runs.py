"""The benchmark harness (bench/workload.py): every side in a worker process of its own, so that
mmate's frame codec never speeds up a hand-written side, taking turns over its pipe; and
bench/throughput.py runs with tiny counts. Figures are not checked: benchmarks are a record, never
a timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HARNESS_SCRIPT = f"""
import argparse, asyncio, json, os, sys
from pathlib import Path
sys.path[:0] = [{str(ROOT / "bench")!r}, {str(ROOT)!r}, {str(ROOT / "runtime")!r}]
import mmate
import pamqp.frame
import workload

async def side_work(figure, side, turns, args):
    if side == "mmate":  # connecting installs mmate's codec into this process
        async with mmate.Client(workload.URL, service="bench-harness-test"):
            pass
    order = []
    for n in range(3):
        async with turns.turn(side):
            order.append(n)
    wrapped = getattr(pamqp.frame.unmarshal, "__wrapped__", None) is not None
    return {{"pid": os.getpid(), "codec": wrapped, "turns": order}}

async def main(args):
    results = await workload.in_processes(Path(__file__), "check", ["mmate", "aiormq"])
    print(json.dumps(results))

parser = argparse.ArgumentParser()
parser.add_argument("--worker", nargs=2)
workload.script_main(parser.parse_args(), side_work, main)
"""


def test_each_side_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    script = tmp_path / "harness.py"
    script.write_text(HARNESS_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["mmate"]["codec"] is True
    assert results["aiormq"]["codec"] is False  # mmate's codec stayed in mmate's process
    assert results["mmate"]["pid"] != results["aiormq"]["pid"]
    assert results["mmate"]["turns"] == results["aiormq"]["turns"] == [0, 1, 2]


pytestmark = pytest.mark.broker


def test_throughput_runs_each_side_in_its_own_process() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "throughput.py"),
            "--runs=1",
            "--only=publish,batch,consume,latency,rr",
            "--publish-count=300",
            "--consume-count=300",
            "--latency-count=20",
            "--rr-count=20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            figures[record["figure"]] = record["runs"]
    for figure in ("publish", "batch", "consume", "latency_p50", "rr"):
        assert set(figures[figure]) >= {"mmate"}, figure
        assert all(value > 0 for values in figures[figure].values() for value in values)
    assert set(figures["consume"]) == {"mmate", "raw"}
