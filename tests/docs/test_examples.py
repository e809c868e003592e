"""Every Python example in the documentation is checked, so the docs cannot rot.

The convention (docs/development.md, "Examples in the docs"): a fenced block whose info string is
``python`` is a complete module and must pass ``mypy --strict`` with the repository's
configuration; ``python run`` is also run, as its own process, against a fresh in-memory broker
(``MMATE_URL=memory://``), and must exit 0. ``python excerpt`` is an abridged excerpt of
``generated/`` shown for its shape (docs/generated-shape.md only): not an example, and the real
module is type-checked with ``generated/``. Any other word after ``python`` is an error. Code
that is not Python (signatures, output, shell) goes in ``text`` or ``sh`` blocks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")])
FENCE_RE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>```+|~~~+)\s*(?P<info>.*)$")
ERROR_RE = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): error: (?P<message>.*)$")
RUN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Example:
    page: Path
    line: int  # of the opening fence
    flags: tuple[str, ...]
    code: str

    @property
    def name(self) -> str:
        rel = self.page.relative_to(ROOT).with_suffix("")
        return "ex_" + re.sub(r"\W", "_", str(rel)) + f"_{self.line}"

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples_of(page: Path) -> list[Example]:
    found: list[Example] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE_RE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].split()
        body: list[str] = []
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if info and info[0] == "python":
            found.append(Example(page, start, tuple(info[1:]), "\n".join(body) + "\n"))
    return found


BLOCKS = [example for page in PAGES if page.exists() for example in examples_of(page)]
EXAMPLES = [example for example in BLOCKS if "excerpt" not in example.flags]
RUNNABLE = [example for example in EXAMPLES if "run" in example.flags]


def test_examples_are_found() -> None:
    pages = {example.page.name for example in EXAMPLES}
    assert {"README.md", "publishing.md", "getting-started.md"} <= pages
    assert len(RUNNABLE) >= 5


@pytest.mark.parametrize("example", BLOCKS, ids=[e.where for e in BLOCKS])
def test_flags_are_known(example: Example) -> None:
    unknown = set(example.flags) - {"run", "excerpt"}
    assert not unknown, f"{example.where}: unknown flags {sorted(unknown)}"
    if "excerpt" in example.flags:
        checked_here = any(e.page == example.page for e in EXAMPLES)
        assert example.page.name == "generated-shape.md" or checked_here, (
            f"{example.where}: an excerpt needs a complete, checked example on its page"
        )
    if "run" in example.flags:
        assert "MMATE_URL" in example.code or "mmate.testing" in example.code, (
            f"{example.where}: a runnable example takes its broker URL from MMATE_URL, "
            "so the test can run it on an in-memory broker (or uses mmate.testing, which "
            "makes its own)"
        )


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Example name -> mypy's errors for it, from one mypy run over all examples."""
    folder = tmp_path_factory.mktemp("doc_examples")
    files = []
    for example in EXAMPLES:
        path = folder / f"{example.name}.py"
        path.write_text(example.code, encoding="utf-8")
        files.append(str(path))
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--show-error-codes",
            "--no-error-summary",
            "--hide-error-context",
            *files,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    found: dict[str, list[str]] = defaultdict(list)
    for line in done.stdout.splitlines():
        match = ERROR_RE.match(line)
        if match:
            found[Path(match["path"]).stem].append(f"line {match['line']}: {match['message']}")
        elif ": note: " not in line:
            pytest.fail(f"unexpected mypy output: {line}\n{done.stderr}")
    return found


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_example_type_checks(example: Example, mypy_errors: dict[str, list[str]]) -> None:
    errors = mypy_errors.get(example.name, [])
    assert not errors, f"{example.where} (lines counted from the fence):\n" + "\n".join(errors)


@pytest.mark.parametrize("example", RUNNABLE, ids=[e.where for e in RUNNABLE])
def test_example_runs(example: Example, tmp_path: Path) -> None:
    path = tmp_path / f"{example.name}.py"
    path.write_text(example.code, encoding="utf-8")
    env = {**os.environ, "MMATE_URL": "memory://", "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{example.where} still running after {RUN_TIMEOUT} s: {exc.stdout!r}")
    assert done.returncode == 0, f"{example.where} exited {done.returncode}:\n{done.stderr}"


OUTSIDE = re.compile(r"\.\./shared|wire-format|/work/|seeds/messaging")
"""Names of files and places that are not in the repository."""
SOURCES = sorted(
    path
    for folder in ("runtime/mmate", "mmate_gen", "tests", "bench")
    for path in (ROOT / folder).rglob("*.py")
    if path != Path(__file__).resolve()
)


@pytest.mark.parametrize("kind", ["docs", "sources"])
def test_docs_and_sources_do_not_point_outside_the_repository(kind: str) -> None:
    """Docs pages, docstrings and messages name only what the repository holds."""
    hits = [
        f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
        for page in (PAGES if kind == "docs" else SOURCES)
        if page.exists()
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)
