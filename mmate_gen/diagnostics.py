"""Spec problems as data. The CLI only renders them.

Every problem carries a location (spec file relative to the specs directory's parent, line and
column, all 1-based), what is wrong, and a hint saying what to write instead. ``error`` problems
fail the build; ``warning`` problems fail it only under ``--strict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class Location:
    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    loc: Location
    message: str
    hint: str
    level: Level = "error"

    def render(self) -> str:
        prefix = "warning: " if self.level == "warning" else ""
        return f"{self.loc}: {prefix}{self.message}; {self.hint}"


class SpecError(Exception):
    """Raised when a spec set has problems that fail the build; carries all of them, sorted."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.loc, d.message))
        super().__init__("\n".join(d.render() for d in self.diagnostics))
