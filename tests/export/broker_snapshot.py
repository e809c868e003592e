"""What a vhost holds, read with rabbitmqctl (independent of the code under test)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

Snapshot = dict[str, list[tuple[Any, ...]]]


def _list(what: str, vhost: str, *columns: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["rabbitmqctl", "-q", what, "-p", vhost, *columns, "--formatter", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return rows


def _args(value: Any) -> tuple[tuple[str, str], ...]:
    # rabbitmqctl shows arguments as [name, type, value] triples
    return tuple(sorted((str(k), json.dumps(v)) for k, _type, v in value))


def snapshot(vhost: str) -> Snapshot:
    queues = _list("list_queues", vhost, "name", "durable", "auto_delete", "arguments")
    exchanges = _list(
        "list_exchanges", vhost, "name", "type", "durable", "auto_delete", "internal", "arguments"
    )
    bindings = _list("list_bindings", vhost)
    return {
        "queues": sorted(
            (q["name"], q["durable"], q["auto_delete"], _args(q["arguments"])) for q in queues
        ),
        "exchanges": sorted(
            (
                e["name"],
                e["type"],
                e["durable"],
                e["auto_delete"],
                e["internal"],
                _args(e["arguments"]),
            )
            for e in exchanges
        ),
        "bindings": sorted(
            (
                b["source_name"],
                b["destination_kind"],
                b["destination_name"],
                b["routing_key"],
                _args(b["arguments"]),
            )
            for b in bindings
        ),
    }
