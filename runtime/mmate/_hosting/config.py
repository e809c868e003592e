"""The settings of ``mmate run``: defaults < App object < TOML file < environment < CLI flags.

Every invalid value raises ``ConfigError`` naming the variable or key and what to write.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """An invalid setting; the text names where it came from and what to write."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What ``mmate run`` uses; each field can come from a flag, a variable or a file key."""

    urls: tuple[str, ...] = (DEFAULT_URL,)
    prefetch: int | None = None
    concurrency: int | None = None
    health_host: str = "127.0.0.1"
    health_port: int | None = 8080
    log_level: str = "INFO"
    log_format: str = "text"
    drain_timeout: float = 30.0
    workers: int = 1
    gc_freeze: bool = True
    """Once serving, move every object alive to the garbage collector's permanent generation
    (``gc.freeze``), so its full collections stop re-scanning the imports and the start-up."""
    provided: frozenset[str] = field(default=frozenset(), compare=False)
    """The fields set by something other than the defaults."""


# field -> (environment variable, TOML key)
SOURCES: dict[str, tuple[str, str]] = {
    "urls": ("MMATE_URL", "url"),
    "prefetch": ("MMATE_PREFETCH", "prefetch"),
    "concurrency": ("MMATE_CONCURRENCY", "concurrency"),
    "health_host": ("MMATE_HEALTH_HOST", "health_host"),
    "health_port": ("MMATE_HEALTH_PORT", "health_port"),
    "log_level": ("MMATE_LOG_LEVEL", "log_level"),
    "log_format": ("MMATE_LOG_FORMAT", "log_format"),
    "drain_timeout": ("MMATE_DRAIN_TIMEOUT", "drain_timeout"),
    "workers": ("MMATE_WORKERS", "workers"),
    "gc_freeze": ("MMATE_GC_FREEZE", "gc_freeze"),
}


def _parsed(value: object, convert: type[int] | type[float]) -> int | float | None:
    """``value`` (a number, or a string from the environment) as ``convert`` makes it; None
    when it is not one (booleans included: ``true`` is no port)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if convert is int and isinstance(value, float):
        return None
    try:
        return convert(value)
    except ValueError:
        return None


def _positive_int(value: object, where: str) -> int:
    number = _parsed(value, int)
    if not isinstance(number, int) or number < 1:
        raise ConfigError(f"{where}: write a whole number of at least 1, not {value!r}")
    return number


def _port(value: object, where: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
        return None
    number = _parsed(value, int)
    if not isinstance(number, int) or not 0 <= number <= 65535:
        raise ConfigError(f"{where}: write a port 0-65535 or 'off', not {value!r}")
    return number


def _seconds(value: object, where: str) -> float:
    number = _parsed(value, float)
    if number is None or not number >= 0:
        raise ConfigError(f"{where}: write a number of seconds (e.g. 30), not {value!r}")
    return float(number)


def _urls(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [str(v).strip() for v in value]
    else:
        raise ConfigError(f"{where}: write amqp://user:password@host:5672/vhost (comma-separated)")
    items = [item for item in items if item]
    if not items:
        raise ConfigError(f"{where}: write at least one broker URL, e.g. amqp://host:5672/")
    for item in items:
        if not item.startswith(("amqp://", "amqps://", "memory://")):
            raise ConfigError(
                f"{where}: a broker URL starts with amqp://, amqps:// or memory://"
                " (the value is not shown: it may hold a password)"
            )
    return tuple(items)


_ON = ("on", "true", "yes", "1")
_OFF = ("off", "false", "no", "0")


def _switch(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _ON or text in _OFF:
        return text in _ON
    raise ConfigError(f"{where}: write on or off, not {value!r}")


def _choice(value: object, where: str, choices: tuple[str, ...], upper: bool) -> str:
    text = str(value).strip()
    text = text.upper() if upper else text.lower()
    if not isinstance(value, str) or text not in choices:
        raise ConfigError(f"{where}: write one of {', '.join(choices)}, not {value!r}")
    return text


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: write a host name or address, not {value!r}")
    return value.strip()


def parse(name: str, value: object, where: str) -> Any:
    """``value`` of field ``name`` checked and converted; ``where`` names its source."""
    match name:
        case "urls":
            return _urls(value, where)
        case "prefetch" | "concurrency" | "workers":
            return _positive_int(value, where)
        case "health_port":
            return _port(value, where)
        case "health_host":
            return _text(value, where)
        case "log_level":
            return _choice(value, where, LOG_LEVELS, upper=True)
        case "log_format":
            return _choice(value, where, LOG_FORMATS, upper=False)
        case "drain_timeout":
            return _seconds(value, where)
        case "gc_freeze":
            return _switch(value, where)
    raise ConfigError(f"{where}: unknown setting")


def read_file(path: Path) -> dict[str, object]:
    """The ``[mmate]`` table of a TOML file (or its top level when it has none)."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    table = document.get("mmate", document)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [mmate] must be a table")
    keys = {key for _env, key in SOURCES.values()}
    for key in table:
        if key not in keys:
            raise ConfigError(
                f"{path}: unknown key {key!r}; the keys are {', '.join(sorted(keys))}"
            )
    return dict(table)


def resolve(
    *,
    app: Mapping[str, object] | None = None,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> RunConfig:
    """Merge the sources, lowest precedence first: defaults, ``app``, ``file``, ``env``, ``flags``.

    ``app`` and ``flags`` are keyed by field name; ``None`` values are not set.
    """
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, value in (app or {}).items():
        if value is not None:
            values[name] = parse(name, value, f"App option {name}")
    if file is not None:
        table = read_file(file)
        for name, (_env, key) in SOURCES.items():
            if key in table:
                values[name] = parse(name, table[key], f"{file}: key {key}")
    for name, (variable, _key) in SOURCES.items():
        if variable in environ:
            values[name] = parse(name, environ[variable], f"environment variable {variable}")
    for name, value in (flags or {}).items():
        if value is not None:
            flag = "--" + ("url" if name == "urls" else name.replace("_", "-"))
            values[name] = parse(name, value, flag)
    known = {f.name for f in fields(RunConfig)}
    return replace(RunConfig(), **values, provided=frozenset(values) & known)
