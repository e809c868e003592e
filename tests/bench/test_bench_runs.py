"""The benchmark scripts run: bench/throughput.py with tiny counts, every side in a worker process
of its own taking turns over its pipe (bench/workload.py). Figures are not checked: benchmarks are
a record, never a timed assertion; this only keeps the scripts working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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
