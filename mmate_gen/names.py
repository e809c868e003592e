"""Naming rules of the spec language: case conversions, patterns, reserved names, did-you-mean."""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Iterable

import pydantic

PASCAL_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
CAMEL_RE = re.compile(r"^[a-z][A-Za-z0-9]*$")
SERVICE_RE = re.compile(r"^[a-z][a-z0-9-]*$")

ENVELOPE_NAMES = ("id", "type", "timestamp", "correlationId")
"""JSON names that live in the envelope (docs/interop.md, "The envelope"), never in a payload."""

RESERVED_MODULES = frozenset({"models", "topology", "schemas"})
"""Module names of the generated package that a service module must not take."""

PYDANTIC_ATTRIBUTES = frozenset(
    name for name in dir(pydantic.BaseModel) if not name.startswith("_")
) | {"model_config", "model_fields"}
"""Attributes of pydantic's BaseModel that a field's Python name would shadow."""


def snake_case(name: str) -> str:
    """Snake case: ``customerId`` -> ``customer_id``, ``orderID`` -> ``order_id``."""
    step = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    step = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", step)
    return step.replace("-", "_").lower()


def pascal_case(name: str) -> str:
    """``order-service`` -> ``OrderService``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name) if part)


def python_name_problem(py_name: str) -> str | None:
    """Why ``py_name`` cannot be an attribute of a generated model, or None when it can."""
    if keyword.iskeyword(py_name):
        return "is a Python keyword"
    if py_name in PYDANTIC_ATTRIBUTES or py_name.startswith("model_"):
        return "is an attribute of pydantic's BaseModel"
    return None


def quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def did_you_mean(name: str, candidates: Iterable[str], fallback: str) -> str:
    """A hint: the closest candidate as ``did you mean "x"?``, else ``fallback``."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    return fallback


def one_of(candidates: Iterable[str], limit: int = 12) -> str:
    """``write one of: a, b, c`` (at most ``limit`` names, then an ellipsis)."""
    names = sorted(set(candidates))
    if not names:
        return "define it first"
    shown = ", ".join(names[:limit])
    more = ", ..." if len(names) > limit else ""
    return f"write one of: {shown}{more}"


def abbreviated(text: str, limit: int = 60) -> str:
    """``text`` for a message: whole when short, else its start and its length in bytes."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}... ({len(text.encode())} bytes)"
