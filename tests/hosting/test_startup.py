"""``mmate run`` as a subprocess (real RabbitMQ, a vhost of this module's own): how startup
fails and what runs in which order, the optional extras missing (reload without watchfiles,
``/metrics`` without prometheus-client), and the ``mmate`` console script."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import uuid
from pathlib import Path

import aiormq
import pytest
from hosting_support import (
    QUEUE,
    Run,
    consumers,
    declare,
    depth,
    get,
    handled,
    publish,
    wait_for,
)

from tests.runtime.broker_ctl import run_ctl, vhost_url

pytestmark = pytest.mark.broker

APP = "tests.hosting.service_app"


def env_for(url: str, tmp: Path, **more: str) -> dict[str, str]:
    return {
        "MMATE_URL": url,
        "HOSTING_LOG": str(tmp / "handled"),
        "MMATE_HEALTH_PORT": "0",
        **more,
    }


def _errors(run: Run) -> list[str]:
    """The ``mmate run: error:`` lines of the output (log records are the other lines)."""
    return [line for line in run.output.splitlines() if line.startswith("mmate run: error:")]


def _drain(url: str, tmp: Path, count: int) -> None:
    run = Run(tmp / "drain", [f"{APP}:app"], env_for(url, tmp / "drain"))
    try:
        wait_for(lambda: len(handled(tmp / "drain" / "handled")) >= count, "left-overs handled")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()


def test_a_failing_startup_hook_exits_1_naming_it(url: str, tmp_path: Path) -> None:
    declare(url)
    sent = [f"hook-{uuid.uuid4().hex[:6]}"]
    publish(url, sent)
    run = Run(tmp_path, [f"{APP}:failing"], env_for(url, tmp_path))
    assert run.wait() == 1
    assert _errors(run) == [
        "mmate run: error: startup hook warm_cache failed: RuntimeError: cache unreachable"
    ], run.output
    assert "Traceback" not in run.output
    # the client was closed (not just dropped with the process), and nothing was consumed
    assert "connection closed: amqp://guest:****@" in run.output
    assert "serving inventory-service" not in run.output
    assert handled(tmp_path / "handled") == []
    assert consumers(url) == 0 and depth(url) == 1
    _drain(url, tmp_path, 1)


def test_the_log_level_is_applied(url: str, tmp_path: Path) -> None:
    """At WARNING the failing hook's run prints its error line and no INFO record."""
    run = Run(tmp_path, [f"{APP}:failing"], env_for(url, tmp_path, MMATE_LOG_LEVEL="warning"))
    assert run.wait() == 1
    assert run.output.strip().splitlines() == [
        "mmate run: error: startup hook warm_cache failed: RuntimeError: cache unreachable"
    ]


def test_a_bad_topology_exits_1_naming_the_queue(tmp_path: Path) -> None:
    """inventory-service-queue exists with an argument the spec does not give it: a 406, exit 1,
    one line naming the step and the queue."""
    vhost = f"mmate-hosting-{uuid.uuid4().hex[:8]}"
    run_ctl("add_vhost", vhost)
    try:
        run_ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        own = vhost_url(vhost)
        asyncio.run(_declare_other(own))
        run = Run(tmp_path, [f"{APP}:app"], env_for(own, tmp_path))
        assert run.wait() == 1
    finally:
        run_ctl("delete_vhost", vhost, check=False)
    [line] = _errors(run)
    assert line.startswith(
        "mmate run: error: declaring the topology of inventory-service failed: PreconditionFailed"
    ), line
    assert "inventory-service-queue" in line and "connection closed" in run.output


async def _declare_other(url: str) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_declare(QUEUE, durable=True, arguments={"x-max-length": 7})
    finally:
        await connection.close()


def test_a_health_port_in_use_fails_before_consuming(url: str, tmp_path: Path) -> None:
    declare(url)
    publish(url, [f"port-{uuid.uuid4().hex[:6]}" for _ in range(3)])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = Run(tmp_path, [f"{APP}:app", "--health-port", str(port)], env_for(url, tmp_path))
        assert run.wait() == 1
    [line] = _errors(run)
    assert line.startswith(f"mmate run: error: health port 127.0.0.1:{port} failed: OSError")
    assert "connection closed" in run.output and "serving inventory-service" not in run.output
    assert handled(tmp_path / "handled") == []
    assert consumers(url) == 0 and depth(url) == 3
    _drain(url, tmp_path, 3)


def test_health_answers_while_startup_hooks_run_and_hooks_run_in_order(
    url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    events = tmp_path / "events"
    run = Run(
        tmp_path,
        [f"{APP}:ordered"],
        env_for(url, tmp_path, HOSTING_GATE=str(gate), HOSTING_EVENTS=str(events)),
    )
    try:
        port = run.health_port()
        wait_for(events.exists, "the startup hook running")
        # the startup hook waits for the gate: alive, not ready
        assert get(port, "/live") == (200, '{"status": "alive"}')
        assert get(port, "/ready") == (503, '{"status": "not serving"}')
        gate.touch()
        run.wait_log(r"serving inventory-service")
        assert get(port, "/ready") == (200, '{"status": "healthy"}')
        run.signal(signal.SIGINT)  # Ctrl-C drains like SIGTERM
        assert run.wait() == 0
    finally:
        run.stop()
    assert events.read_text().splitlines() == [
        "startup, connection connected",
        "handlers made, serving 0",
        "shutdown, serving 0, connection connected",
    ]
    assert "SIGINT: draining" in run.output and "stopped cleanly" in run.output


def test_a_signal_while_starting_stops_without_serving(url: str, tmp_path: Path) -> None:
    """SIGTERM while a startup hook still runs (it waits for a gate that never opens) stops the
    service at once with 0: nothing was consumed, so there is nothing to drain."""
    events = tmp_path / "events"
    run = Run(
        tmp_path,
        [f"{APP}:ordered"],
        env_for(url, tmp_path, HOSTING_GATE=str(tmp_path / "never"), HOSTING_EVENTS=str(events)),
    )
    try:
        run.health_port()
        wait_for(events.exists, "the startup hook running")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    assert "stopped while starting (startup hook" in run.output
    assert "connection closed" in run.output and "serving inventory-service" not in run.output
    assert events.read_text().splitlines() == ["startup, connection connected"]


def test_reload_without_watchfiles_names_the_extra(tmp_path: Path) -> None:
    run = Run(tmp_path, [f"{APP}:app", "--reload"], {}, hide=["watchfiles"])
    assert run.wait() == 2
    assert run.output.strip().splitlines() == [
        "mmate run: error: mmate run --reload needs watchfiles: pip install 'mmate[reload]'"
    ]


def test_metrics_without_prometheus_client_is_404(url: str, tmp_path: Path) -> None:
    run = Run(tmp_path, [f"{APP}:handlers"], env_for(url, tmp_path), hide=["prometheus_client"])
    try:
        port = run.health_port()
        run.wait_log(r"serving inventory-service")
        assert get(port, "/metrics") == (404, '{"error": "not found"}')
        assert get(port, "/live") == (200, '{"status": "alive"}')
        assert get(port, "/ready") == (200, '{"status": "healthy"}')
        status, body = get(port, "/health")
        assert status == 200 and '"healthy"' in body
        publish(url, ["no-metrics"])  # handling goes on without the metrics interceptor
        wait_for(lambda: len(handled(tmp_path / "handled")) >= 1, "the message handled")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()


def test_the_console_script_finds_a_module_in_the_current_directory(
    url: str, tmp_path: Path
) -> None:
    """``mmate run`` (the installed script, not ``python -m``) imports from the current
    directory, as ``python -m`` would."""
    here = tmp_path / "project"
    here.mkdir()
    (here / "my_inventory.py").write_text(
        "from tests.hosting.service_app import Inventory\n\nhandlers = Inventory()\n"
    )
    script = Path(sys.executable).with_name("mmate")
    run = Run(
        tmp_path / "run",
        ["my_inventory:handlers"],
        env_for(url, tmp_path),
        cwd=here,
        command=[str(script)],
    )
    try:
        run.wait_log(r"serving inventory-service")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()


def test_the_docs_example_app_runs(url: str, tmp_path: Path) -> None:
    """The ``mmate.App`` example of docs/running.md, hosted as the page says."""
    page = (Path(__file__).resolve().parents[2] / "docs/running.md").read_text()
    [code] = [block for block in page.split("```python\n")[1:] if "mmate.App(" in block]
    here = tmp_path / "project"
    here.mkdir()
    (here / "myservice.py").write_text(code.split("```")[0])
    run = Run(
        tmp_path / "run",
        ["myservice:app"],
        env_for(url, tmp_path, PYTHONUNBUFFERED="1"),
        cwd=here,
    )
    try:
        run.wait_log(r"serving inventory-service")
        product = f"DOC-{uuid.uuid4().hex[:6]}"
        publish(url, [product])
        run.wait_log(rf"{product}: \+1")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    lines = run.out_path.read_text().splitlines()
    assert lines == ["inventory-service connected", f"{product}: +1", "drained"]
