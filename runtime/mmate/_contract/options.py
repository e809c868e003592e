"""Keyword options of generated publisher methods."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TypedDict

from .topology import Compression, HeaderValue


class PublishOptions(TypedDict, total=False):
    """Options every generated publish method accepts as keywords (mypy rejects any other keyword).

    ``ttl``, ``delay`` and ``timeout`` take seconds or a timedelta. ``timeout`` bounds the wait for
    the broker's confirm (and, for queries, for the reply). ``delay`` (rounded up to whole seconds)
    and ``schedule_at`` (timezone-aware) hold the message in the broker's delay infrastructure
    (``mmate.delay``). ``message_id`` replaces the fresh UUID (e.g. a deterministic one, so
    consumers can drop duplicates). ``compress`` (``"gzip"``, ``"zstd"``) compresses a body over
    its route's ``compress_above`` bytes, or with None does not compress it whatever the route
    says (``mmate.compression``; Go Mmate cannot read a compressed body).
    """

    exchange: str
    routing_key: str
    headers: Mapping[str, HeaderValue]
    ttl: float | timedelta
    priority: int
    persistent: bool
    correlation_id: str
    reply_to: str
    delay: float | timedelta
    schedule_at: datetime
    timeout: float
    message_id: str
    compress: Compression | None
