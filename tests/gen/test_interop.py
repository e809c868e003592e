"""Generated code for interop with Go Mmate, from inline specs: Go-compatible queues, Go's service
queue, external publishers, ``mmate.dlx``, and the per-route settings (priority, compression, size
limit) and per-queue consumer groups carried into the runtime's topology values."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
from gen_helpers import generated_package, run_cli, write_specs

from mmate_gen.loader import load_specs

HEAD = """\
version: "1.0"
messages:
  OrderCreatedEvent:
    kind: event
    fields:
      orderId: string
  ShipOrderCommand:
    kind: command
    fields:
      orderId: string
"""


def topology_of(package: ModuleType) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.topology")


def test_mmate_dlx_is_a_builtin_exchange_a_spec_can_bind_from(tmp_path: Path) -> None:
    spec = (
        HEAD
        + """\
queues:
  audit-queue:
    bindings:
      - {exchange: mmate.dlx, routing_key: "#"}
services:
  audit:
    consumes:
      audit-queue: [OrderCreatedEvent]
  orders:
    publishes:
      - {message: OrderCreatedEvent, exchange: mmate.dlx, routing_key: dead.OrderCreatedEvent}
"""
    )
    with generated_package(tmp_path, {"spec.yaml": spec}) as package:
        topology = topology_of(package)
        dlx = topology.EXCHANGES["mmate.dlx"]
        assert (dlx.type, dlx.durable, dlx.auto_delete) == ("topic", True, False)
        assert dlx in topology.SERVICES["audit"].exchanges


GO_QUEUES = (
    HEAD
    + """\
queues:
  orders-queue:
    go_compatible: true
    retry: {attempts: 3, initial_delay: 1s}
    bindings:
      - {exchange: mmate.commands, routing_key: cmd.orders.*}
  ledger-queue:
    go_compatible: true
    fifo: true
    retry: false
    dead_letter: {queue: ledger-parking}
    bindings:
      - {exchange: mmate.events, routing_key: "evt.*.OrderCreatedEvent"}
  plain:
    bindings:
      - {exchange: mmate.events, routing_key: "evt.*.OrderCreatedEvent"}
services:
  orders:
    publishes: [OrderCreatedEvent, ShipOrderCommand]
    consumes:
      orders-queue: [ShipOrderCommand]
  ledger:
    consumes:
      ledger-queue: [OrderCreatedEvent]
      plain: [OrderCreatedEvent]
"""
)


def test_a_go_compatible_queue_is_declared_as_go_does_and_keeps_its_wait_and_dead_letter_queues(
    tmp_path: Path,
) -> None:
    with generated_package(tmp_path, {"spec.yaml": GO_QUEUES}) as package:
        queues = topology_of(package).QUEUES
        orders = queues["orders-queue"]
        assert dict(orders.arguments) == {}
        assert (orders.durable, orders.exclusive, orders.auto_delete) == (True, False, False)
        assert orders.go_compatible and not orders.broker_dead_letter
        assert orders.dead_letter_queue == "orders-queue.dlq"
        assert dict(orders.wait_queues) == {
            1000: "orders-queue.wait.1000",
            2000: "orders-queue.wait.2000",
        }
        wait = queues["orders-queue.wait.1000"]
        assert dict(wait.arguments) == {  # mmate's own: it dead-letters back to the Go queue
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "orders-queue",
            "x-message-ttl": 1000,
        }
        assert queues["orders-queue.dlq"].role == "dead-letter"
        assert not queues["orders-queue.dlq"].go_compatible
        ledger = queues["ledger-queue"]
        assert dict(ledger.arguments) == {"x-single-active-consumer": True}
        assert ledger.dead_letter_queue == "ledger-parking"
        assert "ledger-parking" in queues
        plain = queues["plain"]
        assert plain.broker_dead_letter and not plain.go_compatible
        assert [q.name for q in topology_of(package).SERVICES["orders"].queues] == [
            "orders-queue",
            "orders-queue.dlq",
            "orders-queue.wait.1000",
            "orders-queue.wait.2000",
        ]


def test_a_service_queue_is_gos_service_queue_without_writing_it_out(tmp_path: Path) -> None:
    spec = (
        HEAD
        + """\
services:
  shipping:
    service_queue:
      fifo: true
      retry: false
      consumers: 2
      bindings:
        - {exchange: mmate.commands, routing_key: cmd.shipping.*}
        - {exchange: mmate.events, routing_key: "evt.*.OrderCreatedEvent"}
    consumes:
      shipping-queue: [ShipOrderCommand, OrderCreatedEvent]
  orders:
    publishes: [OrderCreatedEvent, {message: ShipOrderCommand, routing_key: cmd.shipping.Ship}]
"""
    )
    with generated_package(tmp_path, {"spec.yaml": spec}) as package:
        topology = topology_of(package)
        queue = topology.QUEUES["shipping-queue"]
        assert queue.go_compatible and dict(queue.arguments) == {"x-single-active-consumer": True}
        assert queue.consumers == 2 and queue.concurrency == 1
        assert queue.dead_letter_queue == "shipping-queue.dlq"
        service = topology.SERVICES["shipping"]
        assert [(b.exchange, b.routing_key) for b in service.bindings] == [
            ("mmate.commands", "cmd.shipping.*"),
            ("mmate.events", "evt.*.OrderCreatedEvent"),
        ]
        assert set(service.consumes["shipping-queue"]) == {"ShipOrderCommand", "OrderCreatedEvent"}
        shipping = importlib.import_module(f"{package.__name__}.shipping")
        assert hasattr(shipping.ShippingHandlers, "handle_ship_order_command")


CONSUMER_OF_GO_EVENTS = (
    HEAD
    + """\
queues:
  audit-queue:
    go_compatible: false
    bindings:
      - {exchange: mmate.events, routing_key: "evt.*.OrderCreatedEvent"}
      - {exchange: mmate.commands, routing_key: "cmd.audit.*"}
  feed-queue:
    go_compatible: false
    bindings:
      - {exchange: mmate.events, routing_key: order.created}
services:
  feed:
    consumes:
      feed-queue: [OrderCreatedEvent]
  audit:
    consumes:
      audit-queue: [OrderCreatedEvent, ShipOrderCommand]
  orders:  # the Python port publishes on its own route, not on Go's default
    publishes: [{message: OrderCreatedEvent, routing_key: order.created}]
"""
)
GO_PUBLISHER = """\
external_services:
  order-service:
    description: The Go order service (Mmate for Go); its default routes.
    publishes:
      - OrderCreatedEvent
      - {message: ShipOrderCommand, routing_key: "cmd.{targetService}.ShipOrderCommand"}
"""


def test_without_its_external_publisher_a_go_event_cannot_reach_the_queue(tmp_path: Path) -> None:
    result = load_specs(write_specs(tmp_path, {"spec.yaml": CONSUMER_OF_GO_EVENTS}))
    rendered = [d.render() for d in result.diagnostics]
    assert result.spec is None
    assert any("OrderCreatedEvent handled by service" in r for r in rendered), rendered


def test_an_external_publisher_counts_for_delivery_and_generates_nothing(tmp_path: Path) -> None:
    files = {"spec.yaml": CONSUMER_OF_GO_EVENTS + GO_PUBLISHER}
    result = load_specs(write_specs(tmp_path / "check", files))
    assert [d.render() for d in result.diagnostics] == []
    assert result.spec is not None
    (external,) = result.spec.external_services
    assert external.name == "order-service"
    assert [(r.exchange, r.routing_key) for r in external.publishes] == [
        ("mmate.events", "evt.{aggregateId}.OrderCreatedEvent"),
        ("mmate.commands", "cmd.{targetService}.ShipOrderCommand"),
    ]
    with generated_package(tmp_path, files) as package:
        root = Path(package.__file__).parent
        assert sorted(p.name for p in root.glob("*.py")) == [
            "__init__.py",
            "audit.py",
            "feed.py",
            "models.py",
            "orders.py",
            "topology.py",
        ]
        assert set(topology_of(package).SERVICES) == {"audit", "feed", "orders"}


ROUTES = (
    HEAD
    + """\
  BigEvent:
    kind: event
queues:
  small:
    go_compatible: false
    max_message_bytes: 1000
    max_priority: 9
    bindings:
      - {exchange: mmate.events, routing_key: "evt.#"}
  medium:
    go_compatible: false
    max_message_bytes: 5000
    max_priority: 9
    bindings:
      - {exchange: mmate.events, routing_key: "evt.*.OrderCreatedEvent"}
  open:
    go_compatible: false
    bindings:
      - {exchange: mmate.commands, routing_key: "cmd.#"}
services:
  sender:
    publishes:
      - {message: OrderCreatedEvent, priority: 4}
      - {message: ShipOrderCommand, compress: zstd, compress_above: 64KiB, persistent: false}
      - {message: BigEvent, compress: gzip, routing_key: big.one}
  sink:
    consumes:
      small: [OrderCreatedEvent]
      medium: [OrderCreatedEvent]
      open: [ShipOrderCommand]
"""
)


def test_route_settings_reach_the_publish_route(tmp_path: Path) -> None:
    with generated_package(tmp_path, {"spec.yaml": ROUTES}) as package:
        publishes = topology_of(package).SERVICES["sender"].publishes
        created = publishes["OrderCreatedEvent"]
        assert (created.priority, created.compress) == (4, None)
        assert created.max_message_bytes == 1000  # the smallest limit of the queues it reaches
        ship = publishes["ShipOrderCommand"]
        assert (ship.compress, ship.compress_above, ship.priority) == ("zstd", 65536, None)
        assert ship.max_message_bytes is None and ship.persistent is False
        big = publishes["BigEvent"]
        assert (big.compress, big.compress_above) == ("gzip", 1024)  # the documented default
        assert big.max_message_bytes is None  # reaches no queue


def test_publisher_docstrings_name_the_route_settings(tmp_path: Path) -> None:
    with generated_package(tmp_path, {"spec.yaml": ROUTES}) as package:
        sender = importlib.import_module(f"{package.__name__}.sender").SenderPublisher
        ship_doc = " ".join(sender.send_ship_order_command.__doc__.split())
        assert "above 65536 bytes is compressed with zstd" in ship_doc
        assert "Go Mmate cannot read a compressed body" in ship_doc
        created_doc = " ".join(sender.publish_order_created_event.__doc__.split())
        assert "priority 4 unless the `priority` option" in created_doc
        assert "compress" not in created_doc


def test_the_build_warns_for_every_compressed_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = write_specs(tmp_path, {"spec.yaml": ROUTES})
    run = run_cli(capsys, "build", specs, "--out", tmp_path / "gen")
    assert run.code == 0, run.err
    warnings = [line for line in run.err.splitlines() if "Go Mmate cannot read" in line]
    assert len(warnings) == 2
    assert all(": warning: " in line for line in warnings)
    strict = run_cli(capsys, "build", specs, "--out", tmp_path / "gen2", "--strict")
    assert strict.code == 1


def test_consumers_reach_the_queue_definition(tmp_path: Path) -> None:
    spec = (
        HEAD
        + """\
queues:
  work:
    go_compatible: false
    consumers: 4
    prefetch: 5
    bindings:
      - {exchange: mmate.commands, routing_key: "cmd.work.*"}
services:
  worker:
    consumes:
      work: [ShipOrderCommand]
  boss:
    publishes: [{message: ShipOrderCommand, routing_key: cmd.work.Ship}]
"""
    )
    with generated_package(tmp_path, {"spec.yaml": spec}) as package:
        queues = topology_of(package).QUEUES
        assert (queues["work"].consumers, queues["work"].prefetch) == (4, 5)
        assert queues["work.dlq"].consumers == 1
