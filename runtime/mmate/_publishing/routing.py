"""Fill a routing-key template such as ``order.{region}.created`` from a message's fields.

Placeholders name fields by their JSON name (camelCase), as in the spec. Generated publisher methods
fill their template themselves; the runtime uses this only when it is given no routing key.
Templates are parsed once and a model class's JSON-name -> attribute map is built once, both cached.
"""

from __future__ import annotations

import enum
import string
from functools import lru_cache

from .._contract.model import Model
from ..errors import MmateError


@lru_cache(maxsize=512)
def _parse(template: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))


@lru_cache(maxsize=512)
def _attributes(model: type[Model]) -> dict[str, str]:
    names: dict[str, str] = {}
    for attr, info in model.model_fields.items():
        names[attr] = attr
        if info.alias:
            names[info.alias] = attr
    return names


def fill(template: str, message: Model) -> str:
    """The routing key for ``message``; raises ``MmateError`` for a placeholder naming no field."""
    if "{" not in template:
        return template
    attributes = _attributes(type(message))
    parts: list[str] = []
    for literal, name in _parse(template):
        parts.append(literal)
        if name is None:
            continue
        attr = attributes.get(name)
        if attr is None:
            raise MmateError(
                f"routing key {template!r}: {type(message).__name__} has no field {name!r}"
            )
        value = getattr(message, attr)
        parts.append(str(value.value if isinstance(value, enum.Enum) else value))
    return "".join(parts)
