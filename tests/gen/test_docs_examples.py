"""The spec examples of the docs are valid specs: the full example of docs/interop-go.md builds
without a diagnostic, and leaving out its external publisher fails as the page says."""

from __future__ import annotations

import re
from pathlib import Path

from gen_helpers import write_specs

from mmate_gen.loader import load_specs

DOCS = Path(__file__).resolve().parents[2] / "docs"
_FULL_EXAMPLE = re.compile(r"<!-- full example[^>]*-->\n```yaml\n(.*?)```", re.DOTALL)


def full_example(page: str) -> str:
    match = _FULL_EXAMPLE.search((DOCS / page).read_text(encoding="utf-8"))
    assert match is not None, f"{page} has no full example"
    return match.group(1)


def test_the_go_service_example_builds_without_a_diagnostic(tmp_path: Path) -> None:
    result = load_specs(write_specs(tmp_path, {"shop.yaml": full_example("interop-go.md")}))
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    queue = next(q for q in result.spec.queues if q.name == "order-service-queue")
    assert queue.go_compatible and queue.arguments == ()
    assert {q.name for q in result.spec.queues if q.origin == "order-service-queue"} == {
        "order-service-queue.dlq",
        "order-service-queue.wait.1000",
        "order-service-queue.wait.2000",
    }


def test_without_the_go_publisher_the_example_fails_as_documented(tmp_path: Path) -> None:
    spec = full_example("interop-go.md")
    spec = spec.replace("    publishes: [PaymentCapturedEvent]\n", "    publishes: []\n")
    result = load_specs(write_specs(tmp_path, {"shop.yaml": spec}))
    rendered = [d.render() for d in result.diagnostics]
    assert result.spec is None
    assert any(
        'PaymentCapturedEvent handled by service "order-service" can never reach queue '
        '"order-service-queue"' in line
        for line in rendered
    ), rendered
