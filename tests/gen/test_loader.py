"""The spec loader: the example specs into the intermediate model; behaviour from inline specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mmate_gen.ir import Field, Message, Queue, SpecSet
from mmate_gen.loader import LoadResult, load_specs
from mmate_gen.names import snake_case
from mmate_gen.queues import retry_delays
from mmate_gen.routing import topic_overlap
from mmate_gen.yamlnodes import parse_duration

SPECS = Path(__file__).parent.parent.parent / "specs"


@pytest.fixture(scope="module")
def spec() -> SpecSet:
    result = load_specs(SPECS)
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    return result.spec


def message(spec: SpecSet, name: str) -> Message:
    return next(m for m in spec.messages if m.name == name)


def queue(spec: SpecSet, name: str) -> Queue:
    return next(q for q in spec.queues if q.name == name)


def field(msg: Message, json_name: str) -> Field:
    return next(f for f in msg.fields if f.json_name == json_name)


def write(root: Path, files: dict[str, str]) -> LoadResult:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_specs(root)


# -- the example specs -------------------------------------------------------------------------


def test_files_and_names_are_sorted(spec: SpecSet) -> None:
    assert spec.root == "specs"
    assert spec.files == (
        "specs/banking.yaml",
        "specs/common.yaml",
        "specs/inventory.yaml",
        "specs/orders.yaml",
    )
    for items in (
        spec.enums,
        spec.records,
        spec.messages,
        spec.exchanges,
        spec.queues,
        spec.services,
    ):
        names = [item.name for item in items]
        assert names == sorted(names)


def test_builtin_exchanges_are_always_there(spec: SpecSet) -> None:
    builtin = {e.name for e in spec.exchanges if e.builtin}
    assert builtin == {
        "mmate.commands",
        "mmate.contracts",
        "mmate.dlx",
        "mmate.events",
        "mmate.messages",
        "mmate.queries",
    }
    banking = next(e for e in spec.exchanges if e.name == "mmate.banking")
    assert (banking.type, banking.durable, banking.auto_delete, banking.builtin) == (
        "topic",
        True,
        False,
        False,
    )
    assert banking.loc is not None and banking.loc.path == "specs/banking.yaml"


def test_base_fields_come_first_with_their_defaults(spec: SpecSet) -> None:
    event = message(spec, "OrderCreatedEvent")
    assert [(f.json_name, f.base) for f in event.fields] == [
        ("aggregateId", True),
        ("sequence", True),
        ("source", True),
        ("orderId", False),
        ("customerId", False),
        ("amount", False),
        ("region", False),
    ]
    assert field(event, "sequence").type.name == "int64"
    assert field(event, "sequence").default == 0
    assert field(event, "source").nullable and field(event, "source").default is None
    command = message(spec, "CreateOrderCommand")
    assert [f.json_name for f in command.fields if f.base] == ["targetService", "replyTo"]
    assert field(command, "targetService").default == ""
    assert not field(command, "targetService").required
    query = message(spec, "GetOrderQuery")
    assert [f.json_name for f in query.fields if f.base] == ["replyTo"]
    assert not field(query, "replyTo").nullable
    assert query.reply == "OrderReply"
    reply = message(spec, "OrderReply")
    assert [(f.json_name, f.default, f.nullable) for f in reply.fields if f.base] == [
        ("success", True, False),
        ("errorCode", None, True),
        ("errorMessage", None, True),
    ]


def test_spec_fields(spec: SpecSet) -> None:
    event = message(spec, "OrderCreatedEvent")
    assert event.py_name == "order_created_event"
    assert event.version == "1.0" and event.spec_file == "specs/orders.yaml"
    customer = field(event, "customerId")
    assert (customer.py_name, customer.required, customer.has_default) == (
        "customer_id",
        True,
        False,
    )
    region = field(event, "region")
    assert (region.type.kind, region.type.name, region.default, region.required) == (
        "enum",
        "Region",
        "eu",
        False,
    )
    assert field(event, "amount").constraints.minimum == 0
    lines = field(message(spec, "CreateOrderCommand"), "lines")
    assert lines.type.kind == "list" and lines.type.item is not None
    assert (lines.type.item.kind, lines.type.item.name) == ("record", "OrderLine")
    assert lines.constraints.min_length == 1
    order = field(message(spec, "OrderReply"), "order")
    assert (order.nullable, order.has_default, order.default, order.required) == (
        True,
        True,
        None,
        False,
    )
    currency = field(message(spec, "ProcessPaymentCommand"), "currency")
    assert currency.constraints.pattern == "^[A-Z]{3}$" and currency.default == "EUR"
    banking = message(spec, "BankingRequest")
    assert field(banking, "sequenceNo").py_name == "sequence_no"
    assert field(banking, "memo").type.name == "bytes"
    tags = next(r for r in spec.records if r.name == "Order").fields[-1]
    assert tags.type.kind == "map" and tags.default == {}
    region_enum = next(e for e in spec.enums if e.name == "Region")
    assert region_enum.values == ("eu", "us", "apac")


def test_classic_queue_arguments_and_derived_queues(spec: SpecSet) -> None:
    main = queue(spec, "order-service-queue")
    assert main.arguments == (
        ("x-dead-letter-exchange", ""),
        ("x-dead-letter-routing-key", "order-service-queue.dlq"),
    )
    assert (main.prefetch, main.concurrency) == (20, 10)
    assert main.retry is not None
    assert main.retry.delays_ms == (1000, 2000, 4000)
    assert main.dead_letter_queue == "order-service-queue.dlq"
    assert main.wait_queues == (
        (1000, "order-service-queue.wait.1000"),
        (2000, "order-service-queue.wait.2000"),
        (4000, "order-service-queue.wait.4000"),
    )
    dlq = queue(spec, "order-service-queue.dlq")
    assert (dlq.role, dlq.origin, dlq.arguments, dlq.durable) == (
        "dead-letter",
        "order-service-queue",
        (),
        True,
    )
    assert dlq.loc == main.loc
    wait = queue(spec, "order-service-queue.wait.2000")
    assert wait.role == "wait" and wait.origin == "order-service-queue"
    assert wait.arguments == (
        ("x-dead-letter-exchange", ""),
        ("x-dead-letter-routing-key", "order-service-queue"),
        ("x-message-ttl", 2000),
    )


def test_quorum_queue_arguments(spec: SpecSet) -> None:
    main = queue(spec, "inventory-service-queue")
    assert dict(main.arguments) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 10,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "inventory-service-queue.dlq",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert main.retry is not None and main.retry.delays_ms == (500, 1000, 2000, 4000)
    assert queue(spec, "inventory-service-queue.dlq").arguments == (("x-queue-type", "quorum"),)
    wait = dict(queue(spec, "inventory-service-queue.wait.500").arguments)
    assert wait["x-queue-type"] == "quorum" and wait["x-dead-letter-strategy"] == "at-least-once"
    assert wait["x-message-ttl"] == 500


def test_other_queue_settings(spec: SpecSet) -> None:
    payment = queue(spec, "payment-service-queue")
    assert dict(payment.arguments)["x-max-length"] == 100000
    assert payment.retry is not None and payment.retry.delays_ms == (2000, 2000)
    assert payment.wait_queues == ((2000, "payment-service-queue.wait.2000"),)
    banking = queue(spec, "banking-service-queue")
    assert banking.fifo and dict(banking.arguments)["x-single-active-consumer"] is True
    assert (banking.prefetch, banking.concurrency) == (1, 1)
    audit = queue(spec, "order-audit-queue")
    assert audit.retry is not None
    assert (audit.retry.attempts, audit.retry.backoff, audit.retry.jitter) == (
        3,
        "exponential",
        True,
    )
    assert (audit.retry.initial_delay_ms, audit.retry.max_delay_ms) == (1000, 60000)
    assert audit.retry.unknown_errors == "transient"


def test_service_and_queue_descriptions_are_kept(spec: SpecSet) -> None:
    services = {s.name: s for s in spec.services}
    assert services["banking-service"].description == (
        "Executes deposits, withdrawals and transfers strictly in the order they were sent."
    )
    assert services["order-service"].description is None
    banking = queue(spec, "banking-service-queue")
    assert banking.description == "Banking requests, handled one at a time in publish order."
    assert queue(spec, "banking-service-queue.dlq").description is None
    assert queue(spec, "order-service-queue").description is None


def test_routes_and_bindings(spec: SpecSet) -> None:
    services = {s.name: s for s in spec.services}
    order = services["order-service"]
    assert (order.py_name, order.class_prefix) == ("order_service", "OrderService")
    created = next(r for r in order.publishes if r.message == "OrderCreatedEvent")
    assert (created.exchange, created.routing_key, created.explicit, created.persistent) == (
        "mmate.events",
        "order.{region}.created",
        True,
        True,
    )
    assert [(p.text, p.field.json_name if p.field else None) for p in created.key_parts] == [
        ("order.", None),
        ("{region}", "region"),
        (".created", None),
    ]
    query = next(r for r in services["storefront"].publishes if r.message == "GetOrderQuery")
    assert (query.exchange, query.routing_key, query.explicit) == (
        "mmate.queries",
        "qry.GetOrderQuery",
        False,
    )
    consume = order.consumes[0]
    assert consume.queue == "order-service-queue"
    assert consume.handles == ("CreateOrderCommand", "ProcessOrderCommand", "GetOrderQuery")
    keys = {(b.queue, b.exchange, b.routing_key) for b in spec.bindings}
    assert ("order-audit-queue", "mmate.events", "order.*.created") in keys
    assert ("banking-service-queue", "mmate.banking", "banking.service.*") in keys


# -- small pure pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500", 500),
        ("500ms", 500),
        ("30s", 30000),
        ("5m", 300000),
        ("1h", 3600000),
        ("2d", 172800000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


def test_bad_durations() -> None:
    assert parse_duration("5 sec") is None
    assert parse_duration("-1s") is None


def test_retry_delays_are_capped() -> None:
    assert retry_delays("exponential", 1000, 5000, 6) == (1000, 2000, 4000, 5000, 5000)
    assert retry_delays("linear", 1000, 2500, 4) == (1000, 2000, 2500)
    assert retry_delays("fixed", 700, 60000, 3) == (700, 700)
    assert retry_delays("exponential", 1000, 60000, 1) == ()


@pytest.mark.parametrize(
    ("left", "right", "overlap"),
    [
        ("cmd.*.X", "cmd.order.*", True),
        ("cmd.*.X", "cmd.#", True),
        ("evt.*.X", "cmd.#", False),
        ("a.b", "#", True),
        ("a.b.c", "a.*", False),
        ("a.*", "a.#.c", True),
        ("a", "a.#", True),
        ("a", "a.*", False),
        ("qry.GetOrderQuery", "qry.GetOrderQuery", True),
    ],
)
def test_topic_overlap(left: str, right: str, overlap: bool) -> None:
    assert topic_overlap(tuple(left.split(".")), tuple(right.split("."))) is overlap


@pytest.mark.parametrize(
    ("json_name", "py_name"),
    [
        ("customerId", "customer_id"),
        ("orderID", "order_id"),
        ("amount", "amount"),
        ("line2Total", "line2_total"),
    ],
)
def test_snake_case(json_name: str, py_name: str) -> None:
    assert snake_case(json_name) == py_name


# -- inline specs ------------------------------------------------------------------------------

PING = """\
version: "2.1"
messages:
  PingCommand:
    kind: command
    fields:
      note: string
"""


def test_nested_files_and_yml_are_read_with_display_paths(tmp_path: Path) -> None:
    root = tmp_path / "contracts"
    result = write(
        root,
        {
            "b/ping.yml": PING,
            "a.yaml": """\
                version: "1.0"
                queues:
                  ping-queue:
                    go_compatible: false
                    bindings: [{exchange: mmate.commands, routing_key: "cmd.#"}]
                services:
                  ping:
                    consumes: {ping-queue: [PingCommand]}
                """,
            "notes.txt": "not a spec",
        },
    )
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    assert result.spec.root == "contracts"
    assert result.spec.files == ("contracts/a.yaml", "contracts/b/ping.yml")
    assert result.spec.messages[0].version == "2.1"


def test_retry_false_and_dead_letter_to_a_spec_queue(tmp_path: Path) -> None:
    result = write(
        tmp_path / "specs",
        {
            "s.yaml": PING
            + """\
queues:
  ping-queue:
    go_compatible: false
    retry: false
    prefetch: 4
    dead_letter: {queue: ping-dead}
    bindings: [{exchange: mmate.commands, routing_key: "cmd.*.PingCommand"}]
  ping-dead: {type: quorum, dead_letter: {queue: parking}}
services:
  ping:
    consumes: {ping-queue: [PingCommand]}
"""
        },
    )
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    queues = {q.name: q for q in result.spec.queues}
    assert set(queues) == {
        "ping-queue",
        "ping-dead",
        "parking",
        "ping-dead.wait.1000",
        "ping-dead.wait.2000",
    }
    main = queues["ping-queue"]
    assert main.retry is None and main.wait_queues == ()
    assert main.concurrency == 4  # default concurrency is at most prefetch
    assert main.dead_letter_queue == "ping-dead"
    assert dict(main.arguments)["x-dead-letter-routing-key"] == "ping-dead"
    parking = queues["parking"]
    assert (parking.role, parking.origin, parking.queue_type) == (
        "dead-letter",
        "ping-dead",
        "quorum",
    )


def test_fifo_queues_handle_one_at_a_time_and_may_retry_in_process(tmp_path: Path) -> None:
    result = write(
        tmp_path / "specs",
        {
            "s.yaml": PING
            + """\
queues:
  ping-queue:
    go_compatible: false
    fifo: true
    prefetch: 20
    retry: {attempts: 1, immediate: 3}
    bindings: [{exchange: mmate.commands, routing_key: "cmd.*.PingCommand"}]
  other-queue:
    prefetch: 20
    bindings: [{exchange: mmate.commands, routing_key: "cmd.*.PingCommand"}]
services:
  ping:
    consumes: {ping-queue: [PingCommand], other-queue: [PingCommand]}
"""
        },
    )
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    fifo = queue(result.spec, "ping-queue")
    assert (fifo.prefetch, fifo.concurrency) == (20, 1)  # fifo: one handler at a time
    assert fifo.retry is not None and (fifo.retry.attempts, fifo.retry.immediate) == (1, 3)
    assert fifo.retry.delays_ms == () and fifo.wait_queues == ()
    assert not any(q.origin == "ping-queue" and q.role == "wait" for q in result.spec.queues)
    assert queue(result.spec, "other-queue").concurrency == 10


def test_dead_letter_through_an_exchange(tmp_path: Path) -> None:
    result = write(
        tmp_path / "specs",
        {
            "s.yaml": PING
            + """\
exchanges:
  ping.dlx: {type: direct}
queues:
  ping-queue:
    go_compatible: false
    message_ttl: 1m
    max_priority: 5
    max_message_bytes: 1024
    dead_letter: {exchange: ping.dlx, routing_key: dead}
    bindings: [{exchange: mmate.commands, routing_key: "cmd.*.PingCommand"}]
  dead-queue:
    bindings: [{exchange: ping.dlx, routing_key: dead}]
services:
  ping:
    consumes: {ping-queue: [PingCommand]}
"""
        },
    )
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    main = next(q for q in result.spec.queues if q.name == "ping-queue")
    assert dict(main.arguments) == {
        "x-dead-letter-exchange": "ping.dlx",
        "x-dead-letter-routing-key": "dead",
        "x-message-ttl": 60000,
        "x-max-priority": 5,
    }
    assert main.dead_letter_queue is None and main.max_message_bytes == 1024
    assert "ping-queue.dlq" not in {q.name for q in result.spec.queues}


def test_a_warning_keeps_the_model(tmp_path: Path) -> None:
    result = write(
        tmp_path / "specs", {"s.yaml": PING + "services:\n  ping:\n    publishes: [PingCommand]\n"}
    )
    assert [d.level for d in result.diagnostics] == ["warning"]
    assert result.spec is not None
    route = result.spec.services[0].publishes[0]
    assert (route.exchange, route.routing_key, route.explicit) == (
        "mmate.commands",
        "cmd.{targetService}.PingCommand",
        False,
    )
    assert route.key_parts[1].field is not None
    assert route.key_parts[1].field.json_name == "targetService"


def test_direct_and_fanout_exchanges_deliver(tmp_path: Path) -> None:
    result = write(
        tmp_path / "specs",
        {
            "s.yaml": PING
            + """\
exchanges:
  ping.direct: {type: direct}
  ping.fanout: {type: fanout}
queues:
  a-queue:
    bindings: [{exchange: ping.direct, routing_key: ping.eu}]
  b-queue:
    bindings: [{exchange: ping.fanout}]
services:
  ping:
    publishes:
      - {message: PingCommand, exchange: ping.direct, routing_key: "ping.{note}"}
      - {message: PingCommand, exchange: ping.fanout}
  pong:
    consumes: {a-queue: [PingCommand], b-queue: [PingCommand]}
"""
        },
    )
    # the same message published twice by one service is an error; everything else is fine
    assert [d.message for d in result.diagnostics] == ['service "ping" publishes PingCommand twice']


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[",
        "\t- a",
        "version: !!python/object:os.system x",
        "a: &x [*x]",
        "version: '1.0'\nmessages: [1, 2]",
        "version: '1.0'\nmessages: {X: {kind: query, reply: [1]}}",
        "version: '1.0'\nqueues: {q: {bindings: [1, {exchange: [x]}]}}",
        "version: '1.0'\nservices: {s: {publishes: {a: 1}, consumes: [1]}}",
        "version: '1.0'\ntypes: {T: {enum: {a: 1}}, U: {fields: [1]}}",
        "---\na: 1\n---\nb: 2",
        "? [a, b]\n: c",
        "version: '1'\nmessages: {X: {kind: event, fields: {a: {type: int, default: {x: [1]}}}}}",
    ],
)
def test_garbage_never_raises(tmp_path: Path, text: str) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "x.yaml").write_text(text, encoding="utf-8")
    result = load_specs(tmp_path / "specs")
    assert result.spec is None
    assert result.diagnostics
    assert not any("internal error" in d.message for d in result.diagnostics)


def test_missing_directory(tmp_path: Path) -> None:
    result = load_specs(tmp_path / "nowhere")
    assert result.spec is None
    assert result.diagnostics[0].loc.path == "nowhere"
