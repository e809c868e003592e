"""A throw-away 3-node RabbitMQ cluster on this machine, for the cluster tests.

Each node has its own node name (``mmate-c<N>-<tag>@localhost``), AMQP port, Erlang distribution
port, data and log directories under one temporary directory, its own env file (the machine's
``/etc/rabbitmq/rabbitmq-env.conf`` names the machine's node and is not read), no plugins, and an
Erlang cookie of its own (``HOME`` points into the temporary directory, where ``.erlang.cookie``
lives, for the nodes and for ``rabbitmqctl``). The machine's broker (5672, ``rabbit@localhost``)
is never addressed: every ``rabbitmqctl`` call names one of our nodes with ``-n``.

The nodes boot in parallel (working directory: the temporary one, where Mnesia writes its core
files); nodes 2 and 3 then join node 1, one after the other. ``stop`` kills every node it
started (by the pid in its pid file, which only our nodes write) and removes the directory;
the pytest fixture calls it even when a test fails, and ``atexit`` does as a last resort. While a
cluster runs, SIGTERM (a CI job's timeout, ``timeout(1)``) raises ``KeyboardInterrupt`` in the main
thread as Ctrl-C does, so pytest tears the fixture down instead of dying with the nodes left
running. Only SIGKILL skips all of that: the next cluster started on this machine then kills the
nodes of any cluster whose owning process is gone and removes its directory (``sweep_abandoned``).

Run by hand: ``python tests/cluster/rabbit_cluster.py`` starts a cluster, prints its URLs and stops
it on Enter.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any


def _tool(name: str) -> str | None:
    """The RabbitMQ script itself: the Debian wrappers in /usr/sbin switch to the ``rabbitmq``
    user with ``su``, which resets ``HOME`` (and with it the Erlang cookie) to the machine's."""
    direct = Path("/usr/lib/rabbitmq/bin") / name
    return str(direct) if direct.exists() else shutil.which(name)


SERVER = _tool("rabbitmq-server")
CTL = _tool("rabbitmqctl")
BASE_PORT = int(os.environ.get("MMATE_CLUSTER_PORT", "5701"))
"""AMQP ports BASE_PORT..BASE_PORT+2; distribution ports 20000 above them."""
ROOT_PREFIX = "mmate-cluster-"
"""Every cluster's directory is ``<tempdir>/mmate-cluster-*``; nothing else uses the prefix."""
OWNER_FILE = "owner.pid"
"""In a cluster's directory: the pid of the process that started it."""
HOST = "localhost"
"""The host part of every node name."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_base(size: int) -> int:
    """The first base port from BASE_PORT on with ``size`` free AMQP and distribution ports."""
    for base in range(BASE_PORT, BASE_PORT + 200, size):
        ports = [base + i for i in range(size)] + [base + 20000 + i for i in range(size)]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError(f"no {size} free ports from {BASE_PORT} on (and 20000 above)")


def _runs_node(pid: int, name: str) -> bool:
    """Process ``pid`` is the Erlang VM of node ``name``. RabbitMQ 3.10 passes the node name in
    the environment, not on the command line, so the process's ``RABBITMQ_NODENAME`` decides."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"RABBITMQ_NODENAME={name}".encode() in environ.split(b"\0")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_abandoned() -> list[str]:
    """Kill the nodes of clusters whose owning process is gone (a test run killed with SIGKILL,
    which no clean-up survives) and remove their directories; returns the directories removed.
    A cluster whose owner still runs is left alone, so clusters of parallel runs coexist."""
    removed = []
    for root in Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if _alive(owner):
            continue
        for pid_file in (root / "data").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _runs_node(pid, f"{pid_file.stem}@{HOST}"):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(str(root))
    return removed


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class Node:
    index: int
    name: str
    port: int
    dist_port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home / f"{self.short}.out"

    @property
    def short(self) -> str:
        return self.name.partition("@")[0]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.home / "data" / f"{self.short}.pid"

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pid_file.read_text().strip())
        return None


class RabbitCluster:
    """``start()``, then ``urls``; ``kill(i)`` (SIGKILL), ``restart(i)``, ``stop()``."""

    def __init__(self, size: int = 3, *, advanced_config: str | None = None) -> None:
        """``advanced_config``: the text of every node's ``advanced.config`` (Erlang terms, for
        settings the ini-style file cannot hold), or None for none."""
        if SERVER is None or CTL is None:
            raise RuntimeError("rabbitmq-server / rabbitmqctl are not installed")
        self.swept = sweep_abandoned()
        self.tag = secrets.token_hex(3)
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        self.cookie = secrets.token_hex(16)
        base = _free_base(size)
        self.nodes = [
            Node(i, f"mmate-c{i + 1}-{self.tag}@{HOST}", base + i, base + 20000 + i, self.root)
            for i in range(size)
        ]
        cookie = self.root / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        for sub in ("data", "log"):
            (self.root / sub).mkdir()
        (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.advanced: Path | None = None
        if advanced_config is not None:
            self.advanced = self.root / "advanced.config"
            self.advanced.write_text(advanced_config)
        self._stopped = False
        self._previous_sigterm: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
        atexit.register(self.stop)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _env(self, node: Node) -> dict[str, str]:
        conf = self.root / f"{node.short}.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.root),
            RABBITMQ_NODENAME=node.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(node.port),
            RABBITMQ_DIST_PORT=str(node.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(conf.with_suffix("")),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.root / "data"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_PID_FILE=str(node.pid_file),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            # Small machines: fewer schedulers keep the three nodes from fighting over the CPUs.
            RABBITMQ_SERVER_ERL_ARGS=(
                "+P 1048576 +t 5000000 +stbt db +zdbbl 128000 +S 1:1 "
                "+sbwt none +sbwtdcpu none +sbwtdio none"
            ),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_CRASH_DUMP=str(self.root / f"{node.short}.crash.dump"),
        )
        if self.advanced is not None:
            env["RABBITMQ_ADVANCED_CONFIG_FILE"] = str(self.advanced)
        return env

    def ctl(self, index: int, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n <node i> args``; raises with its output on failure."""
        node = self.nodes[index]
        done = subprocess.run(
            [str(CTL), "-q", "-n", node.name, *args],
            env=self._env(node),
            cwd=self.root,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl -n {node.name} {' '.join(args)} failed ({done.returncode}): "
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode(errors="replace")

    def _boot(self, index: int) -> None:
        node = self.nodes[index]
        with node.log.open("ab") as out:
            node.process = subprocess.Popen(
                [str(SERVER)],
                env=self._env(node),
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._await(index)

    def _await(self, index: int, timeout: float = 90) -> None:
        node = self.nodes[index]
        deadline = time.monotonic() + timeout
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited at start-up: {self._tail(node)}")
            try:
                self.ctl(index, "await_startup", "--timeout", "5", timeout=15)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{node.name} did not start in {timeout:g} s: {self._tail(node)}"
                    ) from None
                time.sleep(0.5)

    @staticmethod
    def _tail(node: Node) -> str:
        with contextlib.suppress(OSError):
            return node.log.read_text(errors="replace")[-2000:]
        return "(no output)"

    def _join(self, index: int) -> None:
        self.ctl(index, "stop_app")
        self.ctl(index, "join_cluster", self.nodes[0].name)
        self.ctl(index, "start_app")
        self._await(index)

    def start(self) -> RabbitCluster:
        """Boot every node in parallel, then join nodes 2.. to node 1 one after the other."""
        began = time.monotonic()
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(self._boot, range(len(self.nodes))))
            # One at a time: two nodes joining at once race in Mnesia's schema merge, and one of
            # them then fails start_app ({badmatch, {error, {normal, {mnesia_app, start, ...}}}}).
            for index in range(1, len(self.nodes)):
                self._join(index)
            status = self.ctl(0, "cluster_status", "--formatter", "json")
            for node in self.nodes:
                if status.count(node.name) < 2:  # disk node and running node
                    raise RuntimeError(f"{node.name} is not running in the cluster: {status}")
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def kill(self, index: int) -> float:
        """SIGKILL node ``index`` (its beam process); returns the moment (``time.monotonic``)."""
        node = self.nodes[index]
        pid = node.pid()
        if pid is None:
            raise RuntimeError(f"no pid file for {node.name}")
        os.kill(pid, signal.SIGKILL)
        at = time.monotonic()
        if node.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(10)
        return at

    def restart(self, index: int) -> None:
        """Boot a killed node again (it rejoins the cluster from its data directory)."""
        self._boot(index)

    def leader_of(self, queue: str, vhost: str = "/") -> str:
        """The node name that leads quorum queue ``queue`` (asked of any running node)."""
        for index, node in enumerate(self.nodes):
            if node.pid() is None or not self.running(index):
                continue
            out = self.ctl(
                index, "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
            )
            for row in json.loads(out):
                if row["name"] == queue:
                    return str(row["leader"])
            raise RuntimeError(f"no queue {queue!r} on the cluster")
        raise RuntimeError("no running node")

    def running(self, index: int) -> bool:
        node = self.nodes[index]
        return node.process is not None and node.process.poll() is None

    def index_of(self, name: str) -> int:
        return next(n.index for n in self.nodes if n.name == name)

    def stop(self) -> None:
        """Kill every node this cluster started and remove its directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            # By the pid file even when the script we started has exited (a node booted again
            # by ``restart`` outlives it), but only a process that is one of our nodes.
            pid = node.pid()
            if pid is not None and _runs_node(pid, node.name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if node.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(node.process.pid, signal.SIGKILL)
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._previous_sigterm is not None and (
            threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._previous_sigterm)


if __name__ == "__main__":
    cluster = RabbitCluster().start()
    import sys

    if "--no-wait" in sys.argv:
        print(f"started in {cluster.started_in:.1f} s:", *cluster.urls)
        print(cluster.ctl(0, "cluster_status"))
        cluster.stop()
        raise SystemExit(0)
    print(f"started in {cluster.started_in:.1f} s:", *cluster.urls)
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input("Enter stops it ")
    cluster.stop()
