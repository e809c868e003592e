"""The old side of ``mmate-gen diff SPECS --against git:REF``: the spec files as they were at
REF, read with ``git show`` into a temporary directory named like SPECS (so both sides show the
same paths)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..loader import SPEC_SUFFIXES


class GitError(Exception):
    pass


def _git(*args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        reply = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(reply[-1] if reply else f"git {' '.join(args)} failed")
    return done.stdout


def git_specs(specs: Path, ref: str, into: Path) -> Path:
    """Write the ``*.yaml`` files under ``specs`` as of ``ref`` into ``into/<specs name>``."""
    if not specs.is_dir():
        raise GitError(f"spec directory {specs} does not exist")
    top = Path(_git("-C", str(specs), "rev-parse", "--show-toplevel").decode().strip()).resolve()
    try:
        _git("-C", str(top), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitError:
        raise GitError(f"git:{ref} is not a commit of {top}") from None
    rel = specs.resolve().relative_to(top)
    prefix = rel.as_posix()
    listing = _git("-C", str(top), "ls-tree", "-r", "-z", "--name-only", ref, "--", prefix)
    root = into / (specs.resolve().name or "specs")
    found = 0
    for name in sorted(n for n in listing.decode().split("\0") if n):
        path = Path(name)
        if path.suffix not in SPEC_SUFFIXES:
            continue
        inside = path if prefix == "." else path.relative_to(rel)
        target = root / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_git("-C", str(top), "show", f"{ref}:{name}"))
        found += 1
    if not found:
        raise GitError(f"git:{ref} has no *.yaml spec files under {prefix}/")
    return root
