"""The ``mmate`` command: operations on a running system (entry point ``mmate.cli:main``).

::

    mmate dlq list QUEUE [--url URL] [--limit N | --all] [--json]
    mmate dlq replay QUEUE (--id ID ... | --all) [--to QUEUE] [--url URL] [--json]
    mmate topology verify|plan|apply --url URL SPECS   (needs the generator, mmate_gen)
    mmate run MODULE:ATTR [--workers N] [--reload] [--config FILE] ...   (mmate._hosting)

The broker URL comes from ``--url``, else ``MMATE_URL``, else
``amqp://guest:guest@127.0.0.1:5672/``; its password is masked in everything printed.

Exit codes: 0 done; 1 failed (no such queue, broker unreachable, or some selected messages were
not replayed or not found); 2 usage error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TextIO

from .._transport.urls import mask
from ..errors import MmateError
from . import dlq

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

OK, FAILED, USAGE = 0, 1, 2


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmate", description="Operate a RabbitMQ system of mmate services."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("topology", help="verify, plan or apply the topology of a spec directory")
    commands.add_parser("run", help="host one service (MODULE:ATTR); docs/running.md")
    dead = commands.add_parser("dlq", help="inspect and replay dead-letter queues")
    actions = dead.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("queue", metavar="QUEUE", help="the dead-letter queue")
        sub.add_argument(
            "--url",
            default=None,
            help="broker URL (default: $MMATE_URL, else amqp://guest:****@127.0.0.1:5672/)",
        )
        sub.add_argument("--json", action="store_true", help="print JSON")

    listing = actions.add_parser("list", help="list dead letters with their reasons")
    common(listing)
    amount = listing.add_mutually_exclusive_group()
    amount.add_argument(
        "--limit", type=_count, default=100, metavar="N", help="show at most N (default 100)"
    )
    amount.add_argument("--all", action="store_true", help="show every message")

    replaying = actions.add_parser("replay", help="move dead letters back to their origin queue")
    common(replaying)
    which = replaying.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id", dest="ids", action="append", metavar="ID", help="a message id (repeatable)"
    )
    which.add_argument("--all", action="store_true", help="replay every message")
    replaying.add_argument(
        "--to", default=None, metavar="QUEUE", help="replay into this queue instead of the origin"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given[:1] == ["topology"]:
        return _topology(args_given[1:])
    if args_given[:1] == ["run"]:
        from .._hosting.command import main as run_main

        return run_main(args_given[1:])
    parser = _parser()
    # aiormq logs each failed connection attempt itself; the error is reported once, below.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else USAGE
    url: str = args.url or os.environ.get("MMATE_URL") or DEFAULT_URL
    if args.command == "dlq" and args.action == "list":
        limit = None if args.all else args.limit
        return _run(_list(url, args.queue, limit, args.json), url)
    ids = None if args.all else list(args.ids)
    return _run(_replay(url, args.queue, ids, args.to, args.json), url)


def _topology(argv: list[str]) -> int:
    try:
        from mmate_gen.live.command import main as topology_main
    except ImportError:
        print("mmate topology needs the generator: pip install 'mmate[gen]'", file=sys.stderr)
        return USAGE
    return topology_main(argv)


def _run(command: Coroutine[Any, Any, int], url: str) -> int:
    try:
        return asyncio.run(command)
    except KeyboardInterrupt:
        _error("interrupted", url)
        return FAILED
    except MmateError as exc:
        _error(str(exc), url)
        return FAILED
    except Exception as exc:  # never a traceback; the text is still masked
        _error(f"{type(exc).__name__}: {exc}", url)
        return FAILED


def _error(text: str, url: str) -> None:
    print(f"mmate: error: {_safe(_masked(text, url))}", file=sys.stderr)


def _masked(text: str, url: str) -> str:
    return text.replace(url, mask(url)) if url else text


async def _list(url: str, queue: str, limit: int | None, as_json: bool) -> int:
    total = await dlq.count_dead_letters(url, queue)
    letters = await dlq.list_dead_letters(url, queue, limit=limit)
    out = sys.stdout
    if as_json:
        document = {"queue": queue, "total": total, "messages": [d.to_json() for d in letters]}
        json.dump(document, out, indent=2, ensure_ascii=True)
        out.write("\n")
        return OK
    shown = f" (showing the first {len(letters)})" if len(letters) < total else ""
    out.write(f"{queue}: {total} dead letter{'s' if total != 1 else ''}{shown}\n")
    if letters:
        _table(out, letters)
    return OK


def _escaped(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _safe(text: str | None) -> str:
    """``text`` with every character Python does not call printable shown escaped: a dead
    letter's ids, type and error texts are untrusted and must not move the cursor, clear or
    retitle the operator's terminal (C0, DEL, C1 controls) or reorder what it shows
    (bidirectional overrides and isolates, other format characters, line separators)."""
    text = text or ""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _short(text: str | None, width: int) -> str:
    text = _safe((text or "").replace("\n", " "))
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(out: TextIO, letters: Sequence[dlq.DeadLetter]) -> None:
    rows = [
        ("#", "MESSAGE ID", "TYPE", "REASON", "ATTEMPTS", "ORIGIN QUEUE", "LAST FAILURE", "ERROR")
    ]
    for d in letters:
        error = f"{d.error_class}: {d.error_message}" if d.error_class else ""
        rows.append(
            (
                str(d.position),
                _safe(d.message_id) or "-",
                _safe(d.type) or "-",
                _safe(d.reason),
                "-" if d.attempts is None else str(d.attempts),
                _safe(d.original_queue) or "-",
                _safe(d.last_failure) or "-",
                _short(error, 80),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


async def _replay(
    url: str, queue: str, ids: list[str] | None, to: str | None, as_json: bool
) -> int:
    result = await dlq.replay(url, queue, message_ids=ids, to=to)
    out = sys.stdout
    if as_json:
        document = {
            "queue": queue,
            "examined": result.examined,
            "moved": [{"messageId": m.message_id, "to": m.to} for m in result.moved],
            "skipped": [
                {"messageId": s.message_id, "position": s.position, "reason": s.reason}
                for s in result.skipped
            ],
            "notFound": result.not_found,
        }
        json.dump(document, out, indent=2, ensure_ascii=True)
        out.write("\n")
    else:
        out.write(
            f"{queue}: moved {result.moved_count} of {result.examined} examined "
            f"message{'s' if result.examined != 1 else ''}\n"
        )
        for m in result.moved:
            out.write(f"  moved    {_safe(m.message_id) or '-'} -> {_safe(m.to)}\n")
        for s in result.skipped:
            out.write(f"  skipped  #{s.position} {_safe(s.message_id) or '-'}: {_safe(s.reason)}\n")
        for missing in result.not_found:
            out.write(f"  not found {_safe(missing)}\n")
    if result.complete:
        return OK
    left = len(result.skipped) + len(result.not_found)
    _error(f"{left} of the selected messages were not replayed (see above)", url)
    return FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
