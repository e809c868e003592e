"""Allowing findings: ``--allow RULE[:SUBJECT]`` and allow-list files of the same entries.

An entry names a rule and optionally a subject, which may use shell wildcards (``*``, ``?``,
``[...]``): ``field-removed`` allows every removed field, ``field-removed:OrderCreatedEvent.*``
those of one message, ``queue-arguments-changed:payment-service-queue`` one queue. In a file,
one entry per line; ``#`` starts a comment (write why the change is safe there), blank lines are
ignored. An allowed finding is still reported, marked allowed, and does not fail the diff; an
entry that allows nothing is reported as a warning (it is probably stale).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .findings import Finding
from .rules import RULES


@dataclass(frozen=True, slots=True)
class AllowEntry:
    rule: str
    subject: str | None
    source: str
    """Where it was given: ``--allow`` or ``FILE:LINE``."""

    def matches(self, f: Finding) -> bool:
        if f.rule != self.rule:
            return False
        return self.subject is None or fnmatch.fnmatchcase(f.subject, self.subject)

    def __str__(self) -> str:
        return self.rule if self.subject is None else f"{self.rule}:{self.subject}"


class AllowError(ValueError):
    """An entry that names no rule; the message says where and lists the rules."""


def parse_entry(text: str, source: str) -> AllowEntry:
    rule, sep, subject = text.strip().partition(":")
    rule = rule.strip()
    if rule not in RULES:
        known = ", ".join(sorted(RULES))
        raise AllowError(f"{source}: {rule!r} is not a diff rule; the rules are: {known}")
    subject = subject.strip()
    if sep and not subject:
        raise AllowError(
            f"{source}: {text.strip()!r} has an empty subject; write RULE or RULE:SUBJECT"
        )
    return AllowEntry(rule, subject if sep else None, source)


def read_allow_file(path: Path) -> list[AllowEntry]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AllowError(f"cannot read allow list {path.as_posix()}: {exc}") from exc
    entries: list[AllowEntry] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            entries.append(parse_entry(text, f"{path.as_posix()}:{number}"))
    return entries


def apply_allows(
    findings: Sequence[Finding], entries: Sequence[AllowEntry]
) -> tuple[list[Finding], list[AllowEntry]]:
    """The findings with the allowed ones marked, and the entries that matched nothing."""
    used: set[int] = set()
    out: list[Finding] = []
    for f in findings:
        hits = [i for i, entry in enumerate(entries) if entry.matches(f)]
        used.update(hits)
        out.append(f.allow() if hits else f)
    unused = [entry for i, entry in enumerate(entries) if i not in used]
    return out, unused
