"""The first pass: one YAML file's nodes into raw, position-carrying records of what it defines.

Only the shape of each key is checked here (known keys, value types, ranges); names are resolved
and the cross-file rules are checked later, in ``checks_*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from .diagnostics import Location
from .ir import JsonValue
from .yamlnodes import Entry, Keys, Reader, ValuePath, is_null

FILE_KEYS = ("version", "types", "messages", "exchanges", "queues", "services", "external_services")
TYPE_KEYS = ("description", "enum", "fields")
MESSAGE_KEYS = ("kind", "description", "reply", "fields")
FIELD_KEYS = (
    "type",
    "description",
    "optional",
    "default",
    "min",
    "max",
    "min_length",
    "max_length",
    "pattern",
)
EXCHANGE_KEYS = ("type", "durable", "auto_delete", "description")
QUEUE_KEYS = (
    "type", "durable", "exclusive", "auto_delete", "fifo", "go_compatible", "max_length",
    "message_ttl", "max_priority", "max_message_bytes", "prefetch", "concurrency", "consumers",
    "delivery_limit", "retry", "dead_letter", "bindings", "description",
)  # fmt: skip
MAX_CONSUMERS = 2047
"""RabbitMQ's default channel_max: consumers of one queue on one connection, a channel each."""
RETRY_KEYS = (
    "attempts",
    "backoff",
    "initial_delay",
    "max_delay",
    "jitter",
    "immediate",
    "unknown_errors",
)
BINDING_KEYS = ("exchange", "routing_key", "arguments")
SERVICE_KEYS = ("description", "publishes", "consumes", "service_queue")
PUBLISH_KEYS = (
    "message", "exchange", "routing_key", "persistent", "priority", "compress", "compress_above",
)  # fmt: skip
EXTERNAL_SERVICE_KEYS = ("description", "publishes")
EXTERNAL_PUBLISH_KEYS = ("message", "exchange", "routing_key")
COMPRESSIONS = ("gzip", "zstd")
KINDS = ("command", "event", "query", "reply")
EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")


@dataclass
class RawField:
    name: str
    loc: Location
    type_text: str | None
    type_loc: Location
    description: str | None = None
    optional: bool = False
    has_default: bool = False
    default: JsonValue = None
    default_loc: Location | None = None
    default_locs: dict[ValuePath, tuple[Location, Location | None]] = field(default_factory=dict)
    """Where each part of ``default`` is (value, mapping key), by its path inside it."""
    constraints: dict[str, tuple[JsonValue, Location]] = field(default_factory=dict)


@dataclass
class RawType:
    name: str
    loc: Location
    file: str
    description: str | None
    enum: list[tuple[JsonValue, Location]] | None
    fields: list[RawField] | None


@dataclass
class RawMessage:
    name: str
    loc: Location
    file: str
    version: str
    kind: str | None
    description: str | None
    reply: str | None
    reply_loc: Location | None
    fields: list[RawField]


@dataclass
class RawExchange:
    name: str
    loc: Location
    file: str
    type: str = "topic"
    durable: bool = True
    auto_delete: bool = False


@dataclass
class RawRetry:
    loc: Location
    attempts: int = 3
    attempts_loc: Location | None = None
    backoff: str = "exponential"
    initial_delay_ms: int = 1000
    max_delay_ms: int = 60_000
    max_delay_loc: Location | None = None
    jitter: bool = True
    immediate: int = 0
    unknown_errors: str = "transient"


@dataclass
class RawBinding:
    loc: Location
    exchange: str | None
    exchange_loc: Location
    routing_key: str | None
    key_loc: Location
    arguments: dict[str, str | int | float | bool] = field(default_factory=dict)
    key_typo: bool = False
    """An unknown key was likely a misspelt routing_key (already reported)."""


@dataclass
class RawDeadLetter:
    """``dead_letter``: ``queue`` or ``exchange`` (+ ``routing_key``); neither: the default."""

    enabled: bool = True
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    loc: Location | None = None


@dataclass
class RawQueue:
    name: str
    loc: Location
    file: str
    type: str = "classic"
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    fifo: bool = False
    max_length: int | None = None
    message_ttl_ms: int | None = None
    max_priority: int | None = None
    max_message_bytes: int | None = None
    prefetch: int = 10
    concurrency: int = 10
    delivery_limit: int | None = None
    retry: RawRetry | None = None
    dead_letter: RawDeadLetter = field(default_factory=RawDeadLetter)
    bindings: list[RawBinding] = field(default_factory=list)
    locs: dict[str, Location] = field(default_factory=dict)
    """Where each written key is, for messages about it."""
    description: str | None = None
    go_compatible: bool = False
    consumers: int = 1
    service: str | None = None
    """The service whose ``service_queue`` this is (always go_compatible), else None."""

    @property
    def what(self) -> str:
        """How messages name it: ``queue "q"``, or ``service queue "s-queue" of service "s"``."""
        if self.service is not None:
            return f'service queue "{self.name}" of service "{self.service}"'
        return f'queue "{self.name}"'


@dataclass
class RawPublish:
    loc: Location
    message: str
    message_loc: Location
    exchange: str | None = None
    exchange_loc: Location | None = None
    routing_key: str | None = None
    key_loc: Location | None = None
    persistent: bool = True
    priority: int | None = None
    priority_loc: Location | None = None
    compress: str | None = None
    compress_loc: Location | None = None
    compress_above: int | None = None
    """Bytes, as written (None: not written, the default applies)."""


@dataclass
class RawConsume:
    queue: str
    loc: Location
    handles: list[tuple[str, Location]]


@dataclass
class RawService:
    name: str
    loc: Location
    file: str
    description: str | None
    publishes: list[RawPublish]
    consumes: list[RawConsume]
    service_queue: RawQueue | None = None


@dataclass
class RawExternal:
    """An entry of ``external_services``: a publisher outside the specs."""

    name: str
    loc: Location
    file: str
    description: str | None
    publishes: list[RawPublish]


@dataclass
class RawFile:
    path: str
    version: str | None = None
    types: list[RawType] = field(default_factory=list)
    messages: list[RawMessage] = field(default_factory=list)
    exchanges: list[RawExchange] = field(default_factory=list)
    queues: list[RawQueue] = field(default_factory=list)
    services: list[RawService] = field(default_factory=list)
    external_services: list[RawExternal] = field(default_factory=list)


def read_file(reader: Reader, root: yaml.Node | None) -> RawFile:
    raw = RawFile(reader.path)
    if root is None or is_null(root):
        reader.error(
            Location(reader.path, 1, 1), "the spec file is empty", 'write at least version: "1.0"'
        )
        return raw
    entries = reader.mapping(root, "the spec file")
    if entries is None:
        return raw
    keys = reader.known(entries, FILE_KEYS, "the spec file")
    if "version" in keys:
        raw.version = reader.string(keys["version"].value, "version", 'a version string: "1.0"')
    elif keys.lacks("version"):
        reader.error(
            root,
            "the spec file has no version",
            'add version: "1.0" (the schema version of its messages) at the top',
        )
    version = raw.version or ""
    for entry in _section(reader, keys, "types"):
        raw.types.append(_read_type(reader, entry))
    for entry in _section(reader, keys, "messages"):
        raw.messages.append(_read_message(reader, entry, version))
    for entry in _section(reader, keys, "exchanges"):
        exchange = _read_exchange(reader, entry)
        if exchange is not None:
            raw.exchanges.append(exchange)
    for entry in _section(reader, keys, "queues"):
        queue = _read_queue(reader, entry)
        if queue is not None:
            raw.queues.append(queue)
    for entry in _section(reader, keys, "services"):
        service = _read_service(reader, entry)
        if service is not None:
            raw.services.append(service)
            if service.service_queue is not None:
                raw.queues.append(service.service_queue)
    for entry in _section(reader, keys, "external_services"):
        raw.external_services.append(_read_external(reader, entry))
    return raw


def _section(reader: Reader, keys: Keys, name: str) -> list[Entry]:
    if name not in keys:
        return []
    return reader.mapping(keys[name].value, f"section {name}", allow_null=True) or []


def _description(reader: Reader, keys: Keys, what: str) -> str | None:
    if "description" not in keys:
        return None
    return reader.string(keys["description"].value, f"description of {what}")


# -- types and messages ------------------------------------------------------------------------


def _read_type(reader: Reader, entry: Entry) -> RawType:
    what = f"type {entry.key}"
    loc = reader.loc(entry.key_node)
    result = RawType(entry.key, loc, reader.path, None, None, None)
    entries = reader.mapping(entry.value, what, hint="write enum: or fields: under its name")
    if entries is None:
        return result
    keys = reader.known(entries, TYPE_KEYS, what)
    result.description = _description(reader, keys, what)
    both = "enum" in keys and "fields" in keys
    if both or (keys.lacks("enum") and keys.lacks("fields")):
        reader.error(
            entry.key_node,
            f"{what} needs exactly one of enum and fields",
            "write enum: [a, b] for an enum or fields: {...} for a record",
        )
    if "enum" in keys:
        items = reader.sequence(keys["enum"].value, f"enum of {what}")
        result.enum = [(reader.value(item), reader.loc(item)) for item in items or []]
        if items is not None:
            for item in items:
                if not isinstance(item, yaml.ScalarNode) or item.tag != "tag:yaml.org,2002:str":
                    reader.string(item, f"a value of enum {entry.key}")
    elif "fields" in keys:
        result.fields = _read_fields(reader, keys["fields"].value, what)
    return result


def _read_message(reader: Reader, entry: Entry, version: str) -> RawMessage:
    what = f"message {entry.key}"
    loc = reader.loc(entry.key_node)
    result = RawMessage(entry.key, loc, reader.path, version, None, None, None, None, [])
    entries = reader.mapping(entry.value, what, hint="write kind: and fields: under its name")
    if entries is None:
        return result
    keys = reader.known(entries, MESSAGE_KEYS, what)
    result.description = _description(reader, keys, what)
    if "kind" in keys:
        result.kind = reader.choice(keys["kind"].value, f"kind of {what}", KINDS)
    elif keys.lacks("kind"):
        reader.error(
            entry.key_node, f"{what} has no kind", "add kind: command, event, query or reply"
        )
    if "reply" in keys:
        result.reply = reader.name(keys["reply"].value, f"reply of {what}")
        result.reply_loc = reader.loc(keys["reply"].value)
    if "fields" in keys:
        result.fields = _read_fields(reader, keys["fields"].value, what)
    return result


def _read_fields(reader: Reader, node: yaml.Node, owner: str) -> list[RawField]:
    entries = reader.mapping(node, f"fields of {owner}", allow_null=True) or []
    return [f for f in (_read_field(reader, e, owner) for e in entries) if f is not None]


def _read_field(reader: Reader, entry: Entry, owner: str) -> RawField | None:
    what = f'field "{entry.key}" of {owner}'
    loc = reader.loc(entry.key_node)
    value = entry.value
    if isinstance(value, yaml.ScalarNode):
        if is_null(value):
            reader.error(
                value, f"{what} has no type", f"write {entry.key}: string (or another type)"
            )
            return None
        text = reader.string(value, f"type of {what}", "a type name such as string")
        return RawField(entry.key, loc, text, reader.loc(value))
    hint = f"write {entry.key}: TYPE or {entry.key}: {{type: TYPE, ...}}"
    entries = reader.mapping(value, what, hint=hint)
    if entries is None:
        return RawField(entry.key, loc, None, reader.loc(value))
    keys = reader.known(entries, FIELD_KEYS, what)
    result = RawField(entry.key, loc, None, loc)
    if "type" in keys:
        result.type_loc = reader.loc(keys["type"].value)
        result.type_text = reader.string(
            keys["type"].value, f"type of {what}", "a type name such as string"
        )
    elif keys.lacks("type"):
        reader.error(entry.key_node, f"{what} has no type", "add type: string (or another type)")
    result.description = _description(reader, keys, what)
    if "optional" in keys:
        result.optional = bool(reader.boolean(keys["optional"].value, f"optional of {what}"))
    if "default" in keys:
        result.has_default = True
        result.default = reader.value(keys["default"].value)
        result.default_loc = reader.loc(keys["default"].value)
        result.default_locs = reader.value_locations(keys["default"].value)
    for key in ("min", "max"):
        if key in keys:
            number = reader.number(keys[key].value, f"{key} of {what}")
            if number is not None:
                result.constraints[key] = (number, reader.loc(keys[key].value))
    for key in ("min_length", "max_length"):
        if key in keys:
            length = reader.integer(keys[key].value, f"{key} of {what}", minimum=0)
            if length is not None:
                result.constraints[key] = (length, reader.loc(keys[key].value))
    if "pattern" in keys:
        pattern = reader.string(keys["pattern"].value, f"pattern of {what}", "a regular expression")
        if pattern is not None:
            result.constraints["pattern"] = (pattern, reader.loc(keys["pattern"].value))
    return result


# -- exchanges and queues ----------------------------------------------------------------------


def _read_exchange(reader: Reader, entry: Entry) -> RawExchange:
    what = f'exchange "{entry.key}"'
    result = RawExchange(entry.key, reader.loc(entry.key_node), reader.path)
    keys = reader.known(
        reader.mapping(entry.value, what, allow_null=True) or [], EXCHANGE_KEYS, what
    )
    _description(reader, keys, what)
    if "type" in keys:
        result.type = (
            reader.choice(keys["type"].value, f"type of {what}", EXCHANGE_TYPES) or "topic"
        )
    for key in ("durable", "auto_delete"):
        if key in keys:
            flag = reader.boolean(keys[key].value, f"{key} of {what}")
            if flag is not None:
                setattr(result, key, flag)
    return result


def _read_queue(
    reader: Reader, entry: Entry, name: str | None = None, service: str | None = None
) -> RawQueue:
    """A queue of ``queues``, or (``service`` given) a service's ``service_queue`` named
    ``name``."""
    q = RawQueue(name or entry.key, reader.loc(entry.key_node), reader.path, service=service)
    what = q.what
    q.go_compatible = service is not None
    q.retry = RawRetry(q.loc)
    keys = reader.known(reader.mapping(entry.value, what, allow_null=True) or [], QUEUE_KEYS, what)
    if service is not None and "go_compatible" in keys:
        reader.error(
            keys.pop("go_compatible").key_node,
            f"{what} is always go_compatible: it is Go Mmate's own queue of the service",
            "remove go_compatible, or define the queue under queues: to declare it otherwise",
        )
    q.locs = {key: reader.loc(e.value) for key, e in keys.items()}
    q.description = _description(reader, keys, what)
    if "type" in keys:
        q.type = (
            reader.choice(keys["type"].value, f"type of {what}", ("classic", "quorum")) or "classic"
        )
    for key in ("durable", "exclusive", "auto_delete", "fifo", "go_compatible"):
        if key in keys:
            flag = reader.boolean(keys[key].value, f"{key} of {what}")
            if flag is not None:
                setattr(q, key, flag)
    ints = {
        "max_length": (1, None),
        "max_priority": (1, 255),
        "max_message_bytes": (1, None),
        "prefetch": (1, 65535),
        "concurrency": (1, None),
        "consumers": (1, MAX_CONSUMERS),
        "delivery_limit": (1, None),
    }
    written: set[str] = set()
    for key, (low, high) in ints.items():
        if key in keys:
            number = reader.integer(keys[key].value, f"{key} of {what}", low, high)
            if number is not None:
                setattr(q, key, number)
                written.add(key)
    if "concurrency" not in written:
        # A fifo queue keeps publish order only when its messages are handled one at a time.
        q.concurrency = 1 if q.fifo else min(q.concurrency, q.prefetch)
    if "message_ttl" in keys:
        q.message_ttl_ms = reader.duration(keys["message_ttl"].value, f"message_ttl of {what}")
    if "retry" in keys:
        q.retry = _read_retry(reader, keys["retry"].value, what, q.retry)
    if "dead_letter" in keys:
        q.dead_letter = _read_dead_letter(reader, keys["dead_letter"].value, what)
    if "bindings" in keys:
        for node in reader.sequence(keys["bindings"].value, f"bindings of {what}") or []:
            binding = _read_binding(reader, node, what)
            if binding is not None:
                q.bindings.append(binding)
    return q


def _read_retry(reader: Reader, node: yaml.Node, owner: str, retry: RawRetry) -> RawRetry | None:
    what = f"retry of {owner}"
    retry.loc = reader.loc(node)
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
        if reader.boolean(node, what):
            return retry
        return None
    entries = reader.mapping(node, what)
    if entries is None:
        return retry
    keys = reader.known(entries, RETRY_KEYS, what)
    if "attempts" in keys:
        retry.attempts_loc = reader.loc(keys["attempts"].value)
        retry.attempts = reader.integer(keys["attempts"].value, f"attempts of {what}", 1) or 1
    if "backoff" in keys:
        backoffs = ("exponential", "linear", "fixed")
        retry.backoff = (
            reader.choice(keys["backoff"].value, f"backoff of {what}", backoffs) or "fixed"
        )
    if "initial_delay" in keys:
        delay = reader.duration(keys["initial_delay"].value, f"initial_delay of {what}")
        retry.initial_delay_ms = delay or retry.initial_delay_ms
    if "max_delay" in keys:
        retry.max_delay_loc = reader.loc(keys["max_delay"].value)
        delay = reader.duration(keys["max_delay"].value, f"max_delay of {what}")
        retry.max_delay_ms = delay or retry.max_delay_ms
    if "jitter" in keys:
        retry.jitter = bool(reader.boolean(keys["jitter"].value, f"jitter of {what}"))
    if "immediate" in keys:
        retry.immediate = reader.integer(keys["immediate"].value, f"immediate of {what}", 0) or 0
    if "unknown_errors" in keys:
        value = reader.choice(
            keys["unknown_errors"].value, f"unknown_errors of {what}", ("transient", "permanent")
        )
        retry.unknown_errors = value or "transient"
    return retry


def _read_dead_letter(reader: Reader, node: yaml.Node, owner: str) -> RawDeadLetter:
    what = f"dead_letter of {owner}"
    result = RawDeadLetter(loc=reader.loc(node))
    hint = "write true, false, {queue: NAME} or {exchange: NAME, routing_key: KEY}"
    if isinstance(node, yaml.ScalarNode):
        flag = reader.boolean(node, what)
        result.enabled = flag is not False
        return result
    entries = reader.mapping(node, what)
    if entries is None:
        return result
    keys = reader.known(entries, ("queue", "exchange", "routing_key"), what)
    if "queue" in keys:
        result.queue = reader.string(keys["queue"].value, f"queue of {what}", "a queue name")
        if "exchange" in keys or "routing_key" in keys:
            reader.error(node, f"{what} has both a queue and an exchange", hint)
    elif "exchange" in keys:
        result.exchange = reader.string(
            keys["exchange"].value, f"exchange of {what}", "an exchange name"
        )
        if "routing_key" in keys:
            key = reader.string(
                keys["routing_key"].value, f"routing_key of {what}", "a routing key"
            )
            result.routing_key = key or ""
        elif keys.lacks("routing_key"):
            reader.error(node, f"{what} has an exchange but no routing_key", "add routing_key: KEY")
    elif keys.lacks("queue") and keys.lacks("exchange"):
        reader.error(node, f"{what} names neither a queue nor an exchange", hint)
    return result


def _read_binding(reader: Reader, node: yaml.Node, owner: str) -> RawBinding | None:
    what = f"binding of {owner}"
    entries = reader.mapping(node, what)
    if entries is None:
        return None
    keys = reader.known(entries, BINDING_KEYS, what)
    loc = reader.loc(node)
    result = RawBinding(loc, None, loc, None, loc)
    result.key_typo = "routing_key" in keys.typos
    if "exchange" in keys:
        result.exchange_loc = reader.loc(keys["exchange"].value)
        result.exchange = reader.string(
            keys["exchange"].value, f"exchange of {what}", "an exchange name"
        )
    elif keys.lacks("exchange"):
        reader.error(node, f"{what} has no exchange", "add exchange: NAME")
    if "routing_key" in keys:
        result.key_loc = reader.loc(keys["routing_key"].value)
        result.routing_key = reader.string(
            keys["routing_key"].value, f"routing_key of {what}", "a routing key pattern"
        )
    if "arguments" in keys:
        args_what = f"arguments of {what}"
        for arg in reader.mapping(keys["arguments"].value, args_what, allow_null=True) or []:
            value = reader.value(arg.value)
            if isinstance(value, str | int | float | bool):
                result.arguments[arg.key] = value
            else:
                reader.error(
                    arg.value,
                    f'argument "{arg.key}" of {what} must be a string, number or boolean',
                    "write a single value",
                )
    return result


# -- services ----------------------------------------------------------------------------------


def _read_service(reader: Reader, entry: Entry) -> RawService:
    what = f'service "{entry.key}"'
    raw_name = entry.key
    result = RawService(entry.key, reader.loc(entry.key_node), reader.path, None, [], [])
    keys = reader.known(
        reader.mapping(entry.value, what, allow_null=True) or [], SERVICE_KEYS, what
    )
    result.description = _description(reader, keys, what)
    if "publishes" in keys:
        for node in reader.sequence(keys["publishes"].value, f"publishes of {what}") or []:
            publish = _read_publish(reader, node, what)
            if publish is not None:
                result.publishes.append(publish)
    if "consumes" in keys:
        consumes_what = f"consumes of {what}"
        for item in reader.mapping(keys["consumes"].value, consumes_what, allow_null=True) or []:
            handles: list[tuple[str, Location]] = []
            for message in (
                reader.sequence(item.value, f'messages of queue "{item.key}" in {what}') or []
            ):
                name = reader.name(message, f'a message handled from queue "{item.key}"')
                if name is not None:
                    handles.append((name, reader.loc(message)))
            result.consumes.append(RawConsume(item.key, reader.loc(item.key_node), handles))
    if "service_queue" in keys:
        entry = keys["service_queue"]
        result.service_queue = _read_queue(reader, entry, f"{raw_name}-queue", raw_name)
    return result


def _read_external(reader: Reader, entry: Entry) -> RawExternal:
    what = f'external service "{entry.key}"'
    result = RawExternal(entry.key, reader.loc(entry.key_node), reader.path, None, [])
    keys = reader.known(
        reader.mapping(entry.value, what, allow_null=True) or [], EXTERNAL_SERVICE_KEYS, what
    )
    result.description = _description(reader, keys, what)
    if "publishes" in keys:
        for node in reader.sequence(keys["publishes"].value, f"publishes of {what}") or []:
            publish = _read_publish(reader, node, what, EXTERNAL_PUBLISH_KEYS)
            if publish is not None:
                result.publishes.append(publish)
    return result


def _read_publish(
    reader: Reader, node: yaml.Node, owner: str, allowed: tuple[str, ...] = PUBLISH_KEYS
) -> RawPublish | None:
    what = f"a publish of {owner}"
    loc = reader.loc(node)
    if isinstance(node, yaml.ScalarNode):
        name = reader.name(node, what)
        return RawPublish(loc, name, loc) if name is not None else None
    entries = reader.mapping(node, what)
    if entries is None:
        return None
    keys = reader.known(entries, allowed, what)
    if "message" not in keys:
        if keys.lacks("message"):
            reader.error(node, f"{what} has no message", "add message: NAME")
        return None
    name = reader.name(keys["message"].value, f"message of {what}")
    if name is None:
        return None
    result = RawPublish(loc, name, reader.loc(keys["message"].value))
    what = f"the publish of {name} by {owner}"
    if "exchange" in keys:
        result.exchange_loc = reader.loc(keys["exchange"].value)
        result.exchange = reader.string(
            keys["exchange"].value, f"exchange of {what}", "an exchange name"
        )
    if "routing_key" in keys:
        result.key_loc = reader.loc(keys["routing_key"].value)
        result.routing_key = reader.string(
            keys["routing_key"].value, f"routing_key of {what}", "a routing key template"
        )
    if "persistent" in keys:
        flag = reader.boolean(keys["persistent"].value, f"persistent of {what}")
        result.persistent = flag is not False
    if "priority" in keys:
        result.priority_loc = reader.loc(keys["priority"].value)
        result.priority = reader.integer(keys["priority"].value, f"priority of {what}", 0, 255)
    if "compress" in keys:
        result.compress_loc = reader.loc(keys["compress"].value)
        result.compress = reader.choice(keys["compress"].value, f"compress of {what}", COMPRESSIONS)
    if "compress_above" in keys:
        node = keys["compress_above"].value
        result.compress_above = reader.size(node, f"compress_above of {what}")
        if "compress" not in keys:
            reader.error(
                node,
                f"{what} has compress_above but no compress",
                "add compress: gzip (or zstd), or remove compress_above",
            )
    return result
