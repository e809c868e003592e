"""Generation benchmark: how long ``mmate-gen build`` and ``--check`` take, and their peak memory,
for synthetic spec sets of 50, 200 and 1000 messages.

Each spec set has one file per domain of ten messages (five commands, three events, a query and
its reply), with an enum and two records, a queue with retries and dead-lettering, and two
services. Each figure is one ``mmate-gen`` run in a fresh process (interpreter start and imports
included, as a user sees it); peak memory is that process's maximum resident set (ruff runs are
separate processes).

    python bench/generate.py [--sizes 50 200 1000] [--no-write]

Prints a table and one JSON line per figure, and writes the table under "## Generation" in
bench/RESULTS.md (other sections of that file are kept).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADING = "## Generation"
TARGET_200 = 5.0
DOMAIN_SIZE = 10


def domain_spec(k: int) -> str:
    """One spec file: ten messages of domain ``k`` with their types, queue and services."""
    d, svc = f"D{k}", f"d{k}"
    commands = [f"{d}Cmd{i}" for i in range(5)]
    events = [f"{d}Evt{i}" for i in range(3)]
    lines = [
        "# Synthetic spec of the generation benchmark.",
        'version: "1.0"',
        "types:",
        f"  {d}Status:",
        f"    description: Status of a {d} order.",
        "    enum: [new, paid, shipped, cancelled]",
        f"  {d}Item:",
        "    fields:",
        "      sku: {type: string, pattern: '^SKU-'}",
        "      quantity: {type: int, min: 1}",
        "      price: {type: decimal, min: 0}",
        f"  {d}Order:",
        f"    description: An order of domain {k}.",
        "    fields:",
        "      orderId: string",
        f'      items: {{type: "list[{d}Item]", min_length: 1}}',
        f"      status: {{type: {d}Status, default: new}}",
        '      meta: {type: "map[string, string]", default: {}}',
        "      createdAt: datetime",
        "messages:",
    ]
    for name in commands:
        lines += [
            f"  {name}:",
            "    kind: command",
            f"    description: Command {name}.",
            "    fields:",
            "      orderId: {type: string, min_length: 1}",
            f"      order: {d}Order",
            "      note: {type: string, optional: true, max_length: 200}",
            "      amount: {type: decimal, min: 0}",
            "      requestedAt: datetime",
            "      ref: uuid",
        ]
    for name in events:
        lines += [
            f"  {name}:",
            "    kind: event",
            "    fields:",
            "      orderId: string",
            f"      status: {{type: {d}Status, default: new}}",
            "      payload: {type: bytes, optional: true}",
            "      version: int64",
            "      day: {type: date, optional: true}",
        ]
    lines += [
        f"  {d}Qry0:",
        "    kind: query",
        f"    reply: {d}Reply0",
        "    fields:",
        "      orderId: string",
        f"  {d}Reply0:",
        "    kind: reply",
        "    fields:",
        f"      order: {{type: {d}Order, optional: true}}",
        "queues:",
        f"  {svc}-queue:",
        "    retry: {attempts: 4, backoff: exponential, initial_delay: 1s, max_delay: 30s}",
        "    bindings:",
        f"      - {{exchange: mmate.commands, routing_key: cmd.{svc}-service.*}}",
        f'      - {{exchange: mmate.events, routing_key: "{svc}.*.*"}}',
        f"      - {{exchange: mmate.queries, routing_key: qry.{d}Qry0}}",
        "services:",
        f"  {svc}-service:",
        "    publishes:",
    ]
    lines += [f'      - {{message: {e}, routing_key: "{svc}.{{status}}.{e}"}}' for e in events]
    lines += [
        "    consumes:",
        f"      {svc}-queue: [{', '.join([*commands, *events, f'{d}Qry0'])}]",
        f"  {svc}-client:",
        "    publishes:",
    ]
    lines += [f"      - {{message: {c}, routing_key: cmd.{svc}-service.{c}}}" for c in commands]
    lines += [f"      - {d}Qry0"]
    return "\n".join(lines) + "\n"


def write_specs(root: Path, messages: int) -> Path:
    specs = root / "specs"
    specs.mkdir(parents=True)
    for k in range(messages // DOMAIN_SIZE):
        (specs / f"domain{k:04d}.yaml").write_text(domain_spec(k), encoding="utf-8")
    return specs


def child(argv: list[str]) -> int:
    """Run the CLI in this process and report its time and peak memory as one JSON line."""
    started = time.perf_counter()
    from mmate_gen.cli import main

    code = main(argv)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"code": code, "seconds_in_process": elapsed, "peak_kb": peak_kb}))
    return 0


def phases(specs: str) -> int:
    """Time the phases of a build in this process (no writing) and report them as one JSON line."""
    from mmate_gen import render
    from mmate_gen.loader import load_specs
    from mmate_gen.models import render_models
    from mmate_gen.ruff import format_all

    marks = {"start": time.perf_counter()}
    spec = load_specs(Path(specs)).spec
    assert spec is not None
    marks["load"] = time.perf_counter()
    models = render_models(spec, "# header")  # datamodel-code-generator and our edits
    marks["models"] = time.perf_counter()
    render.render_models = lambda *_: models  # type: ignore[attr-defined]  # the templates alone:
    renderer = render.Renderer(spec, stamp_version=True)
    python = renderer.python_files()
    marks["templates"] = time.perf_counter()
    format_all(python)
    marks["ruff"] = time.perf_counter()
    for message in spec.messages:
        renderer.schema_file(message)
    marks["schemas"] = time.perf_counter()
    names = list(marks)
    seconds = {b: marks[b] - marks[a] for a, b in itertools.pairwise(names)}
    print(json.dumps(seconds))
    return 0


def measure(*argv: str) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", *argv], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed: {done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise SystemExit(f"mmate-gen {' '.join(argv)} exited {report['code']}:\n{done.stdout}")
    return {"seconds": wall, "peak_mb": report["peak_kb"] / 1024}


def _phases(specs: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--phases", specs], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(sizes: list[int]) -> list[dict[str, float | int]]:
    rows: list[dict[str, float | int]] = []
    for messages in sizes:
        with tempfile.TemporaryDirectory(prefix="mmate-bench-") as tmp:
            specs = write_specs(Path(tmp), messages)
            out = Path(tmp) / "generated"
            build = measure("build", str(specs), "--out", str(out))
            check = measure("check", str(specs), "--out", str(out))
            files = sum(1 for p in out.rglob("*") if p.is_file())
            split = _phases(str(specs))
            row: dict[str, float | int] = {
                "messages": messages,
                "services": 2 * messages // DOMAIN_SIZE,
                "files": files,
                "build_s": round(build["seconds"], 3),
                "check_s": round(check["seconds"], 3),
                "build_peak_mb": round(build["peak_mb"], 1),
                "check_peak_mb": round(check["peak_mb"], 1),
                "build_ms_per_message": round(1000 * build["seconds"] / messages, 2),
                **{f"{name}_s": round(value, 3) for name, value in split.items()},
            }
        print(json.dumps({"benchmark": "generation", **row}), flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict[str, float | int]]) -> str:
    head = (
        "| messages | services | files | build (s) | check (s) | build peak (MB) "
        "| check peak (MB) | build ms/message |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['messages']} | {r['services']} | {r['files']} | {r['build_s']:.2f} "
        f"| {r['check_s']:.2f} | {r['build_peak_mb']:.0f} | {r['check_peak_mb']:.0f} "
        f"| {r['build_ms_per_message']:.1f} |\n"
        for r in rows
    )
    return head + body


def phase_table(rows: list[dict[str, float | int]]) -> str:
    head = (
        "| messages | load specs (s) | models.py (datamodel-code-generator) (s) | templates (s) "
        "| ruff (s) | schemas (s) |\n|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['messages']} | {r['load_s']:.2f} | {r['models_s']:.2f} | {r['templates_s']:.2f} "
        f"| {r['ruff_s']:.2f} | {r['schemas_s']:.2f} |\n"
        for r in rows
    )
    return head + body


def section(rows: list[dict[str, float | int]]) -> str:
    by_size = {int(r["messages"]): r for r in rows}
    verdict = ""
    if 200 in by_size:
        seconds = float(by_size[200]["build_s"])
        ok = "meets" if seconds < TARGET_200 else "MISSES"
        verdict = (
            f"\n200 messages build in {seconds:.2f} s: {ok} the target of {TARGET_200:.0f} s.\n"
        )
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    )
    return (
        f"{HEADING}\n\n"
        "`python bench/generate.py`: `mmate-gen build` into an empty directory, then `mmate-gen "
        "check` of the result, on synthetic specs (per ten messages: five commands, three events, "
        "a query and its reply, an enum, two records, a queue with retries, two services). Each "
        "figure is one fresh process, interpreter start and imports included; peak memory is "
        f"that process's maximum RSS (ruff runs in separate processes). Machine: {machine}.\n\n"
        f"{table(rows)}{verdict}\n"
        "Where a build's time goes (same specs, in one process, nothing written):\n\n"
        f"{phase_table(rows)}"
    )


def write_results(text: str) -> None:
    """Replace the Generation section of RESULTS.md (up to the next ``## `` heading), keeping the
    rest of the file."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    lines = current.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        updated = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    RESULTS.write_text(updated, encoding="utf-8")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--phases":
        return phases(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    rows = run(args.sizes)
    print()
    print(table(rows))
    print(phase_table(rows), end="")
    if not args.no_write:
        write_results(section(rows))
        print(f"\nwritten to {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
