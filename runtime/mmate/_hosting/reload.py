"""``mmate run --reload`` (development): run the service as a child and restart it when a Python
file under the current directory changes, with watchfiles (``pip install 'mmate[reload]'``; we
write no watcher of our own). docs/running.md, Reload.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .workers import worker_command

log = logging.getLogger("mmate.run")

INSTALL = "mmate run --reload needs watchfiles: pip install 'mmate[reload]'"


def available() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


def run(argv: Sequence[str], root: Path) -> int:
    """Run ``mmate run argv`` as a child and restart it on every change; returns its last code."""
    from watchfiles import PythonFilter, watch

    stop = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start() -> None:
        # own process group: a terminal's Ctrl-C is forwarded once, by on_signal
        process = subprocess.Popen(
            worker_command(argv),
            env=dict(os.environ, MMATE_SUPERVISOR_PID=str(os.getpid())),
            process_group=0,
        )
        child[:] = [process]
        log.info("reload: started the service (pid %d), watching %s", process.pid, root)

    start()
    for changes in watch(
        root, watch_filter=PythonFilter(), stop_event=stop, rust_timeout=500, yield_on_timeout=True
    ):
        if not changes or stop.is_set():
            continue
        names = ", ".join(sorted({Path(path).name for _kind, path in changes}))
        log.info("reload: %s changed; restarting", names)
        child[0].send_signal(signal.SIGTERM)
        child[0].wait()
        start()
    return child[0].wait()
