"""An AsyncAPI 3.0 document of a spec set.

Channels: one per exchange (AMQP binding ``is: routingKey``) and one per queue (``is: queue``),
the dead-letter and wait queues included, plus ``replies``, the requester's reply queue whose
address travels in ``payload.replyTo``. Operations: one ``send`` per message a service publishes
(on its exchange's channel) and one ``receive`` per message a service handles on a queue (on the
queue's channel); queries carry a ``reply`` on both sides. Messages: the JSON envelope of
docs/interop.md with the payload's JSON Schema, and the AMQP headers a publisher writes.

What AsyncAPI cannot say goes into ``x-mmate-*`` extensions: queue arguments and type, FIFO, retry
policy, wait queues, dead-letter routes, bindings and their patterns, prefetch and concurrency,
routing-key templates, message kind and schema version.
"""

from __future__ import annotations

from typing import Any

from ..ir import Field, Message, Queue, SpecSet
from ..jsonschema import enum_schema, message_body_schema, record_schema
from ..views import SpecIndex

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
REPLIES = "replies"
SCHEMAS = "#/components/schemas/"
_DROPPED_KEYWORDS = frozenset({"customTypePath"})
"""Hints for the Python generator that mean nothing to other readers."""

Document = dict[str, Any]


def exchange_channel(name: str) -> str:
    return f"exchange.{name}"


def queue_channel(name: str) -> str:
    return f"queue.{name}"


def _ref(pointer: str) -> Document:
    return {"$ref": pointer}


def _escape(token: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _portable(schema: Any) -> Any:
    """``schema`` with ``#/$defs/X`` references pointing at ``components/schemas`` and the
    Python-only keywords removed."""
    if isinstance(schema, dict):
        out: Document = {}
        for key, value in schema.items():
            if key in _DROPPED_KEYWORDS:
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = SCHEMAS + _escape(value.removeprefix("#/$defs/"))
            else:
                out[key] = _portable(value)
        return out
    if isinstance(schema, list):
        return [_portable(item) for item in schema]
    return schema


def _schemas(spec: SpecSet) -> Document:
    schemas: Document = {}
    for e in spec.enums:
        schemas[e.name] = enum_schema(e)
    for r in spec.records:
        schemas[r.name] = record_schema(r)
    for m in spec.messages:
        schemas[m.name] = message_body_schema(m)
    return {name: _portable(schemas[name]) for name in sorted(schemas)}


def _envelope(m: Message) -> Document:
    properties: Document = {
        "id": {"type": "string", "format": "uuid", "description": "The message's own id."},
        "type": {"const": m.name, "description": "The contract name."},
        "timestamp": {"type": "string", "format": "date-time"},
        "correlationId": {"type": "string", "description": "Omitted when empty."},
        "headers": {
            "type": "object",
            "description": "The AMQP headers, copied.",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "payload": _ref(SCHEMAS + _escape(m.name)),
    }
    if m.kind == "query":
        properties["replyTo"] = {
            "type": "string",
            "description": "The reply queue; readers take payload.replyTo first.",
        }
    return {
        "type": "object",
        "description": "The Mmate JSON envelope (docs/interop.md, The envelope).",
        "required": ["id", "type", "timestamp", "payload"],
        "properties": properties,
    }


def _headers(m: Message) -> Document:
    properties: Document = {
        "x-message-type": {"const": m.name},
        "x-message-id": {"type": "string", "format": "uuid"},
        "x-message-kind": {"const": m.kind},
        "x-correlation-id": {"type": "string"},
        "x-source": {"type": "string", "examples": ["mmate-py", "mmate-go"]},
        "x-schema-version": {"type": "string", "examples": [m.version]},
    }
    if m.kind == "event":
        properties["x-aggregate-id"] = {"type": "string"}
        properties["x-sequence"] = {"type": "string", "description": "Decimal digits."}
    if m.kind == "reply":
        properties["x-success"] = {"enum": ["true", "false"]}
    return {
        "type": "object",
        "required": ["x-message-type", "x-message-id", "x-message-kind"],
        "properties": properties,
    }


def _message(m: Message) -> Document:
    message: Document = {
        "name": m.name,
        "title": m.name,
        "contentType": "application/json",
        "payload": _envelope(m),
        "headers": _headers(m),
        "correlationId": {"location": "$message.payload#/correlationId"},
        "bindings": {"amqp": {"messageType": m.name, "bindingVersion": AMQP_BINDING_VERSION}},
        "x-mmate-kind": m.kind,
        "x-mmate-schema-version": m.version,
    }
    if m.description:
        message["summary"] = m.description
    if m.reply is not None:
        message["x-mmate-reply"] = m.reply
    return message


def _channel_messages(names: set[str]) -> Document:
    return {name: _ref(f"#/components/messages/{_escape(name)}") for name in sorted(names)}


def _queue_extensions(queue: Queue, spec: SpecSet) -> Document:
    ext: Document = {
        "x-mmate-role": queue.role,
        "x-mmate-queue-type": queue.queue_type,
        "x-mmate-queue-arguments": dict(queue.arguments),
    }
    if queue.origin is not None:
        ext["x-mmate-origin"] = queue.origin
        return ext
    ext["x-mmate-fifo"] = queue.fifo
    ext["x-mmate-prefetch"] = queue.prefetch
    ext["x-mmate-concurrency"] = queue.concurrency
    if queue.max_message_bytes is not None:
        ext["x-mmate-max-message-bytes"] = queue.max_message_bytes
    r = queue.retry
    ext["x-mmate-retry"] = (
        False
        if r is None
        else {
            "attempts": r.attempts,
            "backoff": r.backoff,
            "initialDelayMs": r.initial_delay_ms,
            "maxDelayMs": r.max_delay_ms,
            "jitter": r.jitter,
            "delaysMs": list(r.delays_ms),
            "immediate": r.immediate,
            "unknownErrors": r.unknown_errors,
        }
    )
    ext["x-mmate-wait-queues"] = {str(ms): name for ms, name in queue.wait_queues}
    args = dict(queue.arguments)
    if "x-dead-letter-exchange" in args:
        route: Document = {
            "exchange": args["x-dead-letter-exchange"],
            "routingKey": args.get("x-dead-letter-routing-key", ""),
        }
        if queue.dead_letter_queue is not None:
            route["queue"] = queue.dead_letter_queue
        ext["x-mmate-dead-letter"] = route
    else:
        ext["x-mmate-dead-letter"] = False
    ext["x-mmate-bindings"] = [
        {"exchange": b.exchange, "routingKey": b.routing_key, "arguments": dict(b.arguments)}
        for b in spec.bindings
        if b.queue == queue.name
    ]
    return ext


def _channels(spec: SpecSet, vhost: str) -> Document:
    published: dict[str, set[str]] = {}
    handled: dict[str, set[str]] = {}
    for service in spec.services:
        for route in service.publishes:
            published.setdefault(route.exchange, set()).add(route.message)
        for consume in service.consumes:
            handled.setdefault(consume.queue, set()).update(consume.handles)
    channels: Document = {}
    for e in spec.exchanges:
        channel: Document = {
            "address": e.name,
            "title": f"exchange {e.name}",
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": e.name,
                        "type": e.type,
                        "durable": e.durable,
                        "autoDelete": e.auto_delete,
                        "vhost": vhost,
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "x-mmate-builtin": e.builtin,
        }
        if e.name in published:
            channel["messages"] = _channel_messages(published[e.name])
        channels[exchange_channel(e.name)] = channel
    for q in spec.queues:
        channel = {
            "address": q.name,
            "title": f"queue {q.name}",
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": q.name,
                        "durable": q.durable,
                        "exclusive": q.exclusive,
                        "autoDelete": q.auto_delete,
                        "vhost": vhost,
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        if q.description:
            channel["description"] = q.description
        channel.update(_queue_extensions(q, spec))
        messages = handled.get(q.origin or q.name)
        if messages:
            channel["messages"] = _channel_messages(messages)
        channels[queue_channel(q.name)] = channel
    replies = {m.reply for m in spec.messages if m.reply is not None}
    if replies:
        channels[REPLIES] = {
            "address": None,
            "title": "reply queue of the requester",
            "description": "An exclusive, auto-delete queue of the requesting client; its name "
            "travels in the query's payload.replyTo. Replies are published to the default "
            "exchange with that name as routing key and the query's correlationId.",
            "messages": _channel_messages(replies),
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {"durable": False, "exclusive": True, "autoDelete": True},
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
    return dict(sorted(channels.items()))


def _reply(m: Message) -> Document | None:
    if m.reply is None:
        return None
    return {
        "address": {
            "location": "$message.payload#/payload/replyTo",
            "description": "The requester's reply queue, named in the query's payload.",
        },
        "channel": _ref(f"#/channels/{REPLIES}"),
        "messages": [_ref(f"#/channels/{REPLIES}/messages/{_escape(m.reply)}")],
    }


def _operations(spec: SpecSet) -> Document:
    index = SpecIndex(spec)
    operations: Document = {}
    for service in spec.services:
        for route in service.publishes:
            m = index.messages[route.message]
            channel = exchange_channel(route.exchange)
            operation: Document = {
                "action": "send",
                "channel": _ref(f"#/channels/{_escape(channel)}"),
                "messages": [_ref(f"#/channels/{_escape(channel)}/messages/{_escape(m.name)}")],
                "summary": f"{service.name} publishes {m.name} to {route.exchange} with routing "
                f"key {route.routing_key}",
                "tags": [{"name": service.name}],
                "bindings": {
                    "amqp": {
                        "deliveryMode": 2 if route.persistent else 1,
                        "mandatory": True,
                        "timestamp": True,
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
                "x-mmate-service": service.name,
                "x-mmate-routing-key": route.routing_key,
                "x-mmate-routing-key-fields": [
                    p.field.json_name for p in route.key_parts if isinstance(p.field, Field)
                ],
            }
            reply = _reply(m)
            if reply is not None:
                operation["reply"] = reply
            operations[f"{service.name}.send.{m.name}"] = operation
        for consume in service.consumes:
            channel = queue_channel(consume.queue)
            for name in consume.handles:
                m = index.messages[name]
                operation = {
                    "action": "receive",
                    "channel": _ref(f"#/channels/{_escape(channel)}"),
                    "messages": [_ref(f"#/channels/{_escape(channel)}/messages/{_escape(name)}")],
                    "summary": f"{service.name} handles {name} from {consume.queue}",
                    "tags": [{"name": service.name}],
                    "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
                    "x-mmate-service": service.name,
                }
                reply = _reply(m)
                if reply is not None:
                    operation["reply"] = reply
                operations[f"{service.name}.receive.{consume.queue}.{name}"] = operation
    return dict(sorted(operations.items()))


def default_version(spec: SpecSet) -> str:
    """The schema version of the messages, or all of them joined with ``+`` when they differ."""
    versions = sorted({m.version for m in spec.messages})
    return "+".join(versions) if versions else "0"


def asyncapi_document(
    spec: SpecSet, *, title: str | None = None, version: str | None = None, vhost: str = "/"
) -> Document:
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or f"{spec.root} (mmate)",
            "version": version or default_version(spec),
            "description": f"Messages and RabbitMQ topology of the mmate spec directory "
            f"{spec.root}/ ({', '.join(spec.files)}), exported by mmate-gen. Bodies are JSON "
            "envelopes whose payload is the message's schema; the x-mmate-* extensions hold "
            "what AsyncAPI cannot express.",
        },
        "defaultContentType": "application/json",
        "channels": _channels(spec, vhost),
        "operations": _operations(spec),
        "components": {
            "messages": {m.name: _message(m) for m in spec.messages},
            "schemas": _schemas(spec),
        },
    }
