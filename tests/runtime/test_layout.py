"""The architecture holds: only the aiormq backend imports aiormq or pamqp, and the layers import
only downwards (the map in docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime" / "mmate"
BACKEND = RUNTIME / "_transport" / "aiormq"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


MODULES = sorted(p for p in RUNTIME.rglob("*.py") if BACKEND not in p.parents)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(RUNTIME)) for p in MODULES])
def test_only_the_aiormq_backend_imports_aiormq_or_pamqp(path: Path) -> None:
    foreign = {n for n in _imports(path) if n.split(".")[0] in ("aiormq", "pamqp")}
    assert not foreign, f"{path.relative_to(RUNTIME)} imports {sorted(foreign)}"


def test_the_backend_is_there_and_is_the_one_that_does() -> None:
    assert any("aiormq" in _imports(p) for p in BACKEND.glob("*.py"))
