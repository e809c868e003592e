"""``mmate run`` as a subprocess on inventory-service of the example system (real RabbitMQ, a
vhost of this module's own): messages handled, graceful and forced stops and their exit codes,
health and metrics, workers replaced, configuration precedence and errors, reload."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hosting_support import ROOT, Run, depth, free_port_pair, get, handled, publish, wait_for

pytestmark = pytest.mark.broker

APP = "tests.hosting.service_app"


def products(n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"P-{run}-{i}" for i in range(n)]


def env_for(url: str, log: Path, **more: str) -> dict[str, str]:
    return {"MMATE_URL": url, "HOSTING_LOG": str(log), "MMATE_HEALTH_PORT": "0", **more}


def test_handles_messages_and_answers_health(url: str, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    run = Run(tmp_path / "run", [f"{APP}:handlers"], env_for(url, log))
    try:
        port = run.health_port()
        run.wait_log(r"serving inventory-service")  # the health port opens before serving
        sent = products(20)
        publish(url, sent)
        wait_for(lambda: len(handled(log)) >= 20, "20 messages handled")
        assert {product for _pid, product in handled(log)} == set(sent)
        assert get(port, "/live") == (200, '{"status": "alive"}')
        assert get(port, "/ready") == (200, '{"status": "healthy"}')
        status, body = get(port, "/health")
        assert status == 200 and '"healthy"' in body
        status, body = get(port, "/metrics")
        assert status == 200
        assert (
            "mmate_messages_consumed_total{" in body and 'queue="inventory-service-queue"' in body
        )
        assert get(port, "/nothing")[0] == 404
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    assert ":guest@" not in run.output  # the password is masked everywhere
    assert "stopped cleanly" in run.output
    assert re.search(r"garbage collector: \d+ objects alive after start-up frozen", run.output)


def _has(log: Path, count: int) -> Callable[[], bool]:
    return lambda: len(handled(log)) >= count


def test_factory_and_app_targets(url: str, tmp_path: Path) -> None:
    for attr in ("make", "app", "ordered", "routes"):
        log = tmp_path / f"handled-{attr}"
        run = Run(tmp_path / attr, [f"{APP}:{attr}"], env_for(url, log))
        try:
            run.wait_log(r"serving inventory-service")
            sent = products(3)
            publish(url, sent)
            wait_for(_has(log, 3), f"{attr}: 3 messages handled")
            run.signal(signal.SIGTERM)
            assert run.wait() == 0
        finally:
            run.stop()


def test_sigterm_mid_stream_loses_nothing(url: str, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    sent = products(500)
    publish(url, sent)
    run = Run(
        tmp_path / "run",
        [f"{APP}:app", "--drain-timeout", "30"],
        env_for(url, log, HOSTING_DELAY="0.05"),
    )
    try:
        wait_for(lambda: len(handled(log)) >= 50, "50 messages handled")
        run.signal(signal.SIGTERM)
        assert run.wait(timeout=30 + 15) == 0
    finally:
        run.stop()
    done = {product for _pid, product in handled(log)}
    assert done < set(sent)  # stopped in the middle
    assert len(done) + depth(url) == 500  # every message handled once or still queued
    depth_left = depth(url)
    # drain the rest so the next test starts with an empty queue
    rest = Run(tmp_path / "rest", [f"{APP}:app"], env_for(url, log))
    try:
        wait_for(lambda: len(handled(log)) >= len(done) + depth_left, "the rest handled")
        rest.signal(signal.SIGTERM)
        assert rest.wait() == 0
    finally:
        rest.stop()
    assert {product for _pid, product in handled(log)} == set(sent)


def test_second_signal_stops_at_once(url: str, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    sent = products(10)
    publish(url, sent)
    run = Run(
        tmp_path / "run",
        [f"{APP}:app", "--drain-timeout", "120"],
        env_for(url, log, HOSTING_DELAY="600"),
    )
    try:
        run.wait_log(r"serving inventory-service")
        run.signal(signal.SIGTERM)
        run.wait_log(r"draining")
        run.signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 4
    finally:
        run.stop()
    assert "stopping at once" in run.output
    assert handled(log) == []
    wait_for(lambda: depth(url) == 10, "the 10 unsettled messages back in the queue")
    _drain(url, tmp_path, 10)


def test_drain_deadline_passed(url: str, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    publish(url, products(3))
    run = Run(
        tmp_path / "run",
        [f"{APP}:app", "--drain-timeout", "0.5"],
        env_for(url, log, HOSTING_DELAY="600"),
    )
    try:
        run.wait_log(r"serving inventory-service")
        run.signal(signal.SIGTERM)
        assert run.wait() == 3
    finally:
        run.stop()
    assert "drain deadline" in run.output
    wait_for(lambda: depth(url) == 3, "the 3 unfinished messages back in the queue")
    _drain(url, tmp_path, 3)


def _drain(url: str, tmp_path: Path, count: int) -> None:
    log = tmp_path / "drained"
    run = Run(tmp_path / "drain", [f"{APP}:app"], env_for(url, log))
    try:
        wait_for(lambda: len(handled(log)) >= count, f"{count} left-over messages handled")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()


def test_workers_replace_a_killed_worker(url: str, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    run = Run(tmp_path / "run", [f"{APP}:app", "--workers", "2"], env_for(url, log))
    try:
        started = run.wait_log(r"worker (\d) started \(pid (\d+)\)", 2)
        run.wait_log(r"serving inventory-service", 2)
        victim = int(started[0][2])
        os.kill(victim, signal.SIGKILL)
        run.wait_log(r"worker (\d) started \(pid (\d+)\)", 3)
        pids = {int(m[2]) for m in run.wait_log(r"worker (\d) started \(pid (\d+)\)", 3)}
        assert len(pids) == 3 and victim in pids
        run.wait_log(r"serving inventory-service", 3)
        sent = products(40)
        publish(url, sent)
        wait_for(lambda: len(handled(log)) >= 40, "40 messages handled by the workers")
        assert {product for _pid, product in handled(log)} == set(sent)
        assert {pid for pid, _product in handled(log)} <= pids - {victim}
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    assert "died with -9; restarting" in run.output


def _prefetch_used(url: str, tmp_path: Path, name: str, args: list[str], **env: str) -> str:
    return _run_once(url, tmp_path, name, args, **env)[0]


def _run_once(url: str, tmp_path: Path, name: str, args: list[str], **env: str) -> tuple[str, str]:
    """The prefetch a run of the example app consumed with, and its output."""
    run = Run(
        tmp_path / name,
        [f"{APP}:app", "--health-port", "off", *args],
        {"MMATE_URL": url, "HOSTING_LOG": str(tmp_path / "x"), **env},
    )
    try:
        found = run.wait_log(r"consuming inventory-service-queue \(prefetch (\d+)")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    return found[0][1], run.output


def test_configuration_precedence(url: str, tmp_path: Path) -> None:
    file = tmp_path / "mmate.toml"
    file.write_text("[mmate]\nprefetch = 7\n")
    config = ["--config", str(file)]
    assert _prefetch_used(url, tmp_path, "app", []) == "50"  # App(prefetch=50)
    assert _prefetch_used(url, tmp_path, "file", config) == "7"
    assert _prefetch_used(url, tmp_path, "env", config, MMATE_PREFETCH="8") == "8"
    flag = [*config, "--prefetch", "9", "--gc-freeze", "off"]
    prefetch, output = _run_once(url, tmp_path, "flag", flag, MMATE_PREFETCH="8")
    assert prefetch == "9" and "objects alive after start-up frozen" not in output


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ([], {"MMATE_PREFETCH": "lots"}, "MMATE_PREFETCH"),
        ([], {"MMATE_LOG_FORMAT": "xml"}, "MMATE_LOG_FORMAT"),
        (["--health-port", "99999"], {}, "--health-port"),
        ([], {"MMATE_URL": "http://user:s3cret@host/"}, "MMATE_URL"),
        (["--config", "missing.toml"], {}, "missing.toml"),
    ],
)
def test_invalid_configuration(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    run = Run(tmp_path, [f"{APP}:app", *args], env)
    assert run.wait() == 2
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], run.output
    assert "s3cret" not in run.output and "Traceback" not in run.output
    if env == {"MMATE_PREFETCH": "lots"}:  # the line docs/running.md shows
        assert lines[0] == (
            "mmate run: error: environment variable MMATE_PREFETCH: "
            "write a whole number of at least 1, not 'lots'"
        )


def test_startup_failure_is_one_masked_line(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        [f"{APP}:app", "--url", "amqp://user:s3cret@127.0.0.1:1/"],
        {"HOSTING_LOG": str(tmp_path / "x")},
    )
    assert run.wait() == 1
    assert "s3cret" not in run.output and "Traceback" not in run.output
    assert "mmate run: error: cannot connect" in run.output
    missing = Run(tmp_path / "missing", ["tests.hosting.no_such_module:app"], {})
    assert missing.wait() == 1
    assert "cannot import tests.hosting.no_such_module" in missing.output


def test_reload_restarts_on_change(url: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    module = source / "reloaded_app.py"
    module.write_text((ROOT / "tests/hosting/service_app.py").read_text())
    run = Run(
        tmp_path / "run",
        ["reloaded_app:app", "--reload"],
        env_for(url, tmp_path / "x", WATCHFILES_FORCE_POLLING="1"),
        cwd=source,
    )
    try:
        first = run.wait_log(r"serving inventory-service \(pid (\d+)\)")[0][1]
        original = module.read_text()
        edits, edited = 0, 0.0

        def restarted() -> bool:
            # The watcher may take its first look at the tree after this write on a loaded box:
            # change the file again each second until it reports a change.
            nonlocal edits, edited
            if "changed; restarting" in run.output:
                return True  # seen: no more edits (each would restart it again)
            if edits == 0 or time.monotonic() - edited > 1.0:
                edits += 1
                module.write_text(original + f"\n# changed {edits}\n")
                edited = time.monotonic()
            return False

        wait_for(restarted, "the watcher seeing the module change")
        second = run.wait_log(r"serving inventory-service \(pid (\d+)\)", 2)[1][1]
        assert first != second
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    # the first child drained before the restart, the second on SIGTERM
    assert run.output.count("stopped cleanly") == 2


def test_schedule_json_logs_and_service_name(url: str, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    run = Run(
        tmp_path / "run",
        [f"{APP}:scheduled", "--log-format", "json"],
        env_for(url, log, MMATE_SERVICE="inventory-host"),
    )
    try:
        wait_for(
            lambda: sum(p.startswith("tick-") for _pid, p in handled(log)) >= 2,
            "two scheduled ticks handled",
        )
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    records = [json.loads(line) for line in run.err_path.read_text().splitlines()]
    assert any(r["message"].startswith("serving inventory-host") for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


def test_workers_give_up_when_startup_keeps_failing(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        ["tests.hosting.no_such_module:app", "--workers", "2", "--health-port", "off"],
        {},
    )
    assert run.wait() == 1
    assert "times at startup (last exit 1); giving up" in run.output


def test_ctrl_c_in_a_terminal_drains_the_workers_once(url: str, tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole process group: the workers must see it once (from
    the supervisor), not twice (which would stop them at once with 4)."""
    run = Run(
        tmp_path,
        [f"{APP}:app", "--workers", "2"],
        env_for(url, tmp_path / "x"),
        own_group=True,
    )
    try:
        run.wait_log(r"serving inventory-service", 2)
        os.killpg(run.process.pid, signal.SIGINT)
        assert run.wait() == 0
    finally:
        run.stop()
    assert run.output.count("stopped cleanly") == 2


def test_workers_drain_when_the_supervisor_is_killed(url: str, tmp_path: Path) -> None:
    run = Run(tmp_path, [f"{APP}:app", "--workers", "2"], env_for(url, tmp_path / "x"))
    try:
        pids = [int(m[1]) for m in run.wait_log(r"serving inventory-service \(pid (\d+)\)", 2)]
        run.process.kill()
        # the workers outlive the supervisor's process and keep writing to its output
        wait_for(lambda: run.output.count("stopped cleanly") >= 2, "both workers drained")
        wait_for(lambda: not any(_alive(pid) for pid in pids), "both workers gone")
    finally:
        run.stop()
    assert run.output.count("is gone: draining") == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_worker_serves_its_own_health_port(url: str, tmp_path: Path) -> None:
    port = free_port_pair()
    env = env_for(url, tmp_path / "x")
    run = Run(tmp_path, [f"{APP}:app", "--workers", "2", "--health-port", str(port)], env)
    try:
        run.wait_log(r"serving inventory-service", 2)
        found = sorted(int(m[1]) for m in run.wait_log(r"health on http://127\.0\.0\.1:(\d+)/", 2))
        assert found == [port, port + 1]  # P and P+1; the supervisor serves none
        for each in found:
            assert get(each, "/ready") == (200, '{"status": "healthy"}')
            assert get(each, "/metrics")[0] == 200  # each worker its own metrics
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        run.stop()
    assert len(re.findall(r"health on http://", run.output)) == 2


def test_the_supervisor_exits_with_the_highest_worker_code(url: str, tmp_path: Path) -> None:
    """One worker holds a message past the drain deadline (3), the other drains cleanly (0)."""
    publish(url, products(1))
    run = Run(
        tmp_path,
        [f"{APP}:app", "--workers", "2", "--drain-timeout", "0.5"],
        env_for(url, tmp_path / "x", HOSTING_DELAY="600"),
    )
    try:
        run.wait_log(r"serving inventory-service", 2)
        wait_for(lambda: depth(url) == 0, "the message delivered to a worker")
        run.signal(signal.SIGTERM)
        assert run.wait() == 3
    finally:
        run.stop()
    assert run.output.count("drain deadline") == 1 and run.output.count("stopped cleanly") == 1
    wait_for(lambda: depth(url) == 1, "the unfinished message back in the queue")
    _drain(url, tmp_path, 1)
