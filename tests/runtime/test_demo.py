"""examples/demo.py runs the example system end to end on the broker and exits 0 (needs
generated/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BROKER_URL

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.broker


@pytest.mark.skipif(
    not (ROOT / "generated" / "topology.py").exists(),
    reason="generated/ not built yet (make generate)",
)
def test_demo_completes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--url", BROKER_URL, "--cleanup"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo completed" in done.stdout
