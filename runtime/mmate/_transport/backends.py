"""Which backend serves a URL: ``amqp://`` and ``amqps://`` RabbitMQ (aiormq), ``memory://`` the
in-process broker."""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import Backend

_aiormq: Backend | None = None


def backend_for(url: str) -> Backend:
    """The backend of ``url`` (checked by ``urls.validate`` first)."""
    global _aiormq
    if urlsplit(url).scheme == "memory":
        from .memory import memory_backend

        return memory_backend(url)
    if _aiormq is None:
        from .aiormq.backend import AiormqBackend

        _aiormq = AiormqBackend()
    return _aiormq
