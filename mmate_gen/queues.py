"""Queue arguments, retry delays and the derived dead-letter and wait queues of a spec queue."""

from __future__ import annotations

from typing import Literal

from .ir import ArgValue, Queue, RetryPolicy
from .rawspec import RawQueue, RawRetry

DEFAULT_DELIVERY_LIMIT = 20
_AT_LEAST_ONCE: tuple[tuple[str, ArgValue], ...] = (
    ("x-dead-letter-strategy", "at-least-once"),
    ("x-overflow", "reject-publish"),
)


def retry_delays(backoff: str, initial_ms: int, max_ms: int, attempts: int) -> tuple[int, ...]:
    """The delay before each retry (``attempts - 1`` of them), each capped at ``max_ms``."""
    delays: list[int] = []
    for i in range(max(attempts - 1, 0)):
        if backoff == "exponential":
            delay = initial_ms * 2**i
        elif backoff == "linear":
            delay = initial_ms * (i + 1)
        else:
            delay = initial_ms
        delays.append(min(delay, max_ms))
    return tuple(delays)


def retry_policy(raw: RawRetry | None) -> RetryPolicy | None:
    if raw is None:
        return None
    backoff: Literal["exponential", "linear", "fixed"] = (
        "linear"
        if raw.backoff == "linear"
        else "fixed"
        if raw.backoff == "fixed"
        else "exponential"
    )
    return RetryPolicy(
        attempts=raw.attempts,
        backoff=backoff,
        initial_delay_ms=raw.initial_delay_ms,
        max_delay_ms=raw.max_delay_ms,
        jitter=raw.jitter,
        delays_ms=retry_delays(raw.backoff, raw.initial_delay_ms, raw.max_delay_ms, raw.attempts),
        immediate=raw.immediate,
        unknown_errors="permanent" if raw.unknown_errors == "permanent" else "transient",
    )


def dead_letter_target(raw: RawQueue) -> tuple[str, str] | None:
    """(dead-letter exchange, routing key) of a queue, or None without dead-lettering."""
    dl = raw.dead_letter
    if not dl.enabled:
        return None
    if dl.exchange is not None:
        return dl.exchange, dl.routing_key or ""
    return "", dl.queue if dl.queue is not None else f"{raw.name}.dlq"


def dead_letter_queue_name(raw: RawQueue) -> str | None:
    """The queue dead letters land in when they go through the default exchange."""
    target = dead_letter_target(raw)
    return target[1] if target is not None and target[0] == "" else None


def go_arguments(raw: RawQueue) -> tuple[tuple[str, ArgValue], ...]:
    """The arguments Go Mmate declares its service queue with: none, or single active consumer in
    FIFO mode."""
    return (("x-single-active-consumer", True),) if raw.fifo else ()


def main_arguments(raw: RawQueue) -> tuple[tuple[str, ArgValue], ...]:
    if raw.go_compatible:
        return go_arguments(raw)
    args: dict[str, ArgValue] = {}
    quorum = raw.type == "quorum"
    if quorum:
        args["x-queue-type"] = "quorum"
        args["x-delivery-limit"] = raw.delivery_limit or DEFAULT_DELIVERY_LIMIT
    if raw.fifo:
        args["x-single-active-consumer"] = True
    if raw.max_length is not None:
        args["x-max-length"] = raw.max_length
    if raw.message_ttl_ms is not None:
        args["x-message-ttl"] = raw.message_ttl_ms
    if raw.max_priority is not None:
        args["x-max-priority"] = raw.max_priority
    target = dead_letter_target(raw)
    if target is not None:
        args["x-dead-letter-exchange"] = target[0]
        args["x-dead-letter-routing-key"] = target[1]
        if quorum:
            args.update(_AT_LEAST_ONCE)
    return tuple(sorted(args.items()))


def build_queues(raw: RawQueue, spec_queue_names: frozenset[str]) -> list[Queue]:
    """The main queue, then its dead-letter queue (when we declare it) and its wait queues."""
    retry = retry_policy(raw.retry)
    delays = sorted(set(retry.delays_ms)) if retry is not None else []
    waits = tuple((ms, f"{raw.name}.wait.{ms}") for ms in delays)
    dlq = dead_letter_queue_name(raw)
    queue_type: Literal["classic", "quorum"] = "quorum" if raw.type == "quorum" else "classic"
    main = Queue(
        name=raw.name,
        role="main",
        queue_type=queue_type,
        durable=raw.durable,
        exclusive=raw.exclusive,
        auto_delete=raw.auto_delete,
        fifo=raw.fifo,
        arguments=main_arguments(raw),
        prefetch=raw.prefetch,
        concurrency=raw.concurrency,
        retry=retry,
        dead_letter_queue=dlq,
        wait_queues=waits,
        max_message_bytes=raw.max_message_bytes,
        origin=None,
        loc=raw.loc,
        description=raw.description,
        consumers=raw.consumers,
        go_compatible=raw.go_compatible,
        service=raw.service,
    )
    result = [main]
    type_args: tuple[tuple[str, ArgValue], ...] = (
        (("x-queue-type", "quorum"),) if queue_type == "quorum" else ()
    )
    if dlq is not None and dlq not in spec_queue_names:
        result.append(_derived(main, dlq, "dead-letter", type_args))
    for ms, name in waits:
        args: dict[str, ArgValue] = dict(type_args)
        args["x-message-ttl"] = ms
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = raw.name
        if queue_type == "quorum":
            args.update(_AT_LEAST_ONCE)
        result.append(_derived(main, name, "wait", tuple(sorted(args.items()))))
    return result


def _derived(
    main: Queue,
    name: str,
    role: Literal["dead-letter", "wait"],
    arguments: tuple[tuple[str, ArgValue], ...],
) -> Queue:
    return Queue(
        name=name,
        role=role,
        queue_type=main.queue_type,
        durable=True,
        exclusive=False,
        auto_delete=False,
        fifo=False,
        arguments=tuple(sorted(arguments)),
        prefetch=main.prefetch,
        concurrency=main.concurrency,
        retry=None,
        dead_letter_queue=None,
        wait_queues=(),
        max_message_bytes=None,
        origin=main.name,
        loc=main.loc,
    )
