"""``mmate topology verify|plan|apply`` against the broker, each test in a vhost of its own.

The management plugin is enabled first (``rabbitmq-plugins enable``, idempotent). The AMQP-only
fallback is forced with a management URL nothing listens on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiormq
import pytest
from mmate._operations.cli import main

REPO = Path(__file__).resolve().parent.parent.parent
SPECS = str(REPO / "specs")
NOWHERE = "http://127.0.0.1:9/"

pytestmark = pytest.mark.broker


def ctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, timeout=120)


@pytest.fixture(scope="module", autouse=True)
def management() -> None:
    subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_management"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen("http://127.0.0.1:15672/", timeout=5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the management API did not come up"
            time.sleep(1)


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"mmate-test-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        ctl("delete_vhost", name, check=False)


def url_of(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


@dataclass
class Run:
    code: int
    out: str
    err: str


def mmate(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = main(["topology", *args])
    captured = capsys.readouterr()
    assert "guest:guest" not in captured.out + captured.err
    assert "Traceback" not in captured.err
    return Run(code, captured.out, captured.err)


def names(vhost: str, what: str) -> set[str]:
    done = subprocess.run(
        ["rabbitmqctl", "-q", what, "-p", vhost, "name", "--formatter", "json"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return {row["name"] for row in json.loads(done.stdout or "[]")}


def test_verify_plan_apply_on_an_empty_vhost(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url_of(vhost)
    run = mmate(capsys, "verify", "--url", url, SPECS)
    assert run.code == 1
    assert (
        "missing: queue order-service-queue.wait.1000 "
        "(wait queue (1000 ms) of order-service-queue)\n" in run.out
    )
    assert "missing: exchange mmate.delay.27 (delay cascade)\n" in run.out
    assert (
        f"amqp://guest:****@127.0.0.1:5672/{vhost} (read through the management API)\n" in run.out
    )

    run = mmate(capsys, "plan", "--url", url, SPECS)
    assert run.code == 0
    assert "would create: queue inventory-service-queue (queue of the specs)\n" in run.out
    assert names(vhost, "list_queues") == set()  # plan declares nothing

    run = mmate(capsys, "apply", "--url", url, SPECS)
    assert run.code == 0, run.err
    assert "declared queue payment-service-queue.dlq\n" in run.out
    assert "declared the delay cascade (through the client's delay service)\n" in run.out

    run = mmate(capsys, "verify", "--url", url, SPECS)
    assert run.code == 0, run.out
    assert run.out.endswith(
        "33 exchanges, 50 queues, 63 bindings match; 0 missing, 0 different, 0 extra\n"
    )
    assert mmate(capsys, "apply", "--url", url, SPECS).out == "nothing to declare\n"


async def _conflicting(vhost: str) -> None:
    connection = await aiormq.connect(url_of(vhost))
    try:
        channel = await connection.channel()
        await channel.queue_declare(
            "payment-service-queue", durable=True, arguments={"x-max-length": 5}
        )
        await channel.queue_declare("leftover-queue", durable=True)
        for _ in range(3):
            await channel.basic_publish(b"{}", routing_key="leftover-queue")
        await channel.exchange_declare("mmate.banking", exchange_type="direct", durable=True)
    finally:
        await connection.close()


def test_different_entities_are_reported_and_apply_refuses(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_conflicting(vhost))
    url = url_of(vhost)
    run = mmate(capsys, "verify", "--url", url, SPECS)
    assert run.code == 1
    assert (
        "different (a declare would fail with 406 PRECONDITION_FAILED): "
        "queue payment-service-queue (queue of the specs): "
        "x-dead-letter-exchange: broker unset, specs ''; "
        "x-dead-letter-routing-key: broker unset, specs 'payment-service-queue.dlq'; "
        "x-max-length: broker 5, specs 100000\n"
    ) in run.out
    assert (
        "different (a declare would fail with 406 PRECONDITION_FAILED): exchange mmate.banking "
        "(exchange of the specs): type: broker direct, specs topic\n"
    ) in run.out
    deadline = time.monotonic() + 30  # the broker refreshes queue statistics every few seconds
    while (
        "extra (not in the specs): queue leftover-queue (classic queue): 3 messages\n"
        not in run.out
    ):
        assert time.monotonic() < deadline, run.out
        time.sleep(1)
        run = mmate(capsys, "verify", "--url", url, SPECS)

    run = mmate(capsys, "plan", "--url", url, SPECS)
    assert run.code == 1
    assert "would refuse (406 PRECONDITION_FAILED): queue payment-service-queue" in run.out
    assert "would create: queue order-service-queue (queue of the specs)\n" in run.out

    run = mmate(capsys, "apply", "--url", url, SPECS)
    assert run.code == 1
    assert "mmate: refusing: queue payment-service-queue exists with other settings" in run.err
    assert "mmate: apply declared nothing: 2 entities would be refused" in run.err
    assert "order-service-queue" not in names(vhost, "list_queues")


def test_amqp_fallback_checks_existence_and_says_what_it_could_not_compare(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url_of(vhost)
    run = mmate(capsys, "verify", "--url", url, "--management-url", NOWHERE, SPECS)
    assert run.code == 1
    assert "cannot be reached" in run.err and "checking existence over AMQP only" in run.err
    assert "missing: queue banking-service-queue (queue of the specs)\n" in run.out
    assert "(read through the AMQP passive declares)" in run.out

    run = mmate(capsys, "apply", "--url", url, "--management-url", NOWHERE, SPECS)
    assert run.code == 0, run.err
    assert "not compared: whether the 63 bindings exist\n" in run.out

    run = mmate(capsys, "verify", "--url", url, "--management-url", NOWHERE, SPECS)
    assert run.code == 0
    assert "exists (not compared): queue banking-service-queue (queue of the specs)\n" in run.out
    assert (
        "not compared: extra entities on the broker (listing them needs the management API)\n"
        in run.out
    )
    # the management API agrees that the AMQP-only apply declared everything, bindings included
    run = mmate(capsys, "verify", "--url", url, SPECS)
    assert run.code == 0 and "0 missing, 0 different, 0 extra" in run.out


async def _declare_queue(vhost: str, name: str) -> None:
    connection = await aiormq.connect(url_of(vhost))
    try:
        await (await connection.channel()).queue_declare(name, durable=True)
    finally:
        await connection.close()


def test_extras_fail_only_under_strict(vhost: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = url_of(vhost)
    assert mmate(capsys, "apply", "--url", url, "--no-delay-cascade", SPECS).code == 0
    asyncio.run(_declare_queue(vhost, "stray"))
    run = mmate(capsys, "verify", "--url", url, "--no-delay-cascade", SPECS)
    assert run.code == 0 and "extra (not in the specs): queue stray" in run.out
    assert mmate(capsys, "verify", "--url", url, "--no-delay-cascade", "--strict", SPECS).code == 1
    run = mmate(capsys, "verify", "--url", url, "--no-delay-cascade", "--json", SPECS)
    document = json.loads(run.out)
    assert document["source"] == "management API"
    assert {"kind": "queue", "name": "stray", "status": "extra"}.items() <= next(
        i for i in document["items"] if i["name"] == "stray"
    ).items()


def test_bad_specs_and_an_unreachable_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "specs"
    bad.mkdir()
    (bad / "a.yaml").write_text('version: "1.0"\nmessages:\n  A:\n    kind: nope\n')
    run = mmate(capsys, "verify", "--url", url_of("x"), str(bad))
    assert run.code == 1 and run.err.endswith("has errors; nothing compared\n")
    run = mmate(
        capsys,
        "verify",
        "--url",
        "amqp://guest:guest@127.0.0.1:1/",
        "--management-url",
        NOWHERE,
        SPECS,
    )
    assert run.code == 1
    assert run.err.splitlines()[-1].startswith("mmate: error: ")
    assert "guest:****@127.0.0.1:1" in run.err or "127.0.0.1" in run.err


def test_the_mmate_command_says_when_the_generator_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mmate_gen.live.command", None)
    assert main(["topology", "verify", SPECS]) == 2
    assert (
        capsys.readouterr().err == "mmate topology needs the generator: pip install 'mmate[gen]'\n"
    )
