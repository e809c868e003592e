"""``mmate-gen``: build the generated package from a spec directory, or check it is up to date;
export the specs (AsyncAPI, RabbitMQ definitions, mermaid); classify the changes between two spec
versions (``diff``).

Exit codes: 0 success; 1 spec errors (or warnings under ``--strict``), drift found by ``--check``,
breaking changes found by ``diff``, or output that cannot be written; 2 a usage error or an
internal error of mmate-gen (a bug). Diagnostics go to stderr, the one-line summary to stdout.
Nothing is written unless the whole command succeeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .cli_support import load_or_report, print_diagnostics
from .diagnostics import SpecError
from .diff.command import run_diff
from .export.commands import export_asyncapi, export_definitions, export_mermaid
from .output import NotOurs, compare_tree, write_tree
from .render import render_all

DEFAULT_OUT = Path("generated")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmate-gen",
        description="Generate typed Python (models, publishers, handler bases, topology) from "
        "mmate YAML specs.",
    )
    parser.add_argument("--version", action="version", version=f"mmate-gen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("specs", type=Path, metavar="SPECS", help="directory of *.yaml specs")
        sub.add_argument(
            "--out",
            type=Path,
            default=DEFAULT_OUT,
            metavar="DIR",
            help="package directory to write (default: generated/)",
        )
        sub.add_argument(
            "--strict", action="store_true", help="fail on warnings too, not only on errors"
        )
        sub.add_argument(
            "--omit-version",
            action="store_true",
            help="leave the mmate-gen version out of the do-not-edit headers",
        )

    build = commands.add_parser("build", help="generate the package from SPECS")
    common(build)
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when DIR differs from what SPECS generate",
    )
    check = commands.add_parser("check", help="same as build --check")
    common(check)
    _export_parser(commands)
    _diff_parser(commands)
    return parser


def _diff_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = commands.add_parser(
        "diff",
        help="classify the changes between two spec versions (WIRE, CODE, TOPOLOGY)",
        description="mmate-gen diff OLD_SPECS NEW_SPECS, or mmate-gen diff SPECS --against "
        "git:REF. Exit 1 when a breaking change is found that no --allow entry allows.",
    )
    diff.add_argument("paths", type=Path, nargs="+", metavar="SPECS", help="OLD_SPECS NEW_SPECS")
    diff.add_argument(
        "--against", default=None, metavar="git:REF", help="compare SPECS with SPECS at REF"
    )
    diff.add_argument(
        "--format", choices=("text", "json", "github"), default="text", help="default: text"
    )
    diff.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="RULE[:SUBJECT]",
        help="do not fail on this finding (SUBJECT may use * wildcards); repeatable",
    )
    diff.add_argument(
        "--allow-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="allow entries, one per line, # comments; repeatable",
    )
    diff.add_argument(
        "--strict", action="store_true", help="fail on spec warnings too, not only on errors"
    )


def _export_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="export SPECS as AsyncAPI 3.0, RabbitMQ definitions or a mermaid diagram"
    )
    kinds = export.add_subparsers(dest="kind", required=True, metavar="KIND")

    def common(sub: argparse.ArgumentParser, out_help: str) -> None:
        sub.add_argument("specs", type=Path, metavar="SPECS", help="directory of *.yaml specs")
        sub.add_argument("--out", type=Path, default=None, metavar="FILE", help=out_help)
        sub.add_argument(
            "--strict", action="store_true", help="fail on warnings too, not only on errors"
        )

    asyncapi = kinds.add_parser("asyncapi", help="an AsyncAPI 3.0 document")
    common(asyncapi, "file to write (default: stdout); .json writes JSON, else YAML")
    asyncapi.add_argument(
        "--format", choices=("yaml", "json"), default=None, help="default: by --out's suffix"
    )
    asyncapi.add_argument("--title", default=None, help="info.title (default: SPECS (mmate))")
    asyncapi.add_argument(
        "--api-version", default=None, help="info.version (default: the messages' version)"
    )
    asyncapi.add_argument("--vhost", default="/", help="vhost in the AMQP bindings (default /)")

    definitions = kinds.add_parser(
        "definitions", help="a RabbitMQ definitions file (rabbitmqctl import_definitions)"
    )
    common(definitions, "file to write (default: stdout)")
    definitions.add_argument("--vhost", default="/", help="vhost of every entry (default /)")
    definitions.add_argument(
        "--no-delay-cascade",
        action="store_true",
        help="leave out the delay cascade (mmate.delay.*) that serving clients declare",
    )

    mermaid = kinds.add_parser("mermaid", help="a mermaid diagram of services and routes")
    common(mermaid, "file to write (default: stdout)")
    mermaid.add_argument(
        "--format",
        choices=("mermaid", "markdown"),
        default="mermaid",
        help="the diagram alone (default) or a markdown page holding it",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "export":
            return _export(args)
        if args.command == "diff":
            return run_diff(
                args.paths,
                against=args.against,
                fmt=args.format,
                allow=args.allow,
                allow_files=args.allow_file,
                strict=args.strict,
            )
        return _run(
            specs=args.specs,
            out=args.out,
            check=args.command == "check" or args.check,
            strict=args.strict,
            stamp_version=not args.omit_version,
        )
    except KeyboardInterrupt:
        print("mmate-gen: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: say so in one line, never a traceback
        print(f"mmate-gen: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _export(args: argparse.Namespace) -> int:
    if args.kind == "asyncapi":
        return export_asyncapi(
            args.specs,
            args.out,
            fmt=args.format,
            title=args.title,
            version=args.api_version,
            vhost=args.vhost,
            strict=args.strict,
        )
    if args.kind == "definitions":
        return export_definitions(
            args.specs,
            args.out,
            vhost=args.vhost,
            delay_cascade=not args.no_delay_cascade,
            strict=args.strict,
        )
    return export_mermaid(args.specs, args.out, fmt=args.format, strict=args.strict)


def _run(*, specs: Path, out: Path, check: bool, strict: bool, stamp_version: bool) -> int:
    spec = load_or_report(specs, strict=strict)
    if spec is None:
        return 1
    try:
        files = render_all(spec, stamp_version=stamp_version)
    except SpecError as exc:
        print_diagnostics(exc.diagnostics, sys.stderr)
        print(f"mmate-gen: {specs.as_posix()} has errors; nothing written", file=sys.stderr)
        return 1
    shown = f"{out.as_posix().rstrip('/')}/"
    if check:
        drift = compare_tree(out, files)
        if drift:
            for entry in drift:
                print(entry, file=sys.stderr)
            print(
                f"mmate-gen: {shown} is out of date with {specs.as_posix()} "
                f"({_files(len(drift))}); run mmate-gen build {specs.as_posix()} --out {shown}"
                + ("" if stamp_version else " --omit-version"),
                file=sys.stderr,
            )
            return 1
        print(f"{shown} is up to date")
        return 0
    try:
        written = write_tree(out, files)
    except NotOurs as exc:
        print(f"mmate-gen: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mmate-gen: cannot write {shown}: {exc}", file=sys.stderr)
        return 1
    if not written.written and not written.deleted:
        print(f"{shown} is up to date ({_files(len(files))})")
        return 0
    removed = (
        f", removed {_files(len(written.deleted))} no longer generated" if written.deleted else ""
    )
    print(f"wrote {_files(len(written.written))} to {shown}{removed}")
    return 0


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


if __name__ == "__main__":
    sys.exit(main())
