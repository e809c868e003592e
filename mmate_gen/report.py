"""Collects diagnostics during loading; nothing raises on a spec problem."""

from __future__ import annotations

from .diagnostics import Diagnostic, Location


class Report:
    def __init__(self, sink: list[Diagnostic]) -> None:
        self.sink = sink

    def error(self, loc: Location, message: str, hint: str) -> None:
        self.sink.append(Diagnostic(loc, message, hint))

    def warn(self, loc: Location, message: str, hint: str) -> None:
        self.sink.append(Diagnostic(loc, message, hint, "warning"))

    @property
    def has_errors(self) -> bool:
        return any(d.level == "error" for d in self.sink)
