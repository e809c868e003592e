"""Promises of docs/running.md checked on a real ``mmate run`` process against RabbitMQ (a vhost of
this module's own): failed handlers settled during a drain, schedules stopped by the drain,
``--health-host``, ``--concurrency`` and ``MMATE_WORKERS``. The service is ``Gated`` of
service_app.py: its handlers wait for a gate file, so the tests decide what is in flight."""

from __future__ import annotations

import re
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
from hosting_support import (
    QUEUE,
    Run,
    consumers,
    counts,
    depth,
    free_port_pair,
    get,
    handled,
    publish,
    take,
    wait_for,
)

pytestmark = pytest.mark.broker

APP = "tests.hosting.service_app"
DLQ = f"{QUEUE}.dlq"
WAITS = [f"{QUEUE}.wait.{ms}" for ms in (500, 1000, 2000, 4000)]
ATTEMPT = "x-mmate-attempt"
REASON = "x-mmate-dead-letter-reason"


def _names(prefix: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}-{run}-{i}" for i in range(n)]


def _env(url: str, tmp: Path, **more: str) -> dict[str, str]:
    return {
        "MMATE_URL": url,
        "MMATE_HEALTH_PORT": "0",
        "HOSTING_LOG": str(tmp / "handled"),
        "HOSTING_EVENTS": str(tmp / "events"),
        "HOSTING_GATE": str(tmp / "gate"),
        **more,
    }


def _events(tmp: Path, kind: str) -> list[list[str]]:
    """The ``kind`` lines of ``HOSTING_EVENTS``, split (``start PRODUCT IN_FLIGHT``, ``tick T``)."""
    path = tmp / "events"
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [line[1:] for line in lines if line and line[0] == kind]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _product(body: bytes, products: list[str]) -> str:
    found = [p for p in products if re.search(rb'"' + re.escape(p.encode()) + rb'"', body)]
    assert len(found) == 1, body
    return found[0]


@pytest.mark.parametrize("concurrency", [50, 4])
def test_failures_during_the_drain_are_moved_and_acked(
    url: str, tmp_path: Path, concurrency: int
) -> None:
    """SIGTERM while the handlers of 15 delivered messages run (all 15; or 4, the other 11
    buffered, waiting for a handler); then 5 fail transiently, 5 permanently, 5 succeed. The
    drain handles the buffered ones too (docs/runtime/consuming.md, graceful stop) and settles
    every message as usual: in its wait queue (back in the queue after the wait, attempt 2), in
    the dead-letter queue, or handled, exactly once; none is left unacked (it would be back in
    the queue redelivered, without an attempt header, besides its moved copy)."""
    transient, permanent, fine = _names("transient", 5), _names("permanent", 5), _names("ok", 5)
    every = transient + permanent + fine
    args = [f"{APP}:gated", "--drain-timeout", "30", "--concurrency", str(concurrency)]
    run = Run(tmp_path / "run", args, _env(url, tmp_path))
    try:
        run.wait_log(r"serving inventory-service")
        publish(url, every)
        running = min(concurrency, 15)
        wait_for(lambda: len(_events(tmp_path, "start")) == running, f"{running} running")
        wait_for(lambda: depth(url) == 0, "all 15 delivered (prefetch 50)")
        run.signal(signal.SIGTERM)
        run.wait_log(r"draining")
        assert len(_events(tmp_path, "start")) == running
        (tmp_path / "gate").touch()  # the handlers finish (and fail) during the drain
        assert run.wait() == 0, run.output
    finally:
        run.stop()
    ran = {product for product, _n in _events(tmp_path, "start")}
    assert ran == set(every)  # the 11 buffered with concurrency 4 as well
    assert sorted(p for _pid, p in handled(tmp_path / "handled")) == sorted(fine)

    dlq = take(url, DLQ)
    assert sorted(_product(body, permanent) for body, _h, _r in dlq) == sorted(permanent)
    assert [_text(headers.get(REASON)) for _b, headers, _r in dlq] == ["permanent-error"] * 5

    # the retried messages wait (0.5 s to 1 s), then the wait queues dead-letter them back
    wait_for(lambda: sum(counts(url, WAITS).values()) == 0, "the wait queues emptied")
    wait_for(lambda: depth(url) >= 5, "the 5 retried messages back in the queue")
    queued = take(url, QUEUE)
    assert len(queued) == 5  # each once: no moved copy left unacked besides
    back = {_product(body, every): (headers.get(ATTEMPT), again) for body, headers, again in queued}
    assert back == {product: (2, False) for product in transient}
    assert counts(url, [QUEUE, DLQ, *WAITS]) == dict.fromkeys([QUEUE, DLQ, *WAITS], 0)
    assert "stopped cleanly: 5 handled, 10 failed" in run.output
    assert "(5 retried, 5 dead-lettered, 0 rejected, 0 requeued)" in run.output


def test_schedules_do_not_fire_once_the_drain_started(url: str, tmp_path: Path) -> None:
    """A schedule ticking every second; SIGTERM while a handler holds the drain open for 2.5 s:
    no tick due after the signal is published (its message factory is never called)."""
    held = _names("hold", 1)
    run = Run(tmp_path / "run", [f"{APP}:gated_scheduled"], _env(url, tmp_path))
    try:
        run.wait_log(r"serving inventory-service")
        wait_for(lambda: len(_events(tmp_path, "tick")) >= 1, "the schedule fires")
        publish(url, held)
        wait_for(lambda: [held[0]] in [s[:1] for s in _events(tmp_path, "start")], "held")
        run.signal(signal.SIGTERM)
        run.wait_log(r"draining")
        signalled = time.time()
        time.sleep(2.5)  # the window in which a schedule still running would tick twice more
        ticks_during_drain = [float(t) for [t] in _events(tmp_path, "tick")]
        (tmp_path / "gate").touch()
        assert run.wait() == 0, run.output
    finally:
        run.stop()
    late = [t for t in ticks_during_drain if t > signalled + 0.2]
    assert late == [], f"ticks published during the drain: {late} (signal at {signalled})"
    assert [held[0]] == [p for _pid, p in handled(tmp_path / "handled") if p.startswith("hold")]
    take(url, QUEUE)  # ticks published before the signal and not handled


def _other_loopback() -> str:
    """127.0.0.2 where it can be bound (Linux routes all of 127/8 to lo), else 0.0.0.0."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return "0.0.0.0"
    return "127.0.0.2"


@pytest.mark.parametrize("source", ["flag", "environment"])
def test_health_host_binds_the_given_address(url: str, tmp_path: Path, source: str) -> None:
    host = _other_loopback()
    args, env = [f"{APP}:gated"], _env(url, tmp_path)
    if source == "flag":
        args += ["--health-host", host]
    else:
        env["MMATE_HEALTH_HOST"] = host
    run = Run(tmp_path / "run", args, env)
    try:
        port = run.health_port(host)
        run.wait_log(r"serving inventory-service")
        probe = "127.0.0.2" if host == "127.0.0.2" else "127.0.0.1"
        assert get(port, "/ready", host=probe) == (200, '{"status": "healthy"}')
        if host == "127.0.0.2":  # bound to that address only, not to the default 127.0.0.1
            with pytest.raises(OSError):
                get(port, "/live")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.output
    finally:
        run.stop()


def test_an_ipv6_health_host_is_logged_as_a_url(url: str, tmp_path: Path) -> None:
    """``--health-host ::1``: bound there, and the log line is a URL one can open
    (``http://[::1]:PORT/``, the address in brackets)."""
    run = Run(tmp_path / "run", [f"{APP}:gated", "--health-host", "::1"], _env(url, tmp_path))
    try:
        port = run.health_port("[::1]")
        run.wait_log(r"serving inventory-service")
        assert get(port, "/ready", host="[::1]") == (200, '{"status": "healthy"}')
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.output
    finally:
        run.stop()


@pytest.mark.parametrize("source", ["flag", "environment"])
def test_concurrency_limits_the_handlers_running_at_once(
    url: str, tmp_path: Path, source: str
) -> None:
    """The App says concurrency 50 and prefetch 50; configured 3, at most 3 handlers run at
    once even with all 12 messages delivered to the consumer."""
    sent = _names("ok", 12)
    args, env = [f"{APP}:gated"], _env(url, tmp_path, HOSTING_DELAY="0.1")
    if source == "flag":
        args += ["--concurrency", "3"]
    else:
        env["MMATE_CONCURRENCY"] = "3"
    run = Run(tmp_path / "run", args, env)
    try:
        run.wait_log(r"consuming inventory-service-queue \(prefetch 50, concurrency 3,")
        publish(url, sent)
        wait_for(lambda: len(_events(tmp_path, "start")) >= 3, "3 handlers running")
        wait_for(lambda: depth(url) == 0, "all 12 delivered (prefetch 50)")
        started_while_gated = len(_events(tmp_path, "start"))
        (tmp_path / "gate").touch()
        wait_for(lambda: len(handled(tmp_path / "handled")) == 12, "12 handled")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.output
    finally:
        run.stop()
    assert started_while_gated == 3
    in_flight = [int(n) for _product, n in _events(tmp_path, "start")]
    assert max(in_flight) == 3 and len(in_flight) == 12


def test_workers_from_the_environment(url: str, tmp_path: Path) -> None:
    """MMATE_WORKERS=2 (no --workers): a supervisor and two workers, each consuming on a
    connection of its own (two consumers at the broker) with its own health port."""
    port = free_port_pair()
    env = _env(url, tmp_path, MMATE_WORKERS="2")
    run = Run(tmp_path / "run", [f"{APP}:gated", "--health-port", str(port)], env)
    try:
        started = {int(m[2]) for m in run.wait_log(r"worker (\d) started \(pid (\d+)\)", 2)}
        serving = {int(m[1]) for m in run.wait_log(r"serving inventory-service \(pid (\d+)\)", 2)}
        assert len(started) == 2 and serving == started and run.process.pid not in started
        wait_for(lambda: consumers(url) == 2, "two consumers of the queue")
        found = sorted(int(m[1]) for m in run.wait_log(r"health on http://127\.0\.0\.1:(\d+)/", 2))
        assert found == [port, port + 1]
        for each in found:
            assert get(each, "/ready") == (200, '{"status": "healthy"}')
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.output
    finally:
        run.stop()
    assert run.output.count("stopped cleanly") == 2
    assert len(re.findall(r"worker \d started", run.output)) == 2  # none died and came back
