"""Type tests of the committed generated/ package: mypy (the repository's configuration, strict,
pydantic plugin, ``--warn-unused-ignores``) over the small programs in ``cases/``.

``ok_*.py`` must type-check. Each ``bad_*.py`` marks every line mypy must reject with a
trailing ``# E: <substring of the error>``; mypy must report an error containing it on that line,
and no error anywhere else in the file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "cases"
FILES = sorted(CASES.glob("*.py"))
ERROR_RE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")
EXPECT_RE = re.compile(r"# E: (?P<text>.+)$")


@pytest.fixture(scope="module")
def errors() -> dict[str, dict[int, list[str]]]:
    """File name -> line -> error messages (with their [code]), from one mypy run over all cases."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--warn-unused-ignores",
            "--show-error-codes",
            "--no-error-summary",
            "--hide-error-context",
            *(str(f.relative_to(ROOT)) for f in FILES),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    found: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in done.stdout.splitlines():
        match = ERROR_RE.match(line)
        if match:
            found[Path(match["path"]).name][int(match["line"])].append(match["message"])
        elif ": note: " not in line:
            pytest.fail(f"unexpected mypy output: {line}\n{done.stderr}")
    assert done.returncode in (0, 1), done.stderr
    return found


def expectations(path: Path) -> dict[int, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {
        n: m["text"].strip() for n, text in enumerate(lines, 1) if (m := EXPECT_RE.search(text))
    }


def test_there_are_cases() -> None:
    names = {f.name for f in FILES}
    assert {"ok_usage.py", "bad_publish_wrong_model.py", "bad_handler_wrong_message.py"} <= names
    assert {"bad_query_wrong_reply.py", "bad_missing_field.py", "bad_unknown_option.py"} <= names


@pytest.mark.parametrize("case", FILES, ids=[f.stem for f in FILES])
def test_case(case: Path, errors: dict[str, dict[int, list[str]]]) -> None:
    expected = expectations(case)
    reported = errors.get(case.name, {})
    if case.name.startswith("ok_"):
        assert not expected, "ok_ cases expect no errors"
        assert not reported, f"mypy rejects {case.name}: {dict(reported)}"
        return
    assert case.name.startswith("bad_") and expected, "bad_ cases mark their errors with # E:"
    for line, text in expected.items():
        messages = reported.get(line, [])
        assert any(text in m for m in messages), (
            f"{case.name}:{line}: want {text!r}, got {messages}"
        )
    unexpected = {line: m for line, m in reported.items() if line not in expected}
    assert not unexpected, f"{case.name}: unexpected errors {unexpected}"
