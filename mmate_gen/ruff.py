"""Formatting generated Python with ruff, in memory (stdin to stdout), with settings of our own.

``--isolated`` keeps the user's ruff configuration out, the line length and target version are given
explicitly, and ruff runs in an empty directory of its own (isort would otherwise count a ``mmate/``
folder in the working directory as first-party and group imports differently), so the bytes of
generated code depend only on the ruff version (pinned in pyproject.toml). The ruff used is the one
installed beside the running interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

SETTINGS = ("--isolated", "--line-length", "100", "--target-version", "py311")
FIXES = ("--select", "I,F401", "--fix", "--exit-zero", "--quiet")


class FormatError(Exception):
    """ruff could not format a generated file: the generated code is not valid Python (a bug)."""


@cache
def ruff_command() -> tuple[str, ...]:
    """The ruff executable next to ``sys.executable``, else ``python -m ruff``."""
    bin_dir = Path(sys.executable).parent
    found = shutil.which("ruff", path=str(bin_dir))
    if found is not None:
        return (found,)
    return (sys.executable, "-m", "ruff")


def _run(args: tuple[str, ...], path: str, text: str, cwd: str) -> str:
    command = (*ruff_command(), *args, *SETTINGS, "--stdin-filename", path, "-")
    done = subprocess.run(command, input=text.encode(), capture_output=True, check=False, cwd=cwd)
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()
        raise FormatError(f"ruff failed on {path}: {detail}")
    return done.stdout.decode()


def format_source(path: str, text: str, cwd: str) -> str:
    """Sort and prune imports (isort rules, unused imports), then format."""
    fixed = _run(("check", *FIXES), path, text, cwd)
    return _run(("format",), path, fixed, cwd)


def format_all(files: Mapping[str, str]) -> dict[str, str]:
    """``format_source`` over many files at once (ruff runs are independent processes, a few run
    at a time)."""
    workers = min(len(files), 2 * (os.cpu_count() or 1)) or 1
    with (
        tempfile.TemporaryDirectory(prefix="mmate-gen-ruff-") as empty,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        futures = {p: pool.submit(format_source, p, text, empty) for p, text in files.items()}
        return {path: future.result() for path, future in futures.items()}
