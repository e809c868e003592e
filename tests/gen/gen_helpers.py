"""Helpers of the generator tests: spec directories from inline YAML, running the CLI."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from mmate_gen.cli import main
from mmate_gen.loader import load_specs
from mmate_gen.output import write_tree
from mmate_gen.render import render_all

SMALL_SPEC = """\
version: "1.0"
types:
  Region:
    enum: [eu, us]
messages:
  PingCommand:
    kind: command
    fields:
      text: string
      region: {type: Region, default: eu}
  PongEvent:
    kind: event
    fields:
      text: string
queues:
  ping-queue:
    go_compatible: false
    bindings:
      - {exchange: mmate.commands, routing_key: cmd.ping.*}
  pong-queue:
    go_compatible: false
    bindings:
      - {exchange: mmate.events, routing_key: "evt.*.PongEvent"}
services:
  ping:
    publishes:
      - {message: PingCommand, routing_key: "cmd.ping.{region}"}
    consumes:
      pong-queue: [PongEvent]
  pong:
    publishes: [PongEvent]
    consumes:
      ping-queue: [PingCommand]
"""


def write_specs(root: Path, files: dict[str, str]) -> Path:
    """A spec directory ``root/specs`` holding ``files`` (name -> YAML, dedented)."""
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (specs / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return specs


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Run:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@contextmanager
def generated_package(root: Path, files: dict[str, str]) -> Iterator[ModuleType]:
    """The package generated from ``files`` (name -> YAML), imported under a unique name; removed
    from ``sys.modules`` and ``sys.path`` afterwards."""
    result = load_specs(write_specs(root, files))
    assert result.spec is not None, [d.render() for d in result.diagnostics]
    name = f"gen_{uuid.uuid4().hex[:8]}"
    write_tree(root / "pkgs" / name, render_all(result.spec))
    sys.path.insert(0, str(root / "pkgs"))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(root / "pkgs"))
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]
