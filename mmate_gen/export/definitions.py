"""A RabbitMQ definitions file (``rabbitmqctl import_definitions``, the management UI's import):
the exchanges, queues (with their arguments) and bindings of a spec set, the dead-letter queues,
wait queues and delay cascade included, every entry in one vhost.

Only topology: no users, permissions, vhosts or policies, so importing it never touches access
control. The vhost must exist (``rabbitmqctl add_vhost``) before the import.
"""

from __future__ import annotations

import json
from typing import Any

from ..broker.entities import Entities


def definitions_document(entities: Entities, vhost: str = "/") -> dict[str, Any]:
    return {
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type,
                "durable": e.durable,
                "auto_delete": e.auto_delete,
                "internal": False,
                "arguments": dict(e.arguments),
            }
            for e in entities.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "arguments": dict(q.arguments),
            }
            for q in entities.queues
        ],
        "bindings": [
            {
                "source": b.source,
                "vhost": vhost,
                "destination": b.destination,
                "destination_type": b.destination_type,
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            }
            for b in entities.bindings
        ],
    }


def definitions_json(entities: Entities, vhost: str = "/") -> str:
    return json.dumps(definitions_document(entities, vhost), indent=2, sort_keys=True) + "\n"
