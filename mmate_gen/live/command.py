"""``mmate topology verify|plan|apply --url URL SPECS``: the specs' topology against a live broker.

::

    mmate topology verify --url URL SPECS   # exit 1 when something is missing or different
    mmate topology plan   --url URL SPECS   # what apply (or a service's declare) would do
    mmate topology apply  --url URL SPECS   # declare what is missing; refuse when a declare
                                            # would fail with 406 (names them, declares nothing)

Entities: every exchange, queue (dead-letter and wait queues included) and binding of the specs,
and the delay cascade a client declares once it delays (``--no-delay-cascade`` leaves it out).
Through the management API (``--management-url``, default the broker's host, port 15672) types,
flags and arguments are compared and extra entities listed; when it cannot be used, existence is
checked over AMQP and the report says what could not be compared. Extras never fail ``verify``
unless ``--strict``. Exit codes: 0 fine; 1 problems found, apply refused, specs invalid or the
broker unreachable; 2 usage error. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mmate import Client, MmateError
from mmate._transport.urls import mask

from ..broker.entities import Entities
from ..broker.wanted import wanted_entities
from ..cli_support import load_or_report
from .amqp import SERVICE, declare_missing, probe
from .compare import KIND_ORDER, Item, Plan, compare
from .management import ManagementApi, ManagementUnavailable, VhostMissing

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
OK, FAILED, USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmate topology",
        description="Compare, plan or apply the topology of a spec directory on a broker.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("verify", "report missing, different (would 406) and extra entities; exit 1 on problems"),
        ("plan", "print what a declare would create and what it would refuse"),
        ("apply", "declare only what is missing; refuse when something would 406"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("specs", type=Path, metavar="SPECS", help="directory of *.yaml specs")
        sub.add_argument(
            "--url", default=None, help="broker URL (default: $MMATE_URL, else local guest)"
        )
        sub.add_argument(
            "--management-url",
            default=None,
            metavar="URL",
            help="management API (default: http://<broker host>:15672, the URL's credentials)",
        )
        sub.add_argument(
            "--no-delay-cascade", action="store_true", help="leave out the mmate.delay cascade"
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.add_argument("--strict", action="store_true", help="verify: extra entities fail too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else USAGE
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    url: str = args.url or os.environ.get("MMATE_URL") or DEFAULT_URL
    spec = load_or_report(args.specs, strict=False, doing="nothing compared")
    if spec is None:
        return FAILED
    wanted = wanted_entities(spec, delay_cascade=not args.no_delay_cascade)
    try:
        return asyncio.run(_run(args, url, wanted))
    except KeyboardInterrupt:
        print("mmate: interrupted", file=sys.stderr)
        return FAILED
    except (MmateError, VhostMissing) as exc:
        print(f"mmate: error: {str(exc).replace(url, mask(url))}", file=sys.stderr)
        return FAILED
    except Exception as exc:  # never a traceback; still masked
        text = f"{type(exc).__name__}: {exc}".replace(url, mask(url))
        print(f"mmate: error: {text}", file=sys.stderr)
        return FAILED


def read_plan(url: str, management_url: str | None, wanted: Entities) -> tuple[Plan | None, str]:
    """The plan from the management API, or (None, why it cannot be used)."""
    try:
        state = ManagementApi(url, management_url).state()
    except ManagementUnavailable as exc:
        return None, str(exc)
    return compare(wanted, state), ""


async def _run(args: argparse.Namespace, url: str, wanted: Entities) -> int:
    plan, why = await asyncio.to_thread(read_plan, url, args.management_url, wanted)
    if plan is None:
        print(f"mmate: {why}; checking existence over AMQP only", file=sys.stderr)
    if plan is None or args.action == "apply":
        async with Client(url, service=SERVICE, delay_relay=False) as client:
            if plan is None:
                plan = await probe(client, wanted)
            if args.action == "apply":
                return await _apply(client, plan, wanted, args.json)
    _print(plan, args.action, url, args.json)
    if args.action == "plan":
        return FAILED if plan.having("different") else OK
    failing = plan.problems + (plan.having("extra") if args.strict else [])
    return FAILED if failing else OK


def _sorted(items: list[Item]) -> list[Item]:
    return sorted(items, key=lambda i: (KIND_ORDER[i.kind], i.name))


_VERBS = {
    "verify": {
        "missing": "missing",
        "different": "different (a declare would fail with 406 PRECONDITION_FAILED)",
        "extra": "extra (not in the specs)",
        "exists": "exists (not compared)",
    },
    "plan": {
        "missing": "would create",
        "different": "would refuse (406 PRECONDITION_FAILED)",
        "extra": "would leave alone (not in the specs)",
        "exists": "exists, would redeclare (not compared)",
    },
}


def _print(plan: Plan, action: str, url: str, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        document = {
            "url": mask(url),
            "source": plan.source,
            "items": [
                {
                    "kind": i.kind,
                    "name": i.name,
                    "status": i.status,
                    "what": i.what,
                    "detail": i.detail,
                }
                for i in _sorted(plan.items)
            ],
            "notCompared": plan.not_compared,
            "skipped": plan.skipped,
        }
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    verbs = _VERBS["plan" if action == "plan" else "verify"]
    out.write(f"{mask(url)} (read through the {plan.source})\n")
    for status in ("different", "missing", "extra", "exists"):
        for i in _sorted(plan.having(status)):
            detail = f": {i.detail}" if i.detail else ""
            out.write(f"{verbs[status]}: {i.kind} {i.name} ({i.what}){detail}\n")
    for note in plan.not_compared:
        out.write(f"not compared: {note}\n")
    for note in plan.skipped:
        out.write(f"skipped: {note}\n")
    ok = plan.having("ok")
    counts = {k: sum(i.kind == k for i in ok) for k in ("exchange", "queue", "binding")}
    out.write(
        f"{counts['exchange']} exchanges, {counts['queue']} queues, {counts['binding']} bindings "
        f"match; {len(plan.having('missing'))} missing, {len(plan.having('different'))} "
        f"different, {len(plan.having('extra'))} extra\n"
    )


async def _apply(client: Client, plan: Plan, wanted: Entities, as_json: bool) -> int:
    refused = _sorted(plan.having("different"))
    if refused:
        for i in refused:
            print(
                f"mmate: refusing: {i.kind} {i.name} exists with other settings ({i.detail}); "
                "a declare would fail with 406 PRECONDITION_FAILED",
                file=sys.stderr,
            )
        print(
            f"mmate: apply declared nothing: {len(refused)} entities would be refused; "
            "migrate them first (see `mmate-gen diff` for the migrations)",
            file=sys.stderr,
        )
        return FAILED
    done = await declare_missing(client, plan, wanted)
    if as_json:
        json.dump({"declared": done, "notCompared": plan.not_compared}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in done:
            sys.stdout.write(f"declared {line}\n")
        for note in plan.not_compared:
            sys.stdout.write(f"not compared: {note}\n")
        sys.stdout.write(f"applied: {len(done)} declared" if done else "nothing to declare")
        sys.stdout.write("\n")
    return OK
