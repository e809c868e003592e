"""Exchanges, queues and bindings: names, settings that RabbitMQ refuses, dead-letter routes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .checks_go import check_go_compatible
from .ir import Binding, Exchange, Queue
from .names import abbreviated, did_you_mean, one_of
from .queues import DEFAULT_DELIVERY_LIMIT
from .rawspec import RawExchange, RawQueue
from .report import Report
from .routing import MAX_KEY_BYTES, TemplatePart, route_reaches, topic_pattern_problem

BUILTIN_EXCHANGES = (
    "mmate.commands",
    "mmate.contracts",
    "mmate.dlx",
    "mmate.events",
    "mmate.messages",
    "mmate.queries",
)
"""The Mmate exchanges every Go client declares on connect (docs/interop.md), all durable
topic exchanges without arguments; a spec may use them without defining them."""

ExchangeType = Literal["topic", "direct", "fanout", "headers"]
_TYPES: Mapping[str, ExchangeType] = {
    "topic": "topic",
    "direct": "direct",
    "fanout": "fanout",
    "headers": "headers",
}


def amqp_name_problem(name: str) -> tuple[str, str] | None:
    """(what is wrong, hint) for a queue or exchange name RabbitMQ refuses."""
    if not name:
        return "is empty", "write a name"
    if len(name.encode()) > MAX_KEY_BYTES:
        return "is longer than 255 bytes", "shorten it"
    if name.startswith("amq."):
        return "starts with amq., which RabbitMQ reserves", "choose a name without the amq. prefix"
    return None


def build_exchanges(report: Report, raws: list[RawExchange]) -> dict[str, Exchange]:
    exchanges = {
        name: Exchange(name, "topic", durable=True, auto_delete=False, builtin=True, loc=None)
        for name in BUILTIN_EXCHANGES
    }
    for raw in raws:
        if raw.name in exchanges:
            if (raw.type, raw.durable, raw.auto_delete) != ("topic", True, False):
                report.error(
                    raw.loc,
                    f'exchange "{raw.name}" is a built-in Mmate exchange redefined with other '
                    "settings",
                    "remove it (it is always a durable, non-auto-delete topic exchange without "
                    "arguments, as Go Mmate declares it), or define an exchange of your own",
                )
            continue
        problem = amqp_name_problem(raw.name)
        if problem is not None:
            report.error(raw.loc, f'exchange name "{raw.name}" {problem[0]}', problem[1])
        kind = _TYPES.get(raw.type, "topic")
        exchanges[raw.name] = Exchange(raw.name, kind, raw.durable, raw.auto_delete, False, raw.loc)
    return exchanges


def check_queue(report: Report, raw: RawQueue, exchanges: Mapping[str, Exchange]) -> list[Binding]:
    """Check one queue's own settings and bindings; returns its bindings."""
    what = raw.what
    problem = amqp_name_problem(raw.name)
    if problem is not None:
        report.error(raw.loc, f'queue name "{abbreviated(raw.name)}" {problem[0]}', problem[1])
    at = raw.locs.get
    if raw.go_compatible:
        check_go_compatible(report, raw)
    elif raw.type == "quorum":
        conflicts = (
            ("exclusive", raw.exclusive, "exclusive: true"),
            ("auto_delete", raw.auto_delete, "auto_delete: true"),
            ("durable", not raw.durable, "durable: false"),
            ("max_priority", raw.max_priority is not None, "max_priority"),
        )
        for key, bad, text in conflicts:
            if bad:
                report.error(
                    at(key, raw.loc),
                    f"quorum {what} cannot have {text}",
                    f"remove {key}, or use type: classic",
                )
        limit = raw.delivery_limit or DEFAULT_DELIVERY_LIMIT
        if raw.retry is not None and raw.retry.attempts > limit:
            report.error(
                raw.retry.attempts_loc or raw.retry.loc,
                f"retry attempts {raw.retry.attempts} of quorum {what} exceed its "
                f"delivery_limit {limit}",
                f"write attempts: {limit} or less, or raise delivery_limit to {raw.retry.attempts}",
            )
    elif raw.delivery_limit is not None:
        report.error(
            at("delivery_limit", raw.loc),
            f"classic {what} has a delivery_limit, which only quorum queues have",
            "remove delivery_limit, or write type: quorum",
        )
    if raw.consumers > 1 and raw.exclusive:
        report.error(
            at("consumers", raw.loc),
            f"exclusive {what} has consumers {raw.consumers}: an exclusive queue accepts "
            "consumers only on the connection that declared it, so a consumer group spread over "
            "connections fails with 405 RESOURCE_LOCKED",
            "write consumers: 1, or remove exclusive: true",
        )
    if raw.fifo and raw.concurrency > 1:
        report.error(
            at("concurrency", raw.loc),
            f"fifo {what} has concurrency {raw.concurrency}: handlers running at once finish out "
            "of publish order",
            "write concurrency: 1 (the default of a fifo queue), or drop fifo: true if the order "
            "does not matter",
        )
    elif raw.concurrency > raw.prefetch:
        report.error(
            at("concurrency", raw.loc),
            f"concurrency {raw.concurrency} of {what} is above its prefetch {raw.prefetch}",
            f"write concurrency: {raw.prefetch} or less, or raise prefetch",
        )
    if raw.retry is not None and raw.retry.max_delay_ms < raw.retry.initial_delay_ms:
        report.error(
            raw.retry.max_delay_loc or raw.retry.loc,
            f"retry max_delay of {what} ({raw.retry.max_delay_ms} ms) is below its initial_delay "
            f"({raw.retry.initial_delay_ms} ms)",
            "write a max_delay at least as long as initial_delay",
        )
    _check_fifo_retry(report, raw)
    _check_dead_letter_shape(report, raw, exchanges)
    return [b for b in (_binding(report, raw, i, exchanges) for i in range(len(raw.bindings))) if b]


def _check_fifo_retry(report: Report, raw: RawQueue) -> None:
    """A message retried through a wait queue re-enters a fifo queue behind later messages."""
    retry = raw.retry
    if not raw.fifo or retry is None or retry.attempts <= 1:
        return
    if retry.attempts_loc is not None:
        loc = retry.attempts_loc
    elif "retry" in raw.locs:
        loc = retry.loc
    else:
        loc = raw.locs.get("fifo", raw.loc)
    immediate = retry.immediate or retry.attempts - 1
    attempts = f"{retry.attempts}" if retry.attempts_loc else f"{retry.attempts}, the default"
    report.warn(
        loc,
        f'fifo queue "{raw.name}" retries failed messages through wait queues (retry attempts '
        f"{attempts}): a retried message re-enters the queue behind later ones, out of "
        "publish order",
        "write retry: false to dead-letter failures at once and keep the order, or "
        f"retry: {{attempts: 1, immediate: {immediate}}} to retry in-process only",
    )


def _check_dead_letter_shape(
    report: Report, raw: RawQueue, exchanges: Mapping[str, Exchange]
) -> None:
    dl = raw.dead_letter
    what = f'queue "{raw.name}"'
    loc = dl.loc or raw.loc
    if not dl.enabled:
        report.warn(
            loc,
            f"{what} has dead_letter: false: messages it rejects are discarded",
            f"remove dead_letter: false to keep them in {raw.name}.dlq",
        )
    elif dl.queue is not None:
        problem = amqp_name_problem(dl.queue)
        if problem is not None:
            report.error(
                loc, f'dead-letter queue name "{dl.queue}" of {what} {problem[0]}', problem[1]
            )
        elif dl.queue == raw.name:
            report.error(
                loc,
                f"{what} dead-letters into itself",
                f"name another queue, e.g. dead_letter: {{queue: {raw.name}.dlq}}",
            )
    elif dl.exchange is not None and dl.exchange not in exchanges:
        report.error(
            loc,
            f'dead_letter of {what} names unknown exchange "{dl.exchange}"',
            did_you_mean(dl.exchange, exchanges, one_of(exchanges)),
        )
    key = dl.routing_key if dl.exchange is not None else None
    if key is not None and len(key.encode()) > MAX_KEY_BYTES:
        report.error(
            loc,
            f"dead-letter routing_key of {what} is longer than 255 bytes, AMQP's limit",
            "shorten it",
        )


def _binding(
    report: Report, raw: RawQueue, index: int, exchanges: Mapping[str, Exchange]
) -> Binding | None:
    b = raw.bindings[index]
    what = f'binding of queue "{raw.name}"'
    if b.exchange is None:
        return None
    exchange = exchanges.get(b.exchange)
    if exchange is None:
        report.error(
            b.exchange_loc,
            f'{what} names unknown exchange "{b.exchange}"',
            did_you_mean(b.exchange, exchanges, one_of(exchanges)),
        )
        return None
    key = b.routing_key
    if key is None:
        if b.key_typo:
            return None
        if exchange.type in ("topic", "direct"):
            report.error(
                b.loc,
                f'{what} from {exchange.type} exchange "{exchange.name}" has no routing_key',
                "add routing_key: PATTERN (`*` one word, `#` any words)"
                if exchange.type == "topic"
                else "add routing_key: KEY",
            )
            return None
        key = ""
    if len(key.encode()) > MAX_KEY_BYTES:
        report.error(
            b.key_loc,
            f'routing_key "{abbreviated(key)}" of {what} is longer than 255 bytes, AMQP\'s limit',
            "shorten it",
        )
        return None
    if exchange.type == "topic":
        problem = topic_pattern_problem(key)
        if problem is not None:
            report.error(
                b.key_loc,
                f'routing_key "{abbreviated(key)}" of {what} is not an AMQP topic pattern: it '
                f"{problem}",
                "write dot-separated words where * (one word) and # (any words) stand alone, "
                "e.g. cmd.order-service.*",
            )
            return None
    return Binding(exchange.name, raw.name, key, tuple(sorted(b.arguments.items())), b.loc)


def check_dead_letter_routes(
    report: Report,
    raws: list[RawQueue],
    exchanges: Mapping[str, Exchange],
    bindings: list[Binding],
) -> None:
    """A dead-letter route through an exchange must reach some queue of the specs."""
    for raw in raws:
        dl = raw.dead_letter
        if not dl.enabled or dl.exchange is None or dl.exchange not in exchanges:
            continue
        if dl.routing_key is None or len(dl.routing_key.encode()) > MAX_KEY_BYTES:
            continue  # reported when read or by the shape check
        exchange = exchanges[dl.exchange]
        parts = [TemplatePart(dl.routing_key)]
        if any(
            b.exchange == exchange.name and route_reaches(exchange.type, parts, b.routing_key)
            for b in bindings
        ):
            continue
        report.error(
            dl.loc or raw.loc,
            f'dead letters of queue "{raw.name}" go to exchange "{dl.exchange}" with routing key '
            f'"{dl.routing_key}", which no queue binding receives',
            f'bind a queue from "{dl.exchange}" with a key matching "{dl.routing_key}", '
            "or write dead_letter: {queue: NAME}",
        )


def check_derived_names(report: Report, raws: list[RawQueue], derived: Mapping[str, str]) -> None:
    """A derived queue (``.dlq``, ``.wait.<ms>``) must not take the name of a spec queue."""
    spec = {raw.name: raw for raw in raws}
    for name, origin in derived.items():
        if name in spec:
            report.error(
                spec[name].loc,
                f'queue "{name}" takes the name of a queue derived from queue "{origin}"',
                f'rename it, or write dead_letter: {{queue: {name}}} on "{origin}" to use it as '
                "its dead-letter queue",
            )


def check_derived_lengths(report: Report, raws: list[RawQueue], derived: list[Queue]) -> None:
    """A derived queue's name (``<queue>.dlq``, ``<queue>.wait.<ms>``) is an AMQP short string
    too: at most 255 bytes. Reported once per queue and kind (the longest name); a main queue
    whose own name is too long is reported for that alone."""
    spec = {raw.name: raw for raw in raws}
    longest: dict[tuple[str, str], Queue] = {}
    for queue in derived:
        key = (queue.origin or "", queue.role)
        if key not in longest or len(queue.name.encode()) > len(longest[key].name.encode()):
            longest[key] = queue
    for (origin_name, role), queue in longest.items():
        origin = spec.get(origin_name)
        size = len(queue.name.encode())
        if origin is None or size <= MAX_KEY_BYTES or amqp_name_problem(origin.name):
            continue
        room = MAX_KEY_BYTES - (size - len(origin.name.encode()))
        if role == "wait":
            what = "wait queue"
            loc = origin.retry.loc if origin.retry is not None else origin.loc
            other = ""
        else:
            what = "dead-letter queue"
            loc = origin.dead_letter.loc or origin.loc
            other = ", or name a shorter one with dead_letter: {queue: NAME}"
        report.error(
            loc,
            f'queue "{abbreviated(origin.name)}" derives the {what} "{abbreviated(queue.name)}", '
            "longer than AMQP's 255 bytes",
            f"shorten the queue name to at most {room} bytes{other}",
        )
