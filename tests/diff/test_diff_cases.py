"""The corpus of spec pairs: each folder of tests/diff_cases holds ``old/`` and ``new/`` spec
directories, optional ``args`` (extra command-line arguments, one per line) and ``expected.txt``:
what ``mmate-gen diff old new ARGS`` prints, run inside the folder, as

    <stdout>
    --- stderr
    <stderr>          (only when there is any)
    --- exit N

Set MMATE_UPDATE_DIFF_CASES=1 to rewrite the expected files after a deliberate change (then read
the diff of them before committing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmate_gen.cli import main
from mmate_gen.diff.rules import RULES

CORPUS = Path(__file__).parent.parent / "diff_cases"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())
UPDATE = os.environ.get("MMATE_UPDATE_DIFF_CASES") == "1"


def run_case(case: Path, capsys: pytest.CaptureFixture[str]) -> str:
    args_file = case / "args"
    args = args_file.read_text().split("\n") if args_file.exists() else []
    cwd = Path.cwd()
    os.chdir(case)
    try:
        code = main(["diff", "old", "new", *[a for a in args if a]])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    shown = captured.out
    if captured.err:
        shown += "--- stderr\n" + captured.err
    return shown + f"--- exit {code}\n"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_output_matches_expected(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shown = run_case(case, capsys)
    expected = case / "expected.txt"
    if UPDATE:
        expected.write_text(shown, encoding="utf-8")
    assert shown == expected.read_text(encoding="utf-8")
    assert "Traceback" not in shown


def test_every_rule_is_exercised_by_some_case() -> None:
    seen = "".join((c / "expected.txt").read_text() for c in CASES)
    missing = [
        r
        for r in RULES
        if f" {r}: " not in seen and f"{r}::" not in seen and f'"rule": "{r}"' not in seen
    ]
    assert missing == []


def test_breaking_findings_fail_and_allowed_ones_do_not() -> None:
    exits = {
        c.name: (c / "expected.txt").read_text().rsplit("--- exit ", 1)[1].strip() for c in CASES
    }
    assert exits["no_changes"] == "0"
    assert exits["compatible_changes"] == "0"
    assert exits["wire_fields_added"] == "1"
    assert exits["allow_flags"] == "0" and exits["allow_file"] == "0"
    assert exits["allow_partial"] == "1"
    assert exits["allow_unknown_rule"] == "2"
    assert exits["bad_specs"] == "1"


def test_every_rule_is_documented() -> None:
    page = (Path(__file__).parent.parent.parent / "docs" / "tooling.md").read_text()
    assert [r for r in RULES if f"| `{r}` |" not in page] == []
