"""Helpers of the generator tests: spec directories from inline YAML, running the CLI."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmate_gen.cli import main

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
    bindings:
      - {exchange: mmate.commands, routing_key: cmd.ping.*}
  pong-queue:
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
