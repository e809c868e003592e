"""The Mmate envelope on the wire: encode a model, decode a body.

Hot path contract: encoding is one serializer pass (``pydantic_core.to_json`` over the envelope
dict, the model serialized by its own compiled serializer, by alias); decoding is one strict JSON
parse (``load_json``) plus one ``model_validate`` of the payload dict. What depends only on the
message contract (static headers and their encoded AMQP table entries, which base fields to copy
into headers) is computed once per ``MessageDef`` and cached; nothing inspects the model class per
message. All functions are pure and safe to call from any task.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from pydantic import ValidationError

from .._contract.model import Model
from .._contract.topology import HeaderValue, Kind, MessageDef
from .._transport.base import Properties
from ..errors import DecodeError

SOURCE = "mmate-py"
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"


@dataclass(slots=True)  # built per message: frozen, it would cost about 2 us more
class Encoded:
    """A message ready for ``basic.publish``: body bytes and AMQP properties (headers included)."""

    body: bytes
    properties: Properties
    message_id: str
    correlation_id: str | None
    type: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """What encoding needs to know about one contract, computed once."""

    name: str
    kind: Kind
    static_headers: Mapping[str, HeaderValue]
    event_fields: bool
    """The model has ``aggregate_id`` and ``sequence`` (copied to
    ``x-aggregate-id``/``x-sequence``)."""
    reply_field: bool
    """The model has ``success`` (copied to ``x-success``)."""
    reply_to_field: bool
    """The model has ``reply_to`` (a query's ``payload.replyTo``)."""


_plans: dict[MessageDef, _Plan] = {}


def _static_headers(name: str, kind: Kind, version: str) -> dict[str, HeaderValue]:
    return {
        "x-message-type": name,
        "x-message-kind": kind,
        "x-source": SOURCE,
        "x-schema-version": version,
    }


def plan(message: MessageDef) -> _Plan:
    """The cached encoding plan of a contract (built on first use)."""
    found = _plans.get(message)
    if found is None:
        fields = message.model.model_fields
        found = _Plan(
            name=message.name,
            kind=message.kind,
            static_headers=_static_headers(message.name, message.kind, message.version),
            event_fields=message.kind == "event" and {"aggregate_id", "sequence"} <= fields.keys(),
            reply_field=message.kind == "reply" and "success" in fields,
            reply_to_field="reply_to" in fields,
        )
        _plans[message] = found
    return found


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_id() -> str:
    """A fresh message id: UUID v4, lowercase, hyphenated.

    The same format and 122 random bits (``os.urandom``) as ``str(uuid.uuid4())``, without
    building a ``UUID`` object.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_second = -1
_second_at: datetime = datetime.fromtimestamp(0, UTC)
_second_text = ""


def _now() -> tuple[datetime, str]:
    """The current second (UTC, for the AMQP timestamp) and the envelope timestamp in
    milliseconds (``2024-01-15T10:31:00.123Z``); the second's parts are formatted once."""
    global _second, _second_at, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_at = datetime.fromtimestamp(second, UTC)
        _second_text = _second_at.strftime("%Y-%m-%dT%H:%M:%S")
        _second = second
    return _second_at, f"{_second_text}.{int((now - second) * 1000):03d}Z"


def encode(
    message_def: MessageDef,
    message: Model | Mapping[str, Any],
    *,
    app_id: str,
    message_id: str | None = None,
    correlation_id: str | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, HeaderValue] | None = None,
    expiration_ms: int | None = None,
    priority: int | None = None,
    persistent: bool = True,
) -> Encoded:
    """Encode ``message`` (a model, or a raw payload dict for error replies) as an envelope.

    ``reply_to`` is written to the AMQP ``reply_to`` property and top-level ``replyTo``; for a query
    whose model has ``reply_to`` the caller puts it into the payload (see ``with_reply_to``).
    """
    p = _plans.get(message_def) or plan(message_def)
    mid = message_id or new_id()
    second, stamp = _now()
    # The caller's headers first, so they can never overwrite the envelope's own x- headers.
    hdrs: dict[str, Any]
    if headers:
        hdrs = dict(headers)
        hdrs.update(p.static_headers)
    else:
        hdrs = dict(p.static_headers)
    hdrs["x-message-id"] = mid
    if correlation_id:
        hdrs["x-correlation-id"] = correlation_id
    if isinstance(message, Model):
        if p.event_fields:
            hdrs["x-aggregate-id"] = message.aggregate_id  # type: ignore[attr-defined]
            hdrs["x-sequence"] = str(message.sequence)  # type: ignore[attr-defined]
        if p.reply_field:
            hdrs["x-success"] = "true" if message.success else "false"  # type: ignore[attr-defined]
    elif p.kind == "reply" and "success" in message:
        hdrs["x-success"] = "true" if message["success"] else "false"
    envelope: dict[str, Any] = {"id": mid, "type": p.name, "timestamp": stamp}
    if correlation_id:
        envelope["correlationId"] = correlation_id
    if reply_to:
        envelope["replyTo"] = reply_to
    envelope["headers"] = hdrs
    envelope["payload"] = message
    body = pydantic_core.to_json(envelope, by_alias=True)
    props = Properties(
        content_type=CONTENT_TYPE,
        content_encoding=CONTENT_ENCODING,
        headers=hdrs,  # the same dict: the body is already serialized
        delivery_mode=2 if persistent else 1,
        priority=priority,
        correlation_id=correlation_id,
        reply_to=reply_to,
        expiration=str(expiration_ms) if expiration_ms is not None else None,
        message_id=mid,
        timestamp=second,
        type=p.name,
        app_id=app_id,
    )
    return Encoded(body, props, mid, correlation_id, p.name)


def with_reply_to(message_def: MessageDef, message: Model, reply_to: str) -> Model:
    """The query with ``payload.replyTo`` set (a shallow copy), where a Go responder reads it."""
    if plan(message_def).reply_to_field:
        return message.model_copy(update={"reply_to": reply_to})
    return message


@dataclass(slots=True)  # built per message: frozen, it would cost about 2 us more
class Envelope:
    """A parsed envelope; ``payload`` is still a plain dict."""

    id: str
    type: str
    timestamp: datetime | None
    correlation_id: str | None
    """The delivery's correlation id (``correlation_of``: the body's ``correlationId``, else the
    AMQP property or a correlation header when ``parse`` was given the properties)."""
    reply_to: str | None
    """Top-level ``replyTo`` (Go never writes it)."""
    headers: Mapping[str, Any]
    payload: dict[str, Any]


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


_INF = math.inf


def _no_infinite_numbers(data: Any) -> None:
    """Reject a number too large for a float64 (``1e400``, or a decimal of 400 digits), which the
    parser reads as infinity: Go's and .NET's readers refuse it, so it is not a value of the wire
    format. One walk over the parsed values (cheaper than any scan of the bytes that would also
    catch the long decimals: a regular expression over a 467-byte envelope takes about four
    times as long)."""
    _finite_all((data,))


def _finite_all(values: Iterable[Any]) -> None:
    """Recursive: the parser refuses nesting deeper than about 200 levels (``load_json``), so
    this never nears the interpreter's recursion limit. Strings, the most common values, are
    passed over first."""
    for value in values:
        kind = type(value)
        if kind is str:
            continue
        if kind is float:
            if value == _INF or value == -_INF:
                raise DecodeError("body is not JSON: a number is too large for a float64")
        elif kind is dict:
            _finite_all(value.values())
        elif kind is list:
            _finite_all(value)


def load_json(body: bytes) -> Any:
    """Parse untrusted JSON strictly (RFC 8259): raises ``DecodeError`` ("body is not JSON: ...")
    for anything else. The decisions, each deliberate:

    * ``NaN``, ``Infinity``, ``-Infinity``: rejected (not JSON; Go rejects them too);
    * a number beyond float64 (``1e400``, a decimal of 400 digits) or an integer of more than
      4300 digits: rejected;
    * nesting deeper than about 200 levels: rejected (no Mmate message nests that deep; deeper
      input is a denial-of-service attempt, and a recursive parser would crash on it);
    * a byte-order mark, bytes that are not UTF-8, lone UTF-16 surrogates in ``\\u`` escapes,
      control characters inside strings, trailing characters: rejected;
    * duplicate keys in an object: accepted, the last one wins (as Go's ``encoding/json`` does).
    """
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise DecodeError(f"body is not JSON: {exc}") from None
    try:
        _no_infinite_numbers(data)
    except RecursionError:  # only if a later parser accepted far deeper nesting
        raise DecodeError("body is not JSON: nested too deeply") from None
    return data


MAX_CORRELATION_ID_BYTES = 255
"""The longest correlation id taken from a delivery: an AMQP short string, since a reply copies it
into its ``correlation_id`` property."""

CORRELATION_HEADERS = ("x-correlation-id", "correlation-id")
"""The headers a correlation id is read from, in order: mmate's and Go's, then Go's plain one."""


def _usable_id(value: object) -> str | None:
    """``value`` as a correlation id: a non-empty string of at most 255 UTF-8 bytes, else None."""
    if not isinstance(value, str) or not value:
        return None
    if value.isascii():
        return value if len(value) <= MAX_CORRELATION_ID_BYTES else None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: it could not go out again
        return None
    return value if size <= MAX_CORRELATION_ID_BYTES else None


def correlation_of(
    body_id: object, properties: Properties | None, body_headers: object
) -> str | None:
    """The correlation id of a delivery; the first usable one of, in order:

    1. the envelope's ``correlationId`` (what Go writes and matches replies by);
    2. the AMQP ``correlation_id`` property (what mmate and .NET write);
    3. the ``x-correlation-id`` header, then Go's plain ``correlation-id`` header, each from the
       AMQP header table first, then from the envelope's ``headers``.

    A value that is not a non-empty string of at most 255 UTF-8 bytes is skipped, never an error
    (wire input is untrusted)."""
    found = _usable_id(body_id)
    if found is not None:
        return found
    if properties is not None:
        found = _usable_id(properties.correlation_id)
        if found is not None:
            return found
    table = properties.headers if properties is not None else None
    sources = [
        h for h in (table, body_headers) if h and (type(h) is dict or isinstance(h, Mapping))
    ]
    for name in CORRELATION_HEADERS:
        for headers in sources:
            found = _usable_id(headers.get(name))
            if found is not None:
                return found
    return None


def parse(body: bytes, properties: Properties | None = None) -> Envelope:
    """Parse an envelope (any RFC 3339 timestamp, unknown keys ignored). Raises ``DecodeError``
    and nothing else, whatever the bytes (``load_json`` says what is JSON).

    ``properties`` are the delivery's AMQP properties: with them the correlation id may also come
    from the property or a header when the body has none (``correlation_of``)."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise DecodeError(f"body is JSON {type(data).__name__}, not an envelope object")
    mid = data.get("id")
    mid = mid if isinstance(mid, str) else ""
    mtype = data.get("type")
    if not isinstance(mtype, str) or not mtype:
        raise DecodeError("envelope has no type", message_id=mid)
    payload = data.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise DecodeError("envelope payload is not an object", message_type=mtype, message_id=mid)
    headers = data.get("headers")
    reply_to = data.get("replyTo")
    return Envelope(
        id=mid,
        type=mtype,
        timestamp=_timestamp(data.get("timestamp")),
        correlation_id=correlation_of(data.get("correlationId"), properties, headers),
        reply_to=reply_to if isinstance(reply_to, str) and reply_to else None,
        headers=headers if isinstance(headers, dict) else {},
        payload=payload,
    )


def validate(envelope: Envelope, message_def: MessageDef) -> Model:
    """The payload as the contract's model. Raises ``DecodeError`` naming the type and message
    id."""
    try:
        return message_def.model.model_validate(envelope.payload)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<payload>'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise DecodeError(
            f"payload of {envelope.type} fails validation: {errors}",
            message_type=envelope.type,
            message_id=envelope.id,
        ) from None


def decode(body: bytes, registry: Mapping[str, MessageDef]) -> tuple[Envelope, Model]:
    """Parse ``body`` and validate its payload as the model its ``type`` names in ``registry``."""
    envelope = parse(body)
    message_def = registry.get(envelope.type)
    if message_def is None:
        raise DecodeError(
            f"unknown message type {envelope.type!r}",
            message_type=envelope.type,
            message_id=envelope.id,
        )
    return envelope, validate(envelope, message_def)


def reply_address(envelope: Envelope, property_reply_to: str | None) -> str | None:
    """Where a query's reply goes: ``payload.replyTo`` (Go), else the AMQP property, else top
    level."""
    payload_reply = envelope.payload.get("replyTo")
    if isinstance(payload_reply, str) and payload_reply:
        return payload_reply
    return property_reply_to or envelope.reply_to


def error_payload(code: str, message: str) -> dict[str, Any]:
    """The payload of an error reply (docs/interop.md, "Base fields per kind")."""
    return {"success": False, "errorCode": code, "errorMessage": message}


def reply_failure(envelope: Envelope) -> tuple[str, str] | None:
    """``(code, message)`` when the reply payload says ``success: false``, else None."""
    if envelope.payload.get("success") is False:
        return reply_error(envelope)
    return None


def reply_error(envelope: Envelope) -> tuple[str, str]:
    """``(code, message)`` of an error reply: its ``errorCode`` and ``errorMessage`` (or
    ``error``), as text whatever their JSON types."""
    code = envelope.payload.get("errorCode")
    text = envelope.payload.get("errorMessage") or envelope.payload.get("error")
    return (str(code) if code else "error", str(text) if text else "")
