"""The URL aiormq connects with: the user's URL plus ``heartbeat`` and ``name`` (the connection's
name in the management UI) unless it already sets them. Query parameters aiormq understands pass
through (``cafile``, ``certfile``, ``keyfile``, ``no_verify_ssl``, ``timeout``...)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..urls import validate


def aiormq_url(
    url: str, *, heartbeat: int | None = None, connection_name: str | None = None
) -> str:
    validate(url)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if heartbeat is not None and "heartbeat" not in query:
        query["heartbeat"] = str(int(heartbeat))
    if connection_name and "name" not in query:
        query["name"] = connection_name
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), "")
    )
