"""``mmate-gen export mermaid``: the diagram, and the committed docs page that holds it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from repo_paths import REPO

from mmate_gen.cli import main

PAGE = REPO / "docs" / "topology.md"


def test_the_committed_page_is_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    out = tmp_path / "topology.md"
    assert main(["export", "mermaid", "specs/", "--format", "markdown", "--out", str(out)]) == 0
    expected = out.read_text().replace(str(out), "docs/topology.md")
    assert PAGE.read_text() == expected, "docs/topology.md is stale; run `make docs-topology`"


def test_the_diagram_shows_services_exchanges_queues_and_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["export", "mermaid", str(REPO / "specs")]) == 0
    diagram = capsys.readouterr().out
    lines = diagram.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    svc_storefront(["storefront"])' in lines
    assert '    ex_mmate_events{{"mmate.events"}}' in lines
    assert (
        '    svc_order_service -->|"OrderCreatedEvent<br/>order.{region}.created"| ex_mmate_events'
        in lines
    )
    assert '    ex_mmate_events -->|"order.*.created"| q_order_audit_queue' in lines
    assert '    q_order_audit_queue -->|"OrderCreatedEvent"| svc_order_audit' in lines
    assert '    q_order_audit_queue -.->|"dead letters"| q_order_audit_queue_dlq' in lines
    assert '    svc_order_service -.->|"OrderReply (reply)"| svc_storefront' in lines
    # every node an edge names is declared
    declared = {m.group(1) for m in re.finditer(r"^    (\w+)[\[({]", diagram, re.M)}
    used = set(re.findall(r"^    (\w+) -", diagram, re.M)) | set(
        re.findall(r"\| (\w+)$", diagram, re.M)
    )
    assert used <= declared
    assert not [n for n in declared if ".wait." in n or "delay" in n]
