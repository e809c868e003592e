"""Documents as text: JSON or YAML, keys sorted, so the same document gives the same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml

Format = Literal["json", "yaml"]


def format_for(path: Path | None, given: str | None) -> Format:
    """``given`` when set, else by ``path``'s suffix (``.json``: JSON), else YAML."""
    if given == "json" or (given is None and path is not None and path.suffix == ".json"):
        return "json"
    return "yaml"


def dumps(document: Any, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    text: str = yaml.safe_dump(
        document, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100
    )
    return text
