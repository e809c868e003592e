"""The ``mmate run`` command line (docs/running.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import config, reload, runner, workers
from .target import TargetError, split

# flag -> RunConfig field, for the flags a worker is started with again
_FORWARDED = {
    "url": "urls",
    "prefetch": "prefetch",
    "concurrency": "concurrency",
    "health_host": "health_host",
    "log_level": "log_level",
    "log_format": "log_format",
    "drain_timeout": "drain_timeout",
    "gc_freeze": "gc_freeze",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmate run",
        description="Host one service: connect, declare its topology, serve, health, drain on "
        "SIGTERM. Settings: flag > environment > --config file > App > default.",
    )
    p.add_argument("target", metavar="MODULE:ATTR", help="a handler object, factory or mmate.App")
    p.add_argument(
        "--workers", default=None, metavar="N", help="worker processes ($MMATE_WORKERS, 1)"
    )
    p.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="a TOML file")
    p.add_argument(
        "--url", default=None, help="broker URL(s), comma-separated ($MMATE_URL, else localhost)"
    )
    p.add_argument("--prefetch", default=None, metavar="N", help="$MMATE_PREFETCH (spec value)")
    p.add_argument(
        "--concurrency", default=None, metavar="N", help="$MMATE_CONCURRENCY (spec value)"
    )
    p.add_argument(
        "--health-port", default=None, metavar="P", help="$MMATE_HEALTH_PORT (8080; off: none)"
    )
    p.add_argument("--health-host", default=None, metavar="HOST", help="$MMATE_HEALTH_HOST")
    p.add_argument("--log-level", default=None, metavar="LEVEL", help="$MMATE_LOG_LEVEL (INFO)")
    p.add_argument(
        "--log-format", default=None, metavar="FMT", help="text|json ($MMATE_LOG_FORMAT)"
    )
    p.add_argument("--drain-timeout", default=None, metavar="S", help="$MMATE_DRAIN_TIMEOUT (30 s)")
    p.add_argument(
        "--gc-freeze",
        default=None,
        metavar="on|off",
        help="freeze the objects alive once serving ($MMATE_GC_FREEZE, on)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Run ``mmate run argv``; returns the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else runner.USAGE
    flags: dict[str, object] = {field: getattr(args, flag) for flag, field in _FORWARDED.items()}
    flags["health_port"] = args.health_port
    flags["workers"] = args.workers
    try:
        split(args.target)
        cfg = config.resolve(file=args.config, flags=flags)
    except (config.ConfigError, TargetError) as exc:
        runner.error(str(exc))
        return runner.USAGE
    if args.reload and not reload.available():
        runner.error(reload.INSTALL)
        return runner.USAGE
    if args.reload or cfg.workers > 1:
        logs_configure(cfg)
        child = [args.target]
        for flag in _FORWARDED:
            value = getattr(args, flag)
            if value is not None:
                child += [f"--{flag.replace('_', '-')}", str(value)]
        if args.config is not None:
            child += ["--config", str(args.config)]
        os.environ["MMATE_WORKERS"] = "1"
        if args.reload:
            port = "off" if cfg.health_port is None else str(cfg.health_port)
            child += ["--health-port", port]
            return reload.run(child, Path.cwd())
        os.environ.pop("MMATE_HEALTH_PORT", None)
        return workers.Supervisor(child, cfg.workers, cfg.health_port).run()
    flags.pop("workers")
    return runner.host(args.target, flags, args.config)


def logs_configure(cfg: config.RunConfig) -> None:
    from .logs import configure

    configure(cfg.log_level, cfg.log_format)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
