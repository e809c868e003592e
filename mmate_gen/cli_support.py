"""What every ``mmate-gen`` command does alike: load the specs or report every problem, and write
its output whole (a file, atomically, or stdout) or not at all."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .diagnostics import Diagnostic
from .ir import SpecSet
from .loader import load_specs


def print_diagnostics(diagnostics: Sequence[Diagnostic], stream: TextIO) -> None:
    for diagnostic in diagnostics:
        print(diagnostic.render(), file=stream)


def load_or_report(specs: Path, *, strict: bool, doing: str = "nothing written") -> SpecSet | None:
    """The spec set, or None after printing every diagnostic and one summary line to stderr
    (errors, or warnings under ``strict``). Warnings of a good spec set are printed too."""
    result = load_specs(specs)
    print_diagnostics(result.diagnostics, sys.stderr)
    errors = sum(d.level == "error" for d in result.diagnostics)
    warnings = len(result.diagnostics) - errors
    if result.spec is None or errors or (strict and warnings):
        failing = "errors" if errors or result.spec is None else "warnings (--strict)"
        print(f"mmate-gen: {specs.as_posix()} has {failing}; {doing}", file=sys.stderr)
        return None
    return result.spec


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(out: Path | None, text: str) -> str | None:
    """Write ``text`` to ``out`` atomically (stdout when None); the error text when it fails."""
    if out is None:
        sys.stdout.write(text)
        return None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it 0600; others must read it
            os.replace(temp, out)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        return f"cannot write {out.as_posix()}: {exc}"
    return None
