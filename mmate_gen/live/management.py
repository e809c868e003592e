"""What a vhost holds, read through the RabbitMQ management HTTP API (stdlib ``urllib``).

Only the management API shows an entity's type, flags and arguments: AMQP passive declares say
whether it exists and nothing more. The API's address defaults to the broker's host on port 15672
(``http``; ``https`` for an ``amqps`` URL); the credentials are the AMQP URL's unless the
management URL has its own. They go into an ``Authorization`` header and are never printed.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from mmate._transport.urls import mask, vhost_of

from ..broker.entities import BindingEntity, ExchangeEntity, QueueEntity, arguments

DEFAULT_PORT = 15672
TIMEOUT = 15.0


class ManagementUnavailable(Exception):
    """The API cannot be used (not enabled, unreachable, refused); the text says why."""


class VhostMissing(Exception):
    pass


@dataclass(frozen=True)
class BrokerState:
    exchanges: dict[str, ExchangeEntity]
    queues: dict[str, QueueEntity]
    messages: dict[str, int | None]
    """Messages ready and unacknowledged per queue (None when the broker has no figure yet)."""
    bindings: dict[tuple[Any, ...], BindingEntity]
    """By ``BindingEntity.key``."""


def management_base(amqp_url: str, management_url: str | None) -> tuple[str, str, str]:
    """(base URL without credentials, user, password)."""
    amqp = urlsplit(amqp_url)
    user = unquote(amqp.username or "guest")
    password = unquote(amqp.password or "guest")
    if management_url:
        given = urlsplit(management_url)
        if given.username is not None:
            user = unquote(given.username)
            password = unquote(given.password or "")
        host = given.hostname or "127.0.0.1"
        netloc = host if given.port is None else f"{host}:{given.port}"
        scheme = given.scheme or "http"
        path = given.path.rstrip("/")
    else:
        host = amqp.hostname or "127.0.0.1"
        netloc = f"{host}:{DEFAULT_PORT}"
        scheme = "https" if amqp.scheme == "amqps" else "http"
        path = ""
    if ":" in host and not netloc.startswith("["):
        netloc = f"[{host}]" + netloc[len(host) :]
    return urlunsplit((scheme, netloc, path, "", "")), user, password


class ManagementApi:
    def __init__(self, amqp_url: str, management_url: str | None = None) -> None:
        self.base, self._user, self._password = management_base(amqp_url, management_url)
        self.vhost = vhost_of(amqp_url)
        self._shown_amqp = mask(amqp_url)

    def _get(self, path: str) -> Any:
        token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                return json.loads(reply.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and path.startswith("vhosts/"):
                raise VhostMissing(f"vhost {self.vhost!r} does not exist on the broker") from None
            raise ManagementUnavailable(
                f"the management API at {self.base} answered {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ManagementUnavailable(
                f"the management API at {self.base} cannot be reached ({reason}); enable it with "
                "`rabbitmq-plugins enable rabbitmq_management` or pass --management-url"
            ) from None

    def state(self) -> BrokerState:
        v = quote(self.vhost, safe="")
        self._get(f"vhosts/{v}")
        exchanges = {
            e["name"]: ExchangeEntity(
                e["name"],
                e["type"],
                bool(e["durable"]),
                bool(e["auto_delete"]),
                arguments(e.get("arguments") or {}),
                "internal exchange" if e.get("internal") else "exchange on the broker",
            )
            for e in self._get(f"exchanges/{v}")
        }
        queues: dict[str, QueueEntity] = {}
        messages: dict[str, int | None] = {}
        for q in self._get(f"queues/{v}"):
            queues[q["name"]] = QueueEntity(
                q["name"],
                bool(q["durable"]),
                bool(q.get("exclusive", False)),
                bool(q["auto_delete"]),
                arguments(q.get("arguments") or {}),
                "queue on the broker",
            )
            count = q.get("messages")
            messages[q["name"]] = int(count) if isinstance(count, int) else None
        bindings: dict[tuple[Any, ...], BindingEntity] = {}
        for b in self._get(f"bindings/{v}"):
            if b["source"] == "":
                continue  # every queue's implicit binding to the default exchange
            entity = BindingEntity(
                b["source"],
                b["destination"],
                "exchange" if b["destination_type"] == "exchange" else "queue",
                b["routing_key"],
                arguments(b.get("arguments") or {}),
                "binding on the broker",
            )
            bindings[entity.key] = entity
        return BrokerState(exchanges, queues, messages, bindings)
