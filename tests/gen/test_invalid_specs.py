"""The corpus of invalid specs.

Each folder of tests/invalid_specs is a spec directory whose rendered diagnostics must equal its
expected.txt exactly (paths shown as ``<case>/<file>``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmate_gen.loader import load_specs

CORPUS = Path(__file__).parent.parent / "invalid_specs"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 35


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_diagnostics_match_expected(case: Path) -> None:
    result = load_specs(case)  # never raises: a traceback here fails the test
    rendered = "".join(d.render() + "\n" for d in result.diagnostics)
    assert rendered == (case / "expected.txt").read_text(encoding="utf-8")
    assert result.diagnostics, "every case must produce at least one diagnostic"
    assert all(d.loc.path.startswith(f"{case.name}/") for d in result.diagnostics)
    has_errors = any(d.level == "error" for d in result.diagnostics)
    assert (result.spec is None) == has_errors
    assert result.diagnostics == sorted(result.diagnostics, key=lambda d: (d.loc, d.message))
