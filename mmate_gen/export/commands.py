"""``mmate-gen export asyncapi|definitions|mermaid``: load the specs (every problem reported, exit
1, nothing written), render in memory, then write the whole output at once."""

from __future__ import annotations

import sys
from pathlib import Path

from ..broker.wanted import wanted_entities
from ..cli_support import load_or_report, write_text
from .asyncapi import asyncapi_document
from .definitions import definitions_json
from .mermaid import markdown_page, mermaid_diagram
from .serialize import dumps, format_for


def _finish(out: Path | None, text: str) -> int:
    problem = write_text(out, text)
    if problem is not None:
        print(f"mmate-gen: {problem}", file=sys.stderr)
        return 1
    if out is not None:
        print(f"wrote {out.as_posix()}")
    return 0


def export_asyncapi(
    specs: Path,
    out: Path | None,
    *,
    fmt: str | None,
    title: str | None,
    version: str | None,
    vhost: str,
    strict: bool,
) -> int:
    spec = load_or_report(specs, strict=strict)
    if spec is None:
        return 1
    document = asyncapi_document(spec, title=title, version=version, vhost=vhost)
    return _finish(out, dumps(document, format_for(out, fmt)))


def export_definitions(
    specs: Path, out: Path | None, *, vhost: str, delay_cascade: bool, strict: bool
) -> int:
    spec = load_or_report(specs, strict=strict)
    if spec is None:
        return 1
    entities = wanted_entities(spec, delay_cascade=delay_cascade)
    for note in entities.skipped:
        print(f"mmate-gen: left out {note}", file=sys.stderr)
    return _finish(out, definitions_json(entities, vhost))


def export_mermaid(specs: Path, out: Path | None, *, fmt: str, strict: bool) -> int:
    spec = load_or_report(specs, strict=strict)
    if spec is None:
        return 1
    if fmt == "markdown":
        shown = f"{specs.as_posix().rstrip('/')}/"
        command = f"mmate-gen export mermaid {shown} --format markdown"
        if out is not None:
            command += f" --out {out.as_posix()}"
        return _finish(out, markdown_page(spec, command))
    return _finish(out, mermaid_diagram(spec))
