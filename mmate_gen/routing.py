"""Routing keys: templates over message fields, AMQP topic patterns, routes reaching bindings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

MAX_KEY_BYTES = 255
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class TemplatePart:
    """Literal text, or (``field`` set) a placeholder ``{field}`` written as ``text``."""

    text: str
    field: str | None = None


def parse_template(template: str) -> tuple[list[TemplatePart], list[tuple[str, str]]]:
    """The parts of a routing-key template and its problems as (message, hint) pairs."""
    parts: list[TemplatePart] = []
    problems: list[tuple[str, str]] = []
    pos = 0
    for match in _PLACEHOLDER_RE.finditer(template):
        if match.start() > pos:
            parts.append(TemplatePart(template[pos : match.start()]))
        name = match.group(1).strip()
        if not name:
            problems.append(
                ("has an empty placeholder {}", "write {fieldName} or remove the braces")
            )
        parts.append(TemplatePart(match.group(0), name))
        pos = match.end()
    if pos < len(template):
        parts.append(TemplatePart(template[pos:]))
    literal = "".join(p.text for p in parts if p.field is None)
    if "{" in literal or "}" in literal:
        problems.append(("has unbalanced braces", "write each placeholder as {fieldName}"))
    if "*" in literal or "#" in literal:
        problems.append(
            (
                "contains a wildcard (* or #); a published routing key is concrete",
                "use wildcards only in bindings; write a literal word or a {field}",
            )
        )
    if len(literal.encode()) > MAX_KEY_BYTES:
        problems.append(
            (
                "has more than 255 bytes of literal text, AMQP's limit for a routing key",
                "shorten it",
            )
        )
    return parts, problems


def topic_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not an AMQP topic binding pattern, or None when it is one."""
    if len(pattern.encode()) > MAX_KEY_BYTES:
        return "is longer than 255 bytes"
    for word in pattern.split("."):
        if ("*" in word or "#" in word) and word not in ("*", "#"):
            return f'has the word "{word}"; * and # must stand alone between dots'
    return None


def template_words(parts: list[TemplatePart]) -> tuple[str, ...]:
    """Topic words of a template; a word containing a placeholder becomes ``*`` (any one word)."""
    marked = "".join("\x00" if p.field is not None else p.text for p in parts)
    return tuple("*" if "\x00" in word else word for word in marked.split("."))


def topic_overlap(left: tuple[str, ...], right: tuple[str, ...]) -> bool:
    """Whether some routing key matches both topic patterns (``*`` one word, ``#`` zero or more)."""

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(left) and j == len(right):
            return True
        if i < len(left) and left[i] == "#":
            return match(i + 1, j) or (j < len(right) and match(i, j + 1))
        if j < len(right) and right[j] == "#":
            return match(i, j + 1) or (i < len(left) and match(i + 1, j))
        if i < len(left) and j < len(right):
            a, b = left[i], right[j]
            if a == "*" or b == "*" or a == b:
                return match(i + 1, j + 1)
        return False

    return match(0, 0)


def direct_match(parts: list[TemplatePart], key: str) -> bool:
    """Whether a template can produce exactly ``key`` (a placeholder matches anything)."""
    regex = "".join(".*" if p.field is not None else re.escape(p.text) for p in parts)
    return re.fullmatch(regex, key, flags=re.DOTALL) is not None


def route_reaches(exchange_type: str, parts: list[TemplatePart], binding_key: str) -> bool:
    """Whether a message published with template ``parts`` can reach a binding ``binding_key``."""
    if exchange_type in ("fanout", "headers"):
        return True
    if exchange_type == "direct":
        return direct_match(parts, binding_key)
    return topic_overlap(template_words(parts), tuple(binding_key.split(".")))
