"""``mmate run --workers N``: the ``Supervisor`` of N worker processes, each ``python -m mmate run``
with its own connection and health port; it forwards signals, restarts a worker that died, gives
up after ``STARTUP_FAILURES`` quick failures in a row (docs/running.md, Workers).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("mmate.run")

STARTUP_WINDOW = 10.0
STARTUP_FAILURES = 3
MAX_BACKOFF = 30.0


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command of one worker: this interpreter running ``mmate run`` with ``argv``."""
    return [sys.executable, "-m", "mmate", "run", *argv]


class Supervisor:
    """Runs ``count`` workers of ``argv`` (``mmate run`` arguments without ``--workers``)."""

    def __init__(self, argv: Sequence[str], count: int, health_port: int | None) -> None:
        self._argv = list(argv)
        self._workers = [Worker(i) for i in range(count)]
        self._health_port = health_port
        self._stopping = 0

    def _start(self, worker: Worker) -> None:
        env = dict(
            os.environ, MMATE_WORKER=str(worker.index), MMATE_SUPERVISOR_PID=str(os.getpid())
        )
        if self._health_port is None:
            env["MMATE_HEALTH_PORT"] = "off"
        else:
            port = self._health_port + worker.index if self._health_port else 0
            env["MMATE_HEALTH_PORT"] = str(port)
        # its own process group: a Ctrl-C in the terminal reaches the supervisor only, which
        # forwards it once (twice would be the second signal, stopping the worker at once)
        worker.process = subprocess.Popen(worker_command(self._argv), env=env, process_group=0)
        worker.started = time.monotonic()
        worker.restart_at = None
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping += 1
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)

    def run(self) -> int:
        """Supervise until every worker has stopped; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for worker in self._workers:
            self._start(worker)
        code = 0
        gave_up = False
        while True:
            running = 0
            for worker in self._workers:
                process = worker.process
                if process is None:
                    if worker.restart_at is not None and not self._stopping:
                        running += 1
                        if time.monotonic() >= worker.restart_at:
                            self._start(worker)
                    continue
                result = process.poll()
                if result is None:
                    running += 1
                    continue
                worker.process = None
                if self._stopping:
                    # killed by the forwarded signal itself: it was still starting, nothing in
                    # flight; killed by another signal: like a forced stop
                    forwarded = result in (-signal.SIGTERM, -signal.SIGINT)
                    code = max(code, result if result >= 0 else 0 if forwarded else 4)
                    log.info(
                        "worker %d (pid %d) stopped with %d", worker.index, process.pid, result
                    )
                    continue
                quick = time.monotonic() - worker.started < STARTUP_WINDOW
                worker.quick_failures = worker.quick_failures + 1 if quick else 0
                if worker.quick_failures >= STARTUP_FAILURES:
                    log.error(
                        "worker %d failed %d times at startup (last exit %d); giving up",
                        worker.index,
                        worker.quick_failures,
                        result,
                    )
                    self._on_signal(signal.SIGTERM, None)
                    gave_up = True
                    continue
                delay = min(MAX_BACKOFF, 2.0 ** max(worker.quick_failures - 1, 0))
                log.warning(
                    "worker %d (pid %d) died with %d; restarting in %g s",
                    worker.index,
                    process.pid,
                    result,
                    delay,
                )
                worker.restart_at = time.monotonic() + delay
                running += 1
            if not running:
                return 1 if gave_up else code
            time.sleep(0.1)
