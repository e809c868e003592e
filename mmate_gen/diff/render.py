"""Findings as text (the default), JSON, or GitHub workflow annotations."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..diagnostics import Location
from .findings import Finding
from .rules import RULES

PathMap = Callable[[str], str]
"""Turns a location's spec path (``specs/orders.yaml``) into a path for annotations."""


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    return {
        "breaking": sum(f.blocking for f in findings),
        "allowed": sum(f.severity == "breaking" and f.allowed for f in findings),
        "warning": sum(f.severity == "warning" for f in findings),
        "info": sum(f.severity == "info" for f in findings),
    }


def summary(findings: Sequence[Finding]) -> str:
    if not findings:
        return "mmate-gen diff: no changes"
    c = counts(findings)
    allowed = f" ({c['allowed']} more allowed)" if c["allowed"] else ""
    return (
        f"mmate-gen diff: {c['breaking']} breaking{allowed}, {c['warning']} "
        f"warning{'s' if c['warning'] != 1 else ''}, {c['info']} compatible"
    )


def _where(loc: Location | None, label: str) -> str:
    return f"{label}: {loc}" if loc is not None else f"{label}: -"


def text(findings: Sequence[Finding], old_label: str = "") -> str:
    """``old_label`` names where the old specs came from when their paths do not (git:REF)."""
    lines: list[str] = []
    for f in findings:
        mark = " (allowed)" if f.allowed else ""
        lines.append(f"{f.severity.upper()}{mark} {f.category} {f.rule}: {f.subject}")
        lines.append(f"  {f.message}")
        lines.append(f"  why: {RULES[f.rule].meaning}")
        lines.append("  " + _where(f.old, f"old ({old_label})" if old_label else "old"))
        lines.append("  " + _where(f.new, "new"))
        if f.migration:
            lines.append(f"  migration: {f.migration}")
    lines.append(summary(findings))
    return "\n".join(lines) + "\n"


def _loc_json(loc: Location | None) -> dict[str, Any] | None:
    return None if loc is None else {"path": loc.path, "line": loc.line, "col": loc.col}


def as_json(findings: Sequence[Finding], old_label: str, new_label: str) -> str:
    document = {
        "old": old_label,
        "new": new_label,
        "findings": [
            {
                "rule": f.rule,
                "category": f.category,
                "severity": f.severity,
                "allowed": f.allowed,
                "subject": f.subject,
                "message": f.message,
                "why": RULES[f.rule].meaning,
                "old": _loc_json(f.old),
                "new": _loc_json(f.new),
                "migration": f.migration,
            }
            for f in findings
        ],
        "summary": counts(findings),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


_LEVEL = {"breaking": "error", "warning": "warning", "info": "notice"}


def github(findings: Sequence[Finding], old_path: PathMap, new_path: PathMap) -> str:
    """One ``::error``/``::warning``/``::notice`` workflow command per finding, at its new
    location (the old one when the thing was removed), then the summary line."""
    lines: list[str] = []
    for f in findings:
        level = "warning" if f.allowed else _LEVEL[f.severity]
        if f.new is not None:
            loc, path = f.new, new_path(f.new.path)
        elif f.old is not None:
            loc, path = f.old, old_path(f.old.path)
        else:
            loc, path = None, ""
        title = f"{f.category} {f.rule}" + (" (allowed)" if f.allowed else "")
        props = [f"title={_escape_property(title)}"]
        if loc is not None:
            props[:0] = [f"file={_escape_property(path)}", f"line={loc.line}", f"col={loc.col}"]
        body = f"{f.subject}: {f.message}. {RULES[f.rule].meaning}."
        if f.old is not None and f.new is not None:
            body += f" Was at {f.old}."
        if f.migration:
            body += f"\nMigration: {f.migration}"
        lines.append(f"::{level} {','.join(props)}::{_escape_data(body)}")
    lines.append(summary(findings))
    return "\n".join(lines) + "\n"
