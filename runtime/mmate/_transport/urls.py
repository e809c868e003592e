"""Broker URLs: check them, and mask passwords for anything humans read.

``amqp://user:pass@host:5672/vhost`` and ``amqps://...`` (TLS). The vhost is the path (``%2F`` for
``/``). Query parameters understood by aiormq pass through (``heartbeat``, ``name``, ``cafile``,
``certfile``, ``keyfile``, ``no_verify_ssl``, ``timeout``). ``mask`` is the only way a URL reaches a
log line, an error message or a repr.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import MmateError

SCHEMES = ("amqp", "amqps")


def mask(url: str) -> str:
    """The URL with its password replaced by ``****`` (``amqp://guest:****@host/``). Never
    raises."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = _port_text(parts.netloc)
    netloc = f"{user}:****@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _port_text(netloc: str) -> str:
    """The port of ``user:pass@host:port`` as written (kept even when it is not a number)."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport.partition("]:")[2]
    return hostport.partition(":")[2]


def vhost_of(url: str) -> str:
    """The virtual host a URL names (``/`` when the path is empty)."""
    path = urlsplit(url).path
    return "/" if path in ("", "/") else unquote(path[1:])


def validate(url: str) -> str:
    """Check a broker URL when a client is created and return its scheme: ``amqp`` or ``amqps``
    (RabbitMQ; a host and, when given, a port of 1-65535) or ``memory`` (the in-process broker,
    ``memory://`` or ``memory://name``). Raises ``MmateError`` with the password masked."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise MmateError(f"invalid broker URL {mask(url)}: {exc}") from None
    if parts.scheme == "memory":
        return "memory"
    if parts.scheme not in SCHEMES:
        raise MmateError(f"broker URL {mask(url)} must start with amqp://, amqps:// or memory://")
    if not parts.hostname:
        raise MmateError(f"broker URL {mask(url)} names no host")
    try:
        port = parts.port
    except ValueError:
        raise MmateError(
            f"broker URL {mask(url)} has an invalid port {_port_text(parts.netloc)!r}; write a "
            "number from 1 to 65535 (amqp:// uses 5672, amqps:// 5671)"
        ) from None
    if port == 0:
        raise MmateError(f"broker URL {mask(url)} has port 0; write a number from 1 to 65535")
    return parts.scheme
