"""``mmate-gen diff OLD NEW`` and ``mmate-gen diff SPECS --against git:REF``.

Exit codes: 0 nothing breaking (or every breaking finding allowed); 1 breaking findings, or spec
errors on either side (every problem of both printed, nothing compared); 2 a usage error (a bad
allow entry, a git ref that does not resolve).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..cli_support import load_or_report
from ..ir import SpecSet
from .allow import AllowEntry, AllowError, apply_allows, parse_entry, read_allow_file
from .code import code_findings
from .findings import Finding, sort_key
from .render import PathMap, as_json, github, text
from .source import GitError, git_specs
from .topology import topology_findings
from .wire import wire_findings

USAGE = 2


def classify(old: SpecSet, new: SpecSet) -> list[Finding]:
    wire = wire_findings(old, new)
    findings = wire.out + code_findings(old, new, wire) + topology_findings(old, new)
    return sorted(findings, key=sort_key)


def _path_map(root_name: str, given: Path) -> PathMap:
    """Spec paths (``specs/orders.yaml``) as paths from here (``contracts/specs/orders.yaml``)."""
    shown = given.as_posix().rstrip("/") or "."

    def mapped(path: str) -> str:
        head, sep, rest = path.partition("/")
        return f"{shown}/{rest}" if head == root_name and sep else path

    return mapped


def run_diff(
    paths: Sequence[Path],
    *,
    against: str | None,
    fmt: str,
    allow: Sequence[str],
    allow_files: Sequence[Path],
    strict: bool,
) -> int:
    if against is None and len(paths) != 2:
        print(
            "mmate-gen diff: give OLD_SPECS NEW_SPECS, or SPECS --against git:REF", file=sys.stderr
        )
        return USAGE
    if against is not None and (
        len(paths) != 1 or not against.startswith("git:") or against == "git:"
    ):
        print("mmate-gen diff: --against takes git:REF and one SPECS directory", file=sys.stderr)
        return USAGE
    try:
        entries: list[AllowEntry] = [parse_entry(a, "--allow") for a in allow]
        for path in allow_files:
            entries += read_allow_file(path)
    except AllowError as exc:
        print(f"mmate-gen diff: {exc}", file=sys.stderr)
        return USAGE
    with tempfile.TemporaryDirectory(prefix="mmate-diff-") as temp:
        if against is not None:
            ref = against.removeprefix("git:")
            new_path = paths[0]
            try:
                old_path = git_specs(new_path, ref, Path(temp))
            except GitError as exc:
                print(f"mmate-gen diff: {exc}", file=sys.stderr)
                return USAGE
            old_label, old_given = against, new_path
        else:
            old_path, new_path = paths
            old_label, old_given = "", old_path
        old = load_or_report(old_path, strict=strict, doing="nothing compared")
        new = load_or_report(new_path, strict=strict, doing="nothing compared")
        if old is None or new is None:
            return 1
        findings = classify(old, new)
    findings, unused = apply_allows(findings, entries)
    for entry in unused:
        print(
            f"mmate-gen diff: warning: allow entry {entry} ({entry.source}) matched no finding",
            file=sys.stderr,
        )
    if fmt == "json":
        sys.stdout.write(as_json(findings, old_label or old_given.as_posix(), new_path.as_posix()))
    elif fmt == "github":
        sys.stdout.write(
            github(findings, _path_map(old.root, old_given), _path_map(new.root, new_path))
        )
    else:
        sys.stdout.write(text(findings, old_label))
    return 1 if any(f.blocking for f in findings) else 0
