"""Routing per exchange type, on the memory broker and on RabbitMQ: the same bindings and the same
messages reach the same queues. The expected tables were measured on RabbitMQ 3.10 (and the
``rabbitmq`` run of each test measures them again)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mmate._transport.base import Properties
from sides import Side, bodies, drain

KEYS = [
    "",
    "a",
    "b",
    "a.b",
    "a.a",
    "a.b.b",
    "a.x.b",
    "a.x.y.b",
    "b.a",
    "x.a",
    "a..b",
    ".",
    "..",
    "a.",
    ".a",
    "a.b.c",
    "ab",
    "a#",
    "a*",
    "a.b#",
]
ALL = KEYS
TOPIC: dict[str, list[str]] = {
    "#": ALL,
    "*": ["a", "b", "ab", "a#", "a*"],
    "a": ["a"],
    "a.*": ["a.b", "a.a", "a.", "a.b#"],
    "a.#": ["a", "a.b", "a.a", "a.b.b", "a.x.b", "a.x.y.b", "a..b", "a.", "a.b.c", "a.b#"],
    "#.a": ["a", "a.a", "b.a", "x.a", ".a"],
    "*.a": ["a.a", "b.a", "x.a", ".a"],
    "a.*.b": ["a.b.b", "a.x.b", "a..b"],
    "a.#.b": ["a.b", "a.b.b", "a.x.b", "a.x.y.b", "a..b"],
    "#.#": ALL,
    "*.#": [k for k in ALL if k != ""],
    "#.*": [k for k in ALL if k != ""],
    "*.*": ["a.b", "a.a", "b.a", "x.a", ".", "a.", ".a", "a.b#"],
    "a.#.#.b": ["a.b", "a.b.b", "a.x.b", "a.x.y.b", "a..b"],
    "#.b.#": ["b", "a.b", "a.b.b", "a.x.b", "a.x.y.b", "b.a", "a..b", "a.b.c"],
    "": [""],
    "a..b": ["a..b"],
    "a.*.*": ["a.b.b", "a.x.b", "a..b", "a.b.c"],
    "*.*.#": [
        "a.b",
        "a.a",
        "a.b.b",
        "a.x.b",
        "a.x.y.b",
        "b.a",
        "x.a",
        "a..b",
        ".",
        "..",
        "a.",
        ".a",
        "a.b.c",
        "a.b#",
    ],
    "a.b#": ["a.b#"],
    "a*": ["a*"],
    "..": [".."],
    "a.#.*": ["a.b", "a.a", "a.b.b", "a.x.b", "a.x.y.b", "a..b", "a.", "a.b.c", "a.b#"],
    "#.a.#": [
        "a",
        "a.b",
        "a.a",
        "a.b.b",
        "a.x.b",
        "a.x.y.b",
        "b.a",
        "x.a",
        "a..b",
        "a.",
        ".a",
        "a.b.c",
        "a.b#",
    ],
}


async def test_topic_matching_is_rabbitmqs(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("topic")
    await ch.declare_exchange(x, "topic", durable=False)
    queues = {}
    for index, pattern in enumerate(TOPIC):
        queues[pattern] = await ch.declare_queue(side.unique(f"t{index}"), durable=False)
        await ch.bind_queue(queues[pattern].name, x, pattern)
    for key in KEYS:
        await ch.publish(
            json.dumps(key).encode(), Properties(), exchange=x, routing_key=key, mandatory=False
        )
    await side.settle()
    got = {p: [json.loads(b) for b in await bodies(ch, q.name)] for p, q in queues.items()}
    assert got == TOPIC


BINDINGS: list[dict[str, Any]] = [
    {"x-match": "all", "a": 1, "b": "x"},
    {"x-match": "any", "a": 1, "b": "x"},
    {"a": 1},
    {"x-match": "all"},
    {"x-match": "any"},
    {"x-match": "all", "x-foo": "y"},
    {"x-match": "any", "x-foo": "y"},
    {"x-match": "all-with-x", "x-foo": "y"},
    {"x-match": "any-with-x", "x-foo": "y", "a": 2},
    {"x-match": "all", "a": "1"},
    {"x-match": "all", "c": None},
    {"x-match": "all", "a": True},
]
HEADERS: list[dict[str, Any] | None] = [
    None,
    {},
    {"a": 1},
    {"a": 1, "b": "x"},
    {"b": "x"},
    {"a": "1"},
    {"x-foo": "y"},
    {"a": 2, "x-foo": "y"},
    {"c": None},
    {"c": 1},
    {"a": True},
    {"a": 1, "b": "x", "z": 9},
]
# which messages (by index in HEADERS) each binding matches, measured on RabbitMQ 3.10
MATCHED = [
    [3, 11],
    [2, 3, 4, 11],
    [2, 3, 11],
    list(range(12)),
    [],
    list(range(12)),
    [],
    [6, 7],
    [6, 7],
    [5],
    [8, 9],
    [10],
]


async def test_headers_matching_is_rabbitmqs(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("headers")
    await ch.declare_exchange(x, "headers", durable=False)
    names = []
    for arguments in BINDINGS:
        queue = await ch.declare_queue(side.unique("h"), durable=False)
        await ch.bind_queue(queue.name, x, "ignored", arguments)
        names.append(queue.name)
    for index, headers in enumerate(HEADERS):
        await ch.publish(
            str(index).encode(),
            Properties(headers=headers),
            exchange=x,
            routing_key="whatever",
            mandatory=False,
        )
    await side.settle()
    assert [[int(b) for b in await bodies(ch, name)] for name in names] == MATCHED


async def test_an_invalid_x_match_is_refused(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("headers")
    await ch.declare_exchange(x, "headers", durable=False)
    queue = await ch.declare_queue(side.unique("h"), durable=False)
    with pytest.raises(Exception) as caught:
        await ch.bind_queue(queue.name, x, "", {"x-match": "bogus"})
    assert "406" in str(caught.value)
    assert not ch.is_open


async def test_direct_fanout_default_and_exchange_to_exchange(side: Side) -> None:
    ch = await side.channel()
    direct, fanout, src, mid = (side.unique(n) for n in ("d", "f", "src", "mid"))
    for name, kind in ((direct, "direct"), (fanout, "fanout"), (src, "topic"), (mid, "fanout")):
        await ch.declare_exchange(name, kind, durable=False)
    q1 = (await ch.declare_queue(side.unique("q1"), durable=False)).name
    q2 = (await ch.declare_queue(side.unique("q2"), durable=False)).name
    await ch.bind_queue(q1, direct, "k")
    await ch.bind_queue(q1, direct, "k2")  # two bindings, one copy
    await ch.bind_queue(q2, fanout, "whatever")
    await ch.bind_exchange(mid, src, "a.#")
    await ch.bind_exchange(fanout, mid)
    await ch.bind_queue(q1, src, "#")
    await ch.bind_exchange(src, fanout)  # a cycle: fanout -> src -> mid -> fanout

    async def send(body: str, exchange: str, key: str) -> None:
        await ch.publish(
            body.encode(), Properties(), exchange=exchange, routing_key=key, mandatory=False
        )

    await send("1", direct, "k")
    await send("2", direct, "K")  # direct keys are case-sensitive
    await send("3", fanout, "")
    await send("4", src, "a.b")  # q1 directly, and q1 and q2 again through mid and fanout
    await send("5", "", q2)  # the default exchange routes by queue name
    await side.settle()
    assert await bodies(ch, q1) == ["1", "3", "4"]
    assert await bodies(ch, q2) == ["3", "4", "5"]


async def test_bindings_are_unique_by_key_and_arguments(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("topic")
    await ch.declare_exchange(x, "topic", durable=False)
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    await ch.bind_queue(q, x, "k")
    await ch.bind_queue(q, x, "k")  # the same binding again
    await ch.unbind_queue(q, x, "k")
    await ch.publish(b"gone", Properties(), exchange=x, routing_key="k", mandatory=False)
    await ch.bind_queue(q, x, "h", {"a": 1})
    await ch.bind_queue(q, x, "h", {"a": 2})  # another binding (other arguments)
    await ch.unbind_queue(q, x, "h", {"a": 1})
    await ch.unbind_queue(q, x, "h")  # no such binding: fine
    await ch.publish(b"kept", Properties(), exchange=x, routing_key="h", mandatory=False)
    await side.settle()
    assert await bodies(ch, q) == ["kept"]


async def test_cc_and_bcc_headers_route_and_bcc_is_removed(side: Side) -> None:
    ch = await side.channel()
    x = side.unique("direct")
    await ch.declare_exchange(x, "direct", durable=False)
    seen = await ch.declare_queue(side.unique("a"), durable=False)
    hidden = await ch.declare_queue(side.unique("b"), durable=False)
    await ch.bind_queue(seen.name, x, "cc")
    await ch.bind_queue(hidden.name, x, "bcc")
    headers = {"CC": ["cc"], "BCC": ["bcc"]}
    await ch.publish(b"m", Properties(headers=headers), exchange=x, routing_key="none")
    await side.settle()
    for name in (seen.name, hidden.name):
        (delivery,) = await drain(ch, name)
        assert delivery.routing_key == "none"
        assert delivery.headers == {"CC": ["cc"]}


async def test_a_cc_header_that_is_not_a_list_closes_the_channel(side: Side) -> None:
    ch = await side.channel()
    q = (await ch.declare_queue(side.unique("q"), durable=False)).name
    with pytest.raises(Exception) as caught:
        await ch.publish(b"m", Properties(headers={"CC": "q"}), exchange="", routing_key=q)
    assert side.reply(caught.value) == (
        'PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}'
    )
    assert not ch.is_open


async def test_an_alternate_exchange_takes_what_routes_nowhere(side: Side) -> None:
    ch = await side.channel()
    alternate, main = side.unique("ae"), side.unique("main")
    await ch.declare_exchange(alternate, "fanout", durable=False)
    await ch.declare_exchange(
        main, "direct", durable=False, arguments={"alternate-exchange": alternate}
    )
    caught = (await ch.declare_queue(side.unique("caught"), durable=False)).name
    routed = (await ch.declare_queue(side.unique("routed"), durable=False)).name
    await ch.bind_queue(caught, alternate)
    await ch.bind_queue(routed, main, "known")
    await ch.publish(b"1", Properties(), exchange=main, routing_key="known")
    await ch.publish(b"2", Properties(), exchange=main, routing_key="unknown")
    await side.settle()
    assert (await bodies(ch, routed), await bodies(ch, caught)) == (["1"], ["2"])


async def test_a_byte_array_header_matches_its_text_like_rabbitmq(side: Side) -> None:
    """A byte array compares by its bytes with a long string of the same bytes (measured on
    RabbitMQ 3.10), in a binding and in a message."""
    ch = await side.channel()
    x = side.unique("headers")
    await ch.declare_exchange(x, "headers", durable=False)
    queue = await ch.declare_queue(side.unique("h"), durable=False)
    await ch.bind_queue(queue.name, x, "ignored", {"x-match": "all", "k": bytearray(b"abc")})
    for index, value in enumerate(["abc", bytearray(b"abc"), "abd", bytearray(b"ab")]):
        await ch.publish(
            str(index).encode(),
            Properties(headers={"k": value}),
            exchange=x,
            routing_key="whatever",
            mandatory=False,
        )
    await side.settle()
    assert [int(b) for b in await bodies(ch, queue.name)] == [0, 1]
