"""The cascade without a broker: delay rounding, routing keys, and a simulation of the topology's
topic routing and dead-lettering that checks every delay spends exactly its seconds in the
cascade, through the queues of its set bits and no others."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from mmate import MmateError
from mmate._delays.cascade import (
    LEVELS,
    MAX_DELAY_SECONDS,
    DelayTopology,
    bits,
    delay_seconds,
    first_level,
)


def test_delay_rounds_up_to_whole_seconds() -> None:
    assert delay_seconds(0) == 0
    assert delay_seconds(0.001) == 1
    assert delay_seconds(1) == 1
    assert delay_seconds(1.2) == 2
    assert delay_seconds(0.1 + 0.2) == 1  # float noise does not add a second
    assert delay_seconds(3.0000000001) == 3
    assert delay_seconds(timedelta(minutes=5)) == 300
    assert delay_seconds(timedelta(milliseconds=1500)) == 2
    assert delay_seconds(MAX_DELAY_SECONDS) == MAX_DELAY_SECONDS


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), MAX_DELAY_SECONDS + 1])
def test_invalid_delays_are_refused(bad: float) -> None:
    with pytest.raises(MmateError):
        delay_seconds(bad)


def test_schedule_at_is_a_delay_from_now_rounded_up() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert delay_seconds(schedule_at=now + timedelta(seconds=2.3), now=now) == 3
    assert delay_seconds(schedule_at=now + timedelta(hours=1), now=now) == 3600
    assert delay_seconds(schedule_at=now - timedelta(days=1), now=now) == 0  # past: now
    other_zone = (now + timedelta(seconds=10)).astimezone(timezone(timedelta(hours=5)))
    assert delay_seconds(schedule_at=other_zone, now=now) == 10


def test_schedule_at_must_be_timezone_aware_and_exclusive_with_delay() -> None:
    with pytest.raises(MmateError, match="timezone-aware"):
        delay_seconds(schedule_at=datetime(2030, 1, 1))
    with pytest.raises(MmateError, match="exactly one"):
        delay_seconds(5, datetime.now(UTC))
    with pytest.raises(MmateError, match="exactly one"):
        delay_seconds()


def test_routing_key_is_28_binary_words_most_significant_first() -> None:
    words = bits(5).split(".")
    assert len(words) == LEVELS and words[-3:] == ["1", "0", "1"] and set(words[:-3]) == {"0"}
    assert bits(MAX_DELAY_SECONDS) == ".".join(["1"] * LEVELS)
    assert first_level(0) is None and first_level(1) == 0 and first_level(5) == 2
    assert first_level(2**20) == 20 and first_level(MAX_DELAY_SECONDS) == 27


def test_topology_has_fixed_entities_with_one_ttl_each() -> None:
    topo = DelayTopology("p")
    queues = dict(topo.queues())
    assert len(topo.exchanges()) == LEVELS + 1 and len(queues) == LEVELS + 2
    for level in range(LEVELS):
        args = queues[f"p.{level}"]
        assert args["x-message-ttl"] == 2**level * 1000
        assert args["x-dead-letter-exchange"] == (f"p.{level - 1}" if level else "p.delivery")
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"


def _matches(pattern: str, key: str) -> bool:
    """AMQP topic matching (``*`` one word, ``#`` zero or more)."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def _simulate(topo: DelayTopology, exchange: str, key: str) -> tuple[int, list[str]]:
    """Follow a message through the declared bindings and dead-letter routes: the seconds it
    waits and the queues it passes, until it reaches the ready queue."""
    to_queues: dict[str, list[tuple[str, str]]] = {}
    for source, queue, pattern in topo.queue_bindings():
        to_queues.setdefault(source, []).append((queue, pattern))
    to_exchanges: dict[str, list[tuple[str, str]]] = {}
    for source, dest, pattern in topo.exchange_bindings():
        to_exchanges.setdefault(source, []).append((dest, pattern))
    dead_letter = {name: args for name, args in topo.queues()}
    waited, path = 0, []
    for _ in range(10 * LEVELS):
        queues = [q for q, p in to_queues.get(exchange, []) if _matches(p, key)]
        onward = [e for e, p in to_exchanges.get(exchange, []) if _matches(p, key)]
        assert len(queues) + len(onward) == 1, f"{key} at {exchange}: {queues} {onward}"
        if onward:
            exchange = onward[0]
            continue
        queue = queues[0]
        path.append(queue)
        if queue == topo.ready:
            return waited, path
        waited += int(dead_letter[queue]["x-message-ttl"]) // 1000
        exchange = str(dead_letter[queue]["x-dead-letter-exchange"])
    raise AssertionError("routing loop")


def test_every_delay_waits_exactly_its_seconds_through_its_set_bits() -> None:
    topo = DelayTopology("p")
    rng = random.Random(5)
    delays = [0, 1, 2, 3, 5, 6, 7, 2**20, 2**20 + 5, 86_400, 31_536_000, MAX_DELAY_SECONDS]
    delays += [rng.randrange(MAX_DELAY_SECONDS + 1) for _ in range(300)]
    for seconds in delays:
        exchange, key = topo.route(seconds, "orders.events", "order.eu.created")
        waited, path = _simulate(topo, exchange, key)
        assert waited == seconds
        levels = [int(q.rsplit(".", 1)[1]) for q in path[:-1]]
        assert levels == [lv for lv in reversed(range(LEVELS)) if seconds >> lv & 1]
        assert path[-1] == topo.ready
        assert len(key) <= 255 and key.endswith("orders.events.order.eu.created")


def test_zero_goes_to_delivery_and_long_destinations_fit_a_routing_key() -> None:
    topo = DelayTopology("p")
    assert topo.route(0, "x", "k")[0] == "p.delivery"
    exchange, key = topo.route(7, "e" * 255, "k" * 255)
    assert exchange == "p.2" and len(key.encode()) <= 255
    assert len(topo.route(7, "ø" * 200, "k")[1].encode()) <= 255
    assert math.isclose(_simulate(topo, exchange, key)[0], 7)
