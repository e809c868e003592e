"""``mmate-gen diff SPECS --against git:REF`` in a temporary git repository: the old side is read
with ``git show``, both sides show the same paths, annotations point at the working tree."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmate_gen.cli import main

CASES = Path(__file__).parent.parent / "diff_cases"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A repository whose first commit holds contracts/specs/ (the wire_fields_added case's old
    side); the work tree holds its new side."""
    specs = tmp_path / "contracts" / "specs"
    specs.mkdir(parents=True)
    case = CASES / "wire_fields_added"
    (specs / "spec.yaml").write_text((case / "old" / "spec.yaml").read_text())
    (tmp_path / "README").write_text("not a spec\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    (specs / "spec.yaml").write_text((case / "new" / "spec.yaml").read_text())
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


def test_against_head_classifies_the_work_tree_change(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["diff", "contracts/specs", "--against", "git:HEAD", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 1
    document = json.loads(out)
    assert document["old"] == "git:HEAD"
    rules = [(f["rule"], f["subject"]) for f in document["findings"]]
    assert ("field-added-required", "OrderPlaced.currency") in rules
    first = document["findings"][0]
    assert first["old"]["path"] == "specs/spec.yaml" and first["new"]["path"] == "specs/spec.yaml"


def test_text_names_the_ref_and_github_points_at_work_tree_files(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "contracts/specs", "--against", "git:HEAD"]) == 1
    text = capsys.readouterr().out
    assert "  old (git:HEAD): specs/spec.yaml:20:3\n" in text
    assert main(["diff", "contracts/specs", "--against", "git:HEAD", "--format", "github"]) == 1
    annotations = capsys.readouterr().out
    assert "::error file=contracts/specs/spec.yaml,line=25,col=7," in annotations


def test_the_same_commit_has_no_changes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "commit", "-q", "-am", "second")
    assert main(["diff", "contracts/specs", "--against", "git:HEAD"]) == 0
    assert capsys.readouterr().out == "mmate-gen diff: no changes\n"
    assert main(["diff", "contracts/specs", "--against", "git:HEAD~1"]) == 1


def test_a_ref_that_does_not_resolve_or_holds_no_specs_is_a_usage_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "contracts/specs", "--against", "git:no-such-branch"]) == 2
    assert "git:no-such-branch is not a commit" in capsys.readouterr().err
    (repo / "other").mkdir()
    (repo / "other" / "a.yaml").write_text('version: "1.0"\n')
    assert main(["diff", "other", "--against", "git:HEAD"]) == 2
    assert "git:HEAD has no *.yaml spec files under other/" in capsys.readouterr().err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "a"]) == 2
    assert main(["diff", "a", "b", "--against", "git:HEAD"]) == 2
    assert main(["diff", "a", "--against", "HEAD"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("mmate-gen diff:") == 3
