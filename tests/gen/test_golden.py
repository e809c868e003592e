"""The golden record: specs/ rendered now equals the committed generated/ byte for byte, and the
committed tree passes mypy --strict (the repository's configuration, pydantic plugin included).

Regenerate it with ``make generate`` (``mmate-gen build specs/ --out generated/``) after a change to
the specs, the templates, the generator or the pinned ruff / datamodel-code-generator versions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mmate_gen.loader import load_specs
from mmate_gen.output import compare_tree
from mmate_gen.render import render_all

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "make generate  (mmate-gen build specs/ --out generated/)"


def test_generated_matches_the_specs() -> None:
    result = load_specs(ROOT / "specs")
    assert result.spec is not None, [d.render() for d in result.diagnostics]
    assert [d for d in result.diagnostics if d.level == "error"] == []
    drift = compare_tree(ROOT / "generated", render_all(result.spec))
    assert drift == [], f"generated/ is out of date; run {REGENERATE}:\n" + "\n".join(drift)


def test_generated_passes_mypy_strict() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "generated",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_output_does_not_depend_on_the_working_directory_or_hash_seed(tmp_path: Path) -> None:
    # A working directory with a `mmate/` folder (isort would call it first-party) and a
    # pyproject.toml configuring ruff and datamodel-code-generator otherwise.
    (tmp_path / "mmate").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        "[tool.ruff]\nline-length = 60\n\n"
        '[tool.datamodel-codegen]\nsnake-case-field = false\nbase-class = "x.Y"\n'
    )
    command = [sys.executable, "-m", "mmate_gen.cli", "check", str(ROOT / "specs")]
    for seed in ("1", "2"):
        done = subprocess.run(
            [*command, "--out", str(ROOT / "generated")],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
