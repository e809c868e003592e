"""``mmate-gen export definitions``: the file RabbitMQ imports, and what the runtime then finds.

The broker test imports the file into a fresh vhost, then declares every service topology of the
specs (and the delay cascade) through ``mmate.Client``: nothing new may appear and nothing may be
refused (406). A second fresh vhost, declared into without the import, shows that the declares
would have created every one of those entities, so the first comparison can fail.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import mmate
import pytest
from broker_snapshot import Snapshot, snapshot
from repo_paths import REPO

from mmate_gen.broker.wanted import wanted_entities
from mmate_gen.cli import main
from mmate_gen.loader import load_specs
from tests.runtime.broker_ctl import run_ctl, vhost_url

SPECS = REPO / "specs"


def _export(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    out = tmp_path / "definitions.json"
    code = main(["export", "definitions", str(SPECS), "--out", str(out), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document: dict[str, object] = json.loads(out.read_text())
    return document


def test_every_entry_carries_the_vhost_and_the_cascade_is_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _export(tmp_path, capsys, "--vhost", "shop")
    assert sorted(document) == ["bindings", "exchanges", "queues"]
    entries = [e for key in ("bindings", "exchanges", "queues") for e in document[key]]  # type: ignore[attr-defined]
    assert {e["vhost"] for e in entries} == {"shop"}
    queues = {q["name"]: q for q in document["queues"]}  # type: ignore[attr-defined]
    exchanges = {e["name"] for e in document["exchanges"]}  # type: ignore[attr-defined]
    cascade_queues = [n for n in queues if n.startswith("mmate.delay.")]
    cascade_exchanges = [n for n in exchanges if n.startswith("mmate.delay.")]
    assert len(cascade_queues) + len(cascade_exchanges) == 59  # 30 queues, 29 exchanges
    assert queues["inventory-service-queue.wait.500"]["arguments"] == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "inventory-service-queue",
        "x-dead-letter-strategy": "at-least-once",
        "x-message-ttl": 500,
        "x-overflow": "reject-publish",
        "x-queue-leader-locator": "balanced",  # as a client with default settings declares it
        "x-queue-type": "quorum",
    }
    assert "banking-service-queue.dlq" in queues
    # unused built-in exchanges are not needed; the ones the specs use are
    assert "mmate.contracts" not in exchanges and "mmate.banking" in exchanges
    to_exchanges = [b for b in document["bindings"] if b["destination_type"] == "exchange"]  # type: ignore[attr-defined]
    assert len(to_exchanges) == 28


def test_without_the_cascade_and_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = (tmp_path / "a.json", tmp_path / "b.json")
    for out in first:
        assert main(["export", "definitions", str(SPECS), "--out", str(out)]) == 0
    assert first[0].read_bytes() == first[1].read_bytes()
    document = _export(tmp_path, capsys, "--no-delay-cascade")
    names = [q["name"] for q in document["queues"]]  # type: ignore[attr-defined]
    assert names == sorted(names) and not [n for n in names if n.startswith("mmate.delay")]


def _fresh_vhost() -> str:
    name = f"mmate-test-{uuid.uuid4().hex[:8]}"
    run_ctl("add_vhost", name)
    run_ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name


@pytest.fixture
def two_vhosts() -> Iterator[tuple[str, str]]:
    made: list[str] = []
    try:
        made.append(_fresh_vhost())
        made.append(_fresh_vhost())
        yield made[0], made[1]
    finally:
        for name in made:
            run_ctl("delete_vhost", name, check=False)


async def _declare_everything(vhost: str) -> None:
    from generated import topology

    async with mmate.Client(vhost_url(vhost), service="definitions-test") as client:
        for service in topology.SERVICES.values():
            await client.declare(service)  # a 406 raises PreconditionFailed and fails the test
        await client.delays.ensure()  # the cascade, as a client's first delay declares it


def _wait_for_import(vhost: str, queues: int, bindings: int) -> Snapshot:
    deadline = time.monotonic() + 60
    while True:
        now = snapshot(vhost)
        named = [b for b in now["bindings"] if b[0] != ""]  # not the default exchange's
        if len(now["queues"]) == queues and len(named) == bindings:
            return now
        assert time.monotonic() < deadline, f"the import did not finish: {now}"
        time.sleep(0.5)


@pytest.mark.broker
def test_import_then_declare_changes_nothing(tmp_path: Path, two_vhosts: tuple[str, str]) -> None:
    imported, empty = two_vhosts
    out = tmp_path / "definitions.json"
    assert main(["export", "definitions", str(SPECS), "--vhost", imported, "--out", str(out)]) == 0
    # from stdin: the broker's user may not read the test's temporary directory
    subprocess.run(
        ["rabbitmqctl", "-q", "import_definitions"],
        input=out.read_bytes(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    spec = load_specs(SPECS).spec
    assert spec is not None
    wanted = wanted_entities(spec)
    before = _wait_for_import(imported, len(wanted.queues), len(wanted.bindings))

    asyncio.run(_declare_everything(imported))
    after = snapshot(imported)
    assert after == before

    # the same declares into an empty vhost create exactly what the import had created
    asyncio.run(_declare_everything(empty))
    declared = snapshot(empty)
    assert [q[0] for q in declared["queues"]] == [q[0] for q in before["queues"]]
    assert [e[0] for e in declared["exchanges"]] == [e[0] for e in before["exchanges"]]
    assert declared["bindings"] == before["bindings"]
    assert declared["queues"] == before["queues"]
