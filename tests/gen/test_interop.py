"""Generated code for interop with Go Mmate, from inline specs: Go-compatible queues, Go's service
queue, external publishers, ``mmate.dlx``, and the per-route settings (priority, compression, size
limit) and per-queue consumer groups carried into the runtime's topology values."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from gen_helpers import generated_package

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
