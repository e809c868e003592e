"""Generated code in use: generate from a few lines of YAML, import the package, exercise it.

Payloads are compared with the wire shape of docs/interop.md (camelCase keys, base
fields of the kind inside the payload, bytes as base64, decimals as numbers, RFC 3339 datetimes).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from gen_helpers import write_specs
from pydantic import ValidationError

from mmate_gen.loader import load_specs
from mmate_gen.output import write_tree
from mmate_gen.render import render_all

SPEC = """\
version: "2.1"
types:
  Region:
    description: Sales region.
    enum: [eu, us, in-progress]
  Line:
    fields:
      sku: {type: string, pattern: "^SKU-"}
      quantity: {type: int, min: 1}
      price: {type: decimal, min: 0}
  Basket:
    fields:
      lines: list[Line]
      gift: {type: Line, optional: true}
      owner: {type: string, default: ""}
messages:
  OrderPlacedEvent:
    kind: event
    description: An order was placed.
    fields:
      orderId: string
      region: {type: Region, default: eu}
      amount: {type: float, min: 0}
      total: decimal
      placedAt: datetime
      deliverOn: {type: date, optional: true}
      ref: uuid
      signature: bytes
      lines: {type: "list[Line]", min_length: 1}
      tags: {type: "map[string, string]", default: {}}
      note: {type: string, optional: true, max_length: 5}
      big: int64
  DefaultsCommand:
    kind: command
    fields:
      price: {type: decimal, default: 9.95}
      at: {type: datetime, default: "2024-01-15T10:31:00Z"}
      day: {type: date, default: "2024-01-15"}
      ref: {type: uuid, default: "6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10"}
      blob: {type: bytes, default: "aGk="}
      regions: {type: "list[Region]", default: [us, in-progress]}
      line: {type: Line, default: {sku: SKU-1, quantity: 2, price: 1.5}}
      counts: {type: "map[string, int]", default: {a: 1}}
  FindQuery:
    kind: query
    reply: FoundReply
    fields:
      orderId: string
  FoundReply:
    kind: reply
    fields:
      line: {type: Line, optional: true}
queues:
  shop-queue:
    bindings:
      - {exchange: mmate.commands, routing_key: cmd.shop.*}
      - {exchange: mmate.queries, routing_key: qry.FindQuery}
      - {exchange: mmate.events, routing_key: "order.*.placed.*"}
services:
  shop:
    publishes:
      - {message: OrderPlacedEvent, routing_key: "order.{region}.placed.{orderId}"}
      - {message: DefaultsCommand, routing_key: cmd.shop.DefaultsCommand}
      - FindQuery
    consumes:
      shop-queue: [OrderPlacedEvent, DefaultsCommand, FindQuery]
"""

GO_PAYLOAD = {
    "aggregateId": "ORDER-1",
    "sequence": 1,
    "orderId": "ORDER-1",
    "region": "us",
    "amount": 99.99,
    "total": 12.34,
    "placedAt": "2026-11-28T17:34:07Z",
    "ref": "c5090760-3f7e-45a6-a8bf-75a3ca89b21c",
    "signature": "AP8=",
    "lines": [{"sku": "SKU-9", "quantity": 3, "price": 4.5}],
    "big": 9007199254740993,
    "someFieldAddedLater": {"ignored": True},
}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package of SPEC, imported under a unique name."""
    root = tmp_path_factory.mktemp("behaviour")
    result = load_specs(write_specs(root, {"shop.yaml": SPEC}))
    assert result.spec is not None, [d.render() for d in result.diagnostics]
    name = f"gen_{uuid.uuid4().hex[:8]}"
    write_tree(root / "pkgs" / name, render_all(result.spec))
    sys.path.insert(0, str(root / "pkgs"))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(root / "pkgs"))
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


@pytest.fixture(scope="module")
def models(package: ModuleType) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.models")


def wire(model: Any) -> dict[str, Any]:
    """The payload as another Mmate implementation reads it: JSON text, parsed with plain json."""
    payload: dict[str, Any] = json.loads(model.model_dump_json(by_alias=True))
    return payload


def placed(models: ModuleType, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "order_id": "o-1",
        "amount": 10.5,
        "total": Decimal("12.34"),
        "placed_at": datetime(2024, 1, 15, 10, 31, tzinfo=UTC),
        "ref": uuid.UUID("6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10"),
        "signature": b"\x00\xff",
        "lines": [models.Line(sku="SKU-1", quantity=2, price=Decimal("1.25"))],
        "big": 2**60,
    }
    values.update(overrides)
    return models.OrderPlacedEvent(**values)


def test_a_model_serializes_to_the_wire_payload(models: ModuleType) -> None:
    """Optional fields left at None (source, deliverOn, note) are left out, as Go leaves them."""
    assert wire(placed(models)) == {
        "aggregateId": "",
        "sequence": 0,
        "orderId": "o-1",
        "region": "eu",
        "amount": 10.5,
        "total": 12.34,
        "placedAt": "2024-01-15T10:31:00Z",
        "ref": "6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10",
        "signature": "AP8=",
        "lines": [{"sku": "SKU-1", "quantity": 2, "price": 1.25}],
        "tags": {},
        "big": 2**60,
    }


def test_a_go_payload_validates_and_unknown_keys_are_ignored(models: ModuleType) -> None:
    event = models.OrderPlacedEvent.model_validate(GO_PAYLOAD)
    assert event.aggregate_id == "ORDER-1"
    assert event.sequence == 1
    assert event.region is models.Region.US
    assert event.total == Decimal("12.34")
    assert event.placed_at == datetime(2026, 11, 28, 17, 34, 7, tzinfo=UTC)
    assert event.ref == uuid.UUID("c5090760-3f7e-45a6-a8bf-75a3ca89b21c")
    assert event.signature == b"\x00\xff"
    assert event.lines[0].price == Decimal("4.5")
    assert event.big == 9007199254740993
    assert event.deliver_on is None and event.note is None and event.tags == {}
    assert not hasattr(event, "some_field_added_later")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deliver_on", date(2024, 2, 29)),
        ("note", "short"),
        ("tags", {"a": "b"}),
        ("region", "in-progress"),
        ("total", Decimal("0.1")),
        ("signature", b""),
        ("big", -(2**62)),
    ],
)
def test_values_round_trip_through_the_wire(models: ModuleType, field: str, value: Any) -> None:
    event = placed(models, **{field: value})
    again = models.OrderPlacedEvent.model_validate(wire(event))
    assert again == event
    assert (
        models.OrderPlacedEvent.model_validate_json(event.model_dump_json(by_alias=True)) == event
    )


def test_fields_accept_python_names_and_wire_names(models: ModuleType) -> None:
    by_alias = models.FindQuery.model_validate({"orderId": "o-1", "replyTo": "q"})
    by_name = models.FindQuery(order_id="o-1", reply_to="q")
    assert by_alias == by_name
    assert wire(by_name) == {"replyTo": "q", "orderId": "o-1"}


def test_enum_values_are_str_enum_members(models: ModuleType) -> None:
    assert [m.value for m in models.Region] == ["eu", "us", "in-progress"]
    assert models.Region.IN_PROGRESS == "in-progress"
    assert models.Region.__doc__ == "Sales region."


@pytest.mark.parametrize(
    "overrides",
    [
        {"region": "mars"},
        {"amount": -1},
        {"lines": []},
        {"note": "far too long"},
        {"placed_at": datetime(2024, 1, 15, 10, 31)},  # naive: no timezone
        {"signature": "not base64!"},
        {"lines": [{"sku": "X-1", "quantity": 1, "price": 1}]},
        {"lines": [{"sku": "SKU-1", "quantity": 0, "price": 1}]},
    ],
)
def test_invalid_values_are_rejected(models: ModuleType, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        placed(models, **overrides)


def test_required_fields_are_required(models: ModuleType) -> None:
    with pytest.raises(ValidationError) as caught:
        models.OrderPlacedEvent.model_validate({"orderId": "o-1"})
    missing = {e["loc"][0] for e in caught.value.errors() if e["type"] == "missing"}
    assert missing == {"amount", "total", "placedAt", "ref", "signature", "lines", "big"}


def test_spec_defaults_become_typed_values(models: ModuleType) -> None:
    command = models.DefaultsCommand()
    assert command.price == Decimal("9.95")
    assert command.at == datetime(2024, 1, 15, 10, 31, tzinfo=UTC)
    assert command.day == date(2024, 1, 15)
    assert command.ref == uuid.UUID("6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10")
    assert command.blob == b"hi"
    assert command.regions == [models.Region.US, models.Region.IN_PROGRESS]
    assert command.line == models.Line(sku="SKU-1", quantity=2, price=Decimal("1.5"))
    assert command.counts == {"a": 1}
    assert wire(command) == {
        "targetService": "",
        "price": 9.95,
        "at": "2024-01-15T10:31:00Z",
        "day": "2024-01-15",
        "ref": "6f1c2c9e-3b0a-4d2e-9a51-0c9b8e3f7a10",
        "blob": "aGk=",
        "regions": ["us", "in-progress"],
        "line": {"sku": "SKU-1", "quantity": 2, "price": 1.5},
        "counts": {"a": 1},
    }


def test_mutable_defaults_are_not_shared(models: ModuleType) -> None:
    first, second = models.DefaultsCommand(), models.DefaultsCommand()
    first.counts["b"] = 2
    first.regions.append(models.Region.EU)
    assert second.counts == {"a": 1}
    assert second.regions == [models.Region.US, models.Region.IN_PROGRESS]


_LINE = {"sku": "SKU-1", "quantity": 1, "price": 0}


@pytest.mark.parametrize(
    ("default", "valid"),
    [
        ({"lines": []}, True),
        ({"lines": [_LINE], "gift": None, "owner": "ann"}, True),
        ({"lines": [], "gift": {**_LINE, "price": 2.5}}, True),
        ({}, False),
        ({"lines": [{**_LINE, "quantity": 0}]}, False),
        ({"lines": [{**_LINE, "sku": "X-1"}]}, False),
        ({"lines": [{"quantity": 1, "price": 0}]}, False),
        ({"lines": [], "gift": {**_LINE, "price": "x"}}, False),
        ({"lines": [], "owner": None}, False),
        ({"lines": "none"}, False),
        ([_LINE], False),
    ],
)
def test_the_loader_accepts_a_record_default_exactly_when_the_model_does(
    tmp_path: Path, models: ModuleType, default: Any, valid: bool
) -> None:
    spec = SPEC.split("messages:")[0] + (
        "messages:\n  BasketCommand:\n    kind: command\n    fields:\n"
        f"      basket: {{type: Basket, default: {json.dumps(default)}}}\n"
    )
    result = load_specs(write_specs(tmp_path, {"basket.yaml": spec}))
    assert (result.spec is not None) == valid, [d.render() for d in result.diagnostics]
    try:
        models.Basket.model_validate(default)
    except ValidationError:
        assert not valid
    else:
        assert valid


class FakeTransport:
    def __init__(self, reply: Any = None) -> None:
        self.sent: list[tuple[Any, Any, str, dict[str, Any]]] = []
        self.reply = reply

    async def publish(self, route: Any, message: Any, routing_key: str, options: Any) -> None:
        self.sent.append((route, message, routing_key, dict(options)))

    async def request(
        self, route: Any, message: Any, routing_key: str, reply: Any, options: Any
    ) -> Any:
        self.sent.append((route, message, routing_key, dict(options)))
        return reply.model_validate(self.reply)


def test_the_publisher_fills_the_routing_key_from_the_message(
    package: ModuleType, models: ModuleType
) -> None:
    shop = importlib.import_module(f"{package.__name__}.shop")
    transport = FakeTransport()
    publisher = shop.ShopPublisher(transport)
    event = placed(models, region=models.Region.IN_PROGRESS, order_id="o-7")
    asyncio.run(publisher.publish_order_placed_event(event, priority=3))
    route, message, key, options = transport.sent[0]
    assert key == "order.in-progress.placed.o-7"
    assert message is event
    assert options == {"priority": 3}
    assert route.exchange == "mmate.events"
    assert route.routing_key == "order.{region}.placed.{orderId}"
    assert route.message.model is models.OrderPlacedEvent
    assert route.message.version == "2.1"


def test_a_query_returns_its_reply_model(package: ModuleType, models: ModuleType) -> None:
    shop = importlib.import_module(f"{package.__name__}.shop")
    transport = FakeTransport(reply={"success": True, "line": None})
    publisher = shop.ShopPublisher(transport)
    reply = asyncio.run(publisher.request_find_query(models.FindQuery(order_id="o-1"), timeout=2))
    assert isinstance(reply, models.FoundReply)
    assert transport.sent[0][2] == "qry.FindQuery"  # the Go default route of a query
    assert transport.sent[0][0].exchange == "mmate.queries"


def test_every_handler_method_is_abstract_and_routed(package: ModuleType) -> None:
    shop = importlib.import_module(f"{package.__name__}.shop")
    routes = shop.ShopHandlers.TOPOLOGY.consumes["shop-queue"]
    assert {n: r.method for n, r in routes.items()} == {
        "OrderPlacedEvent": "handle_order_placed_event",
        "DefaultsCommand": "handle_defaults_command",
        "FindQuery": "handle_find_query",
    }
    assert all(getattr(shop.ShopHandlers, r.method).__isabstractmethod__ for r in routes.values())


def test_the_topology_holds_the_computed_queues(package: ModuleType) -> None:
    topology = importlib.import_module(f"{package.__name__}.topology")
    service = topology.SERVICES["shop"]
    assert [q.name for q in service.queues] == [
        "shop-queue",
        "shop-queue.dlq",
        "shop-queue.wait.1000",
        "shop-queue.wait.2000",
    ]
    main = topology.QUEUES["shop-queue"]
    assert main.arguments == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "shop-queue.dlq",
    }
    assert main.wait_queues == {1000: "shop-queue.wait.1000", 2000: "shop-queue.wait.2000"}
    assert main.retry is not None and main.retry.delays_ms == (1000, 2000)
    assert {e.name for e in service.exchanges} == {
        "mmate.commands",
        "mmate.events",
        "mmate.queries",
    }
    assert set(service.messages) == {
        "DefaultsCommand", "FindQuery", "FoundReply", "OrderPlacedEvent",
    }  # fmt: skip
    assert topology.MESSAGES["FindQuery"].reply == "FoundReply"


def test_schemas_match_what_the_models_accept(package: ModuleType, models: ModuleType) -> None:
    schema = json.loads(
        (Path(package.__file__).parent / "schemas" / "OrderPlacedEvent.json").read_text()
    )
    every_field = placed(models, source="go", deliver_on=date(2024, 1, 16), note="n")
    assert set(schema["properties"]) == set(wire(every_field))
    aliases = {f.alias or n for n, f in models.OrderPlacedEvent.model_fields.items()}
    assert set(schema["properties"]) == aliases
    required = {
        f.alias or n for n, f in models.OrderPlacedEvent.model_fields.items() if f.is_required()
    }
    assert set(schema["required"]) == required
