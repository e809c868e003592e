"""Loading ``MODULE:ATTR`` for ``mmate run``: a handler object, a zero-argument factory of one
(sync or async), or an ``App``; always returned as an ``App``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from .._contract.handler import HandlerBase
from .._contract.registry import HandlerRegistry
from .app import App


class TargetError(Exception):
    """``MODULE:ATTR`` is malformed, cannot be imported, or names something else."""


def split(target: str) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise TargetError(f"{target!r}: write MODULE:ATTR, e.g. myservice.app:app")
    return module, attr


async def load(target: str) -> App:
    """Import ``target`` (the current directory is on the import path) and make it an ``App``."""
    module_name, attr = split(target)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    found: object = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise TargetError(f"{module_name} has no attribute {attr}") from None
    if isinstance(found, App):
        return found
    if isinstance(found, (HandlerBase, HandlerRegistry)):
        return App(found)
    if callable(found) and not isinstance(found, type):
        try:
            made = found()
            if inspect.isawaitable(made):
                made = await made
        except Exception as exc:
            raise TargetError(f"{target}() failed: {type(exc).__name__}: {exc}") from None
        if isinstance(made, App):
            return made
        if isinstance(made, (HandlerBase, HandlerRegistry)):
            return App(made)
        raise TargetError(
            f"{target}() returned {type(made).__name__}; it must return a handler object "
            "(a <Service>Handlers subclass instance or <Service>Routes) or a mmate.App"
        )
    raise TargetError(
        f"{target} is a {type(found).__name__}; name a handler object, a zero-argument "
        "function returning one, or a mmate.App"
    )
