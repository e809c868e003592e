"""``mmate-gen export asyncapi``: the document of specs/ passes the official AsyncAPI parser
(``@asyncapi/parser``, installed into .tools/ by ``make tools``) with no error and no warning, in
YAML and in JSON, and says what the specs say."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_paths import REPO

from mmate_gen.cli import main

SPECS = REPO / "specs"
SCRIPT = Path(__file__).parent / "asyncapi_parse.mjs"
NODE_MODULES = Path(os.environ.get("MMATE_NODE_MODULES", REPO / ".tools" / "node_modules"))


def diagnostics(document: Path) -> list[dict[str, str]]:
    if not (NODE_MODULES / "@asyncapi" / "parser").is_dir():
        pytest.fail(f"@asyncapi/parser is not installed in {NODE_MODULES}; run `make tools`")
    done = subprocess.run(
        ["node", str(SCRIPT), str(NODE_MODULES), str(document)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found: list[dict[str, str]] = json.loads(done.stdout)
    return found


def problems(document: Path) -> list[dict[str, str]]:
    return [d for d in diagnostics(document) if d["severity"] in ("error", "warning")]


def export(tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    assert main(["export", "asyncapi", str(SPECS), "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = export(tmp_path_factory.mktemp("asyncapi"), "asyncapi.yaml")
    loaded: dict[str, Any] = yaml.safe_load(out.read_text())
    return loaded


def test_yaml_passes_the_parser_without_errors_or_warnings(tmp_path: Path) -> None:
    out = export(tmp_path, "asyncapi.yaml")
    assert out.read_text().startswith("asyncapi: 3.0.0\n")
    assert problems(out) == []


def test_json_passes_the_parser_and_is_the_same_document(tmp_path: Path) -> None:
    as_json = export(tmp_path, "asyncapi.json")
    as_yaml = export(tmp_path, "asyncapi.yaml")
    assert problems(as_json) == []
    assert json.loads(as_json.read_text()) == yaml.safe_load(as_yaml.read_text())
    forced = export(tmp_path, "doc.txt", "--format", "json")
    assert forced.read_text() == as_json.read_text()


def test_the_parser_does_report_a_broken_document(tmp_path: Path, document: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(document))
    operation = broken["operations"]["storefront.send.GetOrderQuery"]
    operation["messages"] = [
        {"$ref": "#/channels/queue.order-service-queue/messages/GetOrderQuery"}
    ]
    broken["operations"]["order-audit.receive.order-audit-queue.OrderCreatedEvent"]["action"] = (
        "get"
    )
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    codes = {d["code"] for d in problems(path)}
    assert "asyncapi3-operation-messages-from-referred-channel" in codes
    assert "asyncapi-document-resolved" in codes


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = export(tmp_path, "a.yaml").read_bytes()
    assert export(tmp_path, "b.yaml").read_bytes() == first


def test_a_channel_per_exchange_and_per_queue(document: dict[str, Any]) -> None:
    channels = document["channels"]
    exchanges = {c["address"] for k, c in channels.items() if k.startswith("exchange.")}
    assert exchanges == {
        "mmate.banking", "mmate.commands", "mmate.contracts", "mmate.dlx", "mmate.events",
        "mmate.messages", "mmate.queries",
    }  # fmt: skip
    queues = {c["address"] for k, c in channels.items() if k.startswith("queue.")}
    assert "order-service-queue.dlq" in queues and "order-service-queue.wait.4000" in queues
    assert len(queues) == 20
    events = channels["exchange.mmate.events"]
    assert events["bindings"]["amqp"]["is"] == "routingKey"
    assert events["bindings"]["amqp"]["exchange"]["type"] == "topic"
    assert sorted(events["messages"]) == ["OrderCreatedEvent"]


def test_queue_extensions_carry_what_asyncapi_cannot_say(document: dict[str, Any]) -> None:
    queue = document["channels"]["queue.inventory-service-queue"]
    assert queue["bindings"]["amqp"]["is"] == "queue"
    assert queue["x-mmate-queue-type"] == "quorum"
    assert queue["x-mmate-queue-arguments"]["x-delivery-limit"] == 10
    assert queue["x-mmate-retry"]["delaysMs"] == [500, 1000, 2000, 4000]
    assert queue["x-mmate-wait-queues"]["500"] == "inventory-service-queue.wait.500"
    assert queue["x-mmate-dead-letter"] == {
        "exchange": "",
        "routingKey": "inventory-service-queue.dlq",
        "queue": "inventory-service-queue.dlq",
    }
    assert queue["x-mmate-bindings"] == [
        {"exchange": "mmate.commands", "routingKey": "cmd.inventory-service.*", "arguments": {}}
    ]
    banking = document["channels"]["queue.banking-service-queue"]
    assert banking["x-mmate-fifo"] is True and banking["x-mmate-retry"] is False
    wait = document["channels"]["queue.order-service-queue.wait.1000"]
    assert wait["x-mmate-role"] == "wait" and wait["x-mmate-origin"] == "order-service-queue"


def test_operations_per_service_with_request_reply(document: dict[str, Any]) -> None:
    operations = document["operations"]
    send = operations["order-service.send.OrderCreatedEvent"]
    assert send["action"] == "send"
    assert send["channel"] == {"$ref": "#/channels/exchange.mmate.events"}
    assert send["x-mmate-routing-key"] == "order.{region}.created"
    assert send["x-mmate-routing-key-fields"] == ["region"]
    query = operations["storefront.send.GetOrderQuery"]
    assert query["reply"]["channel"] == {"$ref": "#/channels/replies"}
    assert query["reply"]["address"]["location"] == "$message.payload#/payload/replyTo"
    receive = operations["order-service.receive.order-service-queue.GetOrderQuery"]
    assert receive["action"] == "receive"
    assert receive["reply"]["messages"] == [{"$ref": "#/channels/replies/messages/OrderReply"}]
    receives = sorted(k for k, o in operations.items() if o["action"] == "receive")
    assert len(receives) == 7  # one per message a service handles on a queue


def test_messages_are_envelopes_with_the_payload_schema(document: dict[str, Any]) -> None:
    message = document["components"]["messages"]["OrderCreatedEvent"]
    envelope = message["payload"]
    assert envelope["properties"]["type"] == {
        "const": "OrderCreatedEvent",
        "description": "The contract name.",
    }
    assert envelope["properties"]["payload"] == {"$ref": "#/components/schemas/OrderCreatedEvent"}
    assert message["headers"]["properties"]["x-message-kind"] == {"const": "event"}
    assert message["x-mmate-schema-version"] == "1.0"
    schema = document["components"]["schemas"]["OrderCreatedEvent"]
    assert schema["properties"]["region"]["$ref"] == "#/components/schemas/Region"
    assert "customTypePath" not in json.dumps(document["components"]["schemas"])
    assert document["components"]["schemas"]["Region"]["enum"] == ["eu", "us", "apac"]


def test_bad_specs_report_every_problem_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "bad.yaml").write_text(
        'version: "1.0"\nmessages:\n  PingCommand:\n    kind: comand\n    fields:\n'
        "      text: strng\n"
    )
    out = tmp_path / "asyncapi.yaml"
    for kind in ("asyncapi", "definitions", "mermaid"):
        code = main(["export", kind, str(specs), "--out", str(out)])
        captured = capsys.readouterr()
        assert code == 1
        lines = captured.err.splitlines()
        assert lines[-1] == f"mmate-gen: {specs.as_posix()} has errors; nothing written"
        assert len(lines) >= 3 and all(line.startswith("specs/bad.yaml:") for line in lines[:-1])
        assert "Traceback" not in captured.err and captured.out == ""
        assert not out.exists()
