"""Broker URLs: build the URL aiormq connects with, and mask passwords for anything humans read.

``amqp://user:pass@host:5672/vhost`` and ``amqps://...`` (TLS). The vhost is the path (``%2F`` for
``/``). Query parameters understood by aiormq pass through (``heartbeat``, ``name``, ``cafile``,
``certfile``, ``keyfile``, ``no_verify_ssl``, ``timeout``). ``mask`` is the only way a URL reaches a
log line, an error message or a repr.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

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


def connection_url(
    url: str,
    *,
    heartbeat: int | None = None,
    connection_name: str | None = None,
) -> str:
    """Validate ``url`` and add ``heartbeat`` and ``name`` query parameters unless it already has
    them.

    Raises ``MmateError`` (with the password masked) for another scheme or a missing host.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise MmateError(f"invalid broker URL {mask(url)}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise MmateError(f"broker URL {mask(url)} must start with amqp:// or amqps://")
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
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if heartbeat is not None and "heartbeat" not in query:
        query["heartbeat"] = str(int(heartbeat))
    if connection_name and "name" not in query:
        query["name"] = connection_name
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), "")
    )
