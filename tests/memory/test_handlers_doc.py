"""The runnable example of docs/handlers.md runs (on the in-process broker) and prints what the
page says: a function registered by decorator handles every event, served by a group of three."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_EXAMPLE = re.compile(r"<!-- runnable example -->\n```python\n(.*?)```", re.DOTALL)


def test_the_runnable_example_prints_what_the_page_says() -> None:
    page = (ROOT / "docs" / "handlers.md").read_text(encoding="utf-8")
    match = _EXAMPLE.search(page)
    assert match is not None, "docs/handlers.md has no runnable example"
    done = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed == "['O-0', 'O-1', 'O-2', 'O-3', 'O-4', 'O-5'] 3"
    assert f"It prints `{printed}`." in page
