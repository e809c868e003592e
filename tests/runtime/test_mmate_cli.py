"""The ``mmate`` command (``mmate.cli:main``) against the broker: ``dlq list`` and ``dlq replay``,
exit codes, masked passwords, no tracebacks. Messages are dead-lettered by the broker itself (a
nack without requeue) and counted on both queues."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiormq
import pytest
from conftest import BROKER_URL
from mmate._operations.cli import main
from pamqp.commands import Basic

pytestmark = pytest.mark.broker


@dataclass
class Dlq:
    origin: str
    dlq: str
    ids: list[str]


async def _fill(d: Dlq, n: int) -> None:
    conn = await aiormq.connect(BROKER_URL)
    try:
        ch = await conn.channel()
        await ch.queue_declare(d.dlq, durable=True)
        await ch.queue_declare(
            d.origin,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": d.dlq},
        )
        for i in range(n):
            message_id = f"m{i}-{uuid.uuid4().hex[:6]}"
            await ch.basic_publish(
                json.dumps({"id": message_id, "type": "OrderCreatedEvent"}).encode(),
                routing_key=d.origin,
                properties=Basic.Properties(
                    message_id=message_id, message_type="OrderCreatedEvent"
                ),
            )
            got = await ch.basic_get(d.origin)
            assert got.delivery_tag is not None
            await ch.basic_nack(got.delivery_tag, requeue=False)
            d.ids.append(message_id)
            while (await ch.queue_declare(d.dlq, passive=True)).message_count != i + 1:
                await asyncio.sleep(0.005)  # dead-lettering is asynchronous
    finally:
        await conn.close()


async def _counts(d: Dlq) -> tuple[int, int]:
    conn = await aiormq.connect(BROKER_URL)
    try:
        ch = await conn.channel()
        origin = (await ch.queue_declare(d.origin, passive=True)).message_count
        dead = (await ch.queue_declare(d.dlq, passive=True)).message_count
        return int(origin or 0), int(dead or 0)
    finally:
        await conn.close()


async def _delete(d: Dlq) -> None:
    conn = await aiormq.connect(BROKER_URL)
    try:
        for q in (d.origin, d.dlq):
            ch = await conn.channel()
            await ch.queue_delete(q)
    finally:
        await conn.close()


@pytest.fixture
def dead() -> Iterator[Dlq]:
    s = uuid.uuid4().hex[:10]
    d = Dlq(f"t.{s}.orders", f"t.{s}.orders.dlq", [])
    asyncio.run(_fill(d, 5))
    yield d
    asyncio.run(_delete(d))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["dlq", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_list_prints_every_dead_letter_with_its_reason(
    dead: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "list", dead.dlq, "--url", BROKER_URL)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{dead.dlq}: 5 dead letters"
    assert lines[1].split()[:4] == ["#", "MESSAGE", "ID", "TYPE"]
    rows = [line.split() for line in lines[2:]]
    assert [r[1] for r in rows] == dead.ids  # in queue order
    assert all(r[2:6] == ["OrderCreatedEvent", "rejected", "1", dead.origin] for r in rows)
    assert asyncio.run(_counts(dead)) == (0, 5)  # listing took nothing away


def test_terminal_control_characters_in_dead_letters_are_shown_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dead letter's id, type and reason are untrusted: escape sequences in them (clear the
    screen, retitle the window) and bidirectional overrides (which reorder what the terminal
    shows) reach the operator's terminal as text, on list and replay."""
    s = uuid.uuid4().hex[:10]
    d = Dlq(f"t.{s}.orders", f"t.{s}.orders.dlq", [])

    async def fill() -> None:
        conn = await aiormq.connect(BROKER_URL)
        try:
            ch = await conn.channel()
            await ch.queue_declare(d.dlq, durable=True)
            await ch.queue_declare(d.origin, durable=True)
            await ch.basic_publish(
                b"{}",
                routing_key=d.dlq,
                properties=Basic.Properties(
                    message_id="id-\x1b[2J",
                    message_type="T\x1b]0;owned\x07\u202eexe.txt\u2066\u2028",
                    headers={"x-mmate-origin-queue": d.origin, "x-mmate-reason": "r\x9b31m"},
                ),
            )
        finally:
            await conn.close()

    asyncio.run(fill())
    try:
        code, out, _ = run(capsys, "list", d.dlq, "--url", BROKER_URL)
        assert code == 0 and "id-\\x1b[2J" in out and "T\\x1b]0;owned\\x07" in out
        assert "\\u202eexe.txt\\u2066\\u2028" in out and out.isascii()  # bidi, separators
        code, out, _ = run(capsys, "list", d.dlq, "--json", "--url", BROKER_URL)
        assert code == 0 and json.loads(out)["messages"][0]["messageId"] == "id-\x1b[2J"
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out)
        code, out, err = run(capsys, "replay", d.dlq, "--all", "--url", BROKER_URL)
        assert "id-\\x1b[2J" in out + err
        for text in (out, err):
            assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)
    finally:
        asyncio.run(_delete(d))


def test_list_json_with_a_limit(dead: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", dead.dlq, "--url", BROKER_URL, "--limit", "2", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["queue"] == dead.dlq and document["total"] == 5
    assert [m["messageId"] for m in document["messages"]] == dead.ids[:2]
    assert document["messages"][0]["reason"] == "rejected"
    assert document["messages"][0]["source"] == "broker"
    assert document["messages"][0]["originalQueue"] == dead.origin
    assert asyncio.run(_counts(dead)) == (0, 5)


def test_replay_by_id_then_all(dead: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    chosen = [dead.ids[1], dead.ids[3]]
    code, out, err = run(
        capsys, "replay", dead.dlq, "--url", BROKER_URL, "--id", chosen[0], "--id", chosen[1]
    )
    assert code == 0 and err == ""
    assert out.splitlines()[0] == f"{dead.dlq}: moved 2 of 5 examined messages"
    assert asyncio.run(_counts(dead)) == (2, 3)

    code, out, _ = run(capsys, "replay", dead.dlq, "--url", BROKER_URL, "--all", "--json")
    assert code == 0
    document = json.loads(out)
    rest = [i for i in dead.ids if i not in chosen]
    assert [m["messageId"] for m in document["moved"]] == rest
    assert document["skipped"] == [] and document["notFound"] == []
    assert asyncio.run(_counts(dead)) == (5, 0)


def test_replay_of_an_unknown_id_fails_and_moves_nothing(
    dead: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "replay", dead.dlq, "--url", BROKER_URL, "--id", "no-such-id")
    assert code == 1
    assert "not found no-such-id" in out
    assert err.startswith("mmate: error: 1 of the selected messages were not replayed")
    assert asyncio.run(_counts(dead)) == (0, 5)


def test_a_missing_queue_is_one_line_and_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    name = f"t.{uuid.uuid4().hex[:10]}.missing"
    for action in (["list", name], ["replay", name, "--all"]):
        code, out, err = run(capsys, *action, "--url", BROKER_URL)
        assert code == 1 and out == ""
        assert err == f"mmate: error: queue '{name}' does not exist\n"


def test_passwords_are_masked_from_url_and_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = "amqp://admin:s3cret-pw@127.0.0.1:1/"
    code, out, err = run(capsys, "list", "q", "--url", unreachable)
    assert code == 1 and "s3cret-pw" not in out + err
    assert "amqp://admin:****@127.0.0.1:1/" in err
    monkeypatch.setenv("MMATE_URL", "amqp://ops:env-pw-123@127.0.0.1:1/")
    code, out, err = run(capsys, "replay", "q", "--all")
    assert code == 1 and "env-pw-123" not in out + err and "ops:****@" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "replay", "q")[0] == 2  # neither --id nor --all
    assert run(capsys, "replay", "q", "--all", "--id", "x")[0] == 2
    assert run(capsys, "list", "q", "--limit", "-1")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert main([]) == 2
    capsys.readouterr()
    assert main(["dlq", "list", "--help"]) == 0
    assert "--limit" in capsys.readouterr().out


def test_the_command_runs_as_a_program(dead: Dlq) -> None:
    env = {**os.environ, "MMATE_URL": BROKER_URL}
    done = subprocess.run(
        [sys.executable, "-m", "mmate", "dlq", "list", dead.dlq, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["messages"]) == 5
    missing = subprocess.run(
        [sys.executable, "-m", "mmate", "dlq", "list", f"{dead.dlq}.nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"mmate: error: queue '{dead.dlq}.nope' does not exist"
