"""Python source text for values: literals, docstrings and f-strings, always valid and escaped."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence

PyValue = (
    str
    | int
    | float
    | bool
    | None
    | Sequence["PyValue"]
    | Mapping[str, "PyValue"]
    | Mapping[int, "PyValue"]
)
"""What ``python_literal`` renders."""


def python_literal(value: PyValue) -> str:
    """A Python expression equal to ``value``; strings double-quoted as ruff writes them, tuples as
    tuples, lists as lists, mappings as dicts in their own order."""
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        items = (f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    items_text = ", ".join(python_literal(v) for v in value)
    if isinstance(value, tuple):
        return f"({items_text},)" if len(value) == 1 else f"({items_text})"
    return f"[{items_text}]"


def string_literal(text: str) -> str:
    """A double-quoted Python string literal of ``text`` (JSON escapes are Python escapes)."""
    return json.dumps(text, ensure_ascii=False)


def fstring(parts: Sequence[tuple[str, str | None]]) -> str:
    """An f-string of literal text and expressions; ``(text, None)`` is literal, ``(_, expr)`` an
    expression. Without expressions, a plain string literal."""
    if all(expr is None for _, expr in parts):
        return string_literal("".join(text for text, _ in parts))
    body = "".join(
        string_literal(text)[1:-1].replace("{", "{{").replace("}", "}}")
        if expr is None
        else "{" + expr + "}"
        for text, expr in parts
    )
    return f'f"{body}"'


def docstring(text: str, indent: str = "", width: int = 100) -> str:
    """A triple-quoted docstring of ``text`` for a body indented by ``indent``: one line when it
    fits in ``width`` columns, else wrapped at word boundaries (the text's own line breaks kept)."""
    escaped = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if escaped.endswith('"'):
        escaped = escaped[:-1] + '\\"'
    room = width - len(indent) - 3
    if "\n" not in escaped and len(escaped) + 3 <= room:
        return f'"""{escaped}"""'
    lines: list[str] = []
    for line in escaped.split("\n"):
        wrapped = textwrap.wrap(line, room, break_long_words=False, break_on_hyphens=False)
        lines.extend(wrapped or [""])
    rest = "".join(f"\n{indent}{line}" if line else "\n" for line in lines[1:])
    return f'"""{lines[0]}{rest}\n{indent}"""'
