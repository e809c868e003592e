"""Generated topology on the broker where Go Mmate meets it: a ``go_compatible`` queue declared
after (and before) a Go-style declaration raises no 406 and keeps mmate's wait and dead-letter
queues; the RabbitMQ policy the generator suggests gives it limits and dead-lettering without a
redeclare; a route's ``priority`` reaches the wire unless the publish option overrides it.

The topology is generated from an inline spec (``mmate_gen``) into a temporary package; every test
works in a vhost of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shlex
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from types import ModuleType

import aiormq
import mmate
import pytest
from broker_ctl import vhost_fixture, vhost_url

from mmate_gen.checks_go import policy_command
from mmate_gen.loader import load_specs
from mmate_gen.output import write_tree
from mmate_gen.render import render_all

pytestmark = pytest.mark.broker
__all__ = ["vhost_fixture"]  # the fixture `vhost`: a vhost per test, deleted afterwards

SPEC = """\
version: "1.0"
messages:
  ShipOrderCommand:
    kind: command
    fields:
      orderId: string
  AlertEvent:
    kind: event
    fields:
      level: string
queues:
  urgent-alerts:
    go_compatible: false
    max_priority: 9
    bindings:
      - {exchange: mmate.events, routing_key: "alert.#"}
services:
  shipping:
    service_queue:
      retry: {attempts: 2, initial_delay: 1s}
      bindings:
        - {exchange: mmate.commands, routing_key: cmd.shipping.*}
    consumes:
      shipping-queue: [ShipOrderCommand]
  ledger:
    service_queue:
      fifo: true
      retry: false
      bindings:
        - {exchange: mmate.commands, routing_key: cmd.ledger.*}
    consumes:
      ledger-queue: [ShipOrderCommand]
  alerts:
    publishes:
      - {message: AlertEvent, routing_key: "alert.{level}", priority: 4}
      - {message: ShipOrderCommand, routing_key: "cmd.shipping.{orderId}"}
    consumes:
      urgent-alerts: [AlertEvent]
external_services:
  go-billing:  # a Go service that sends ledger entries
    publishes:
      - {message: ShipOrderCommand, routing_key: "cmd.ledger.{orderId}"}
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("go_queue")
    specs = root / "specs"
    specs.mkdir()
    (specs / "spec.yaml").write_text(textwrap.dedent(SPEC), encoding="utf-8")
    result = load_specs(specs)
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


def topology(package: ModuleType) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.topology")


async def go_declares(url: str, queue: str, *, fifo: bool = False) -> None:
    """Declare ``queue`` exactly as Go Mmate declares its service queue."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        arguments = {"x-single-active-consumer": True} if fifo else {}
        await channel.queue_declare(
            queue, durable=True, exclusive=False, auto_delete=False, arguments=arguments
        )
    finally:
        await connection.close()


async def exists(url: str, queue: str) -> bool:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


async def test_mmate_declares_a_go_compatible_queue_that_go_declared_first(
    package: ModuleType, vhost: str
) -> None:
    url = vhost_url(vhost)
    services = topology(package).SERVICES
    await go_declares(url, "shipping-queue")
    await go_declares(url, "ledger-queue", fifo=True)
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(services["shipping"])  # no 406
        await client.declare(services["ledger"])
    for queue in ("shipping-queue.dlq", "shipping-queue.wait.1000", "ledger-queue.dlq"):
        assert await exists(url, queue), queue


async def test_go_declares_a_go_compatible_queue_that_mmate_declared_first(
    package: ModuleType, vhost: str
) -> None:
    url = vhost_url(vhost)
    services = topology(package).SERVICES
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(services["shipping"])
        await client.declare(services["ledger"])
    await go_declares(url, "shipping-queue")  # would raise ChannelPreconditionFailed on a 406
    await go_declares(url, "ledger-queue", fifo=True)


async def test_a_queue_with_mmate_arguments_refuses_gos_declaration(
    package: ModuleType, vhost: str
) -> None:
    """The failure go_compatible prevents, shown on a queue declared with mmate's arguments."""
    url = vhost_url(vhost)
    async with mmate.Client(url, service="alerts") as client:
        await client.declare(topology(package).SERVICES["alerts"])
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await go_declares(url, "urgent-alerts")


async def test_a_route_priority_is_sent_unless_the_option_overrides_it(
    package: ModuleType, vhost: str
) -> None:
    url = vhost_url(vhost)
    models = importlib.import_module(f"{package.__name__}.models")
    alerts = importlib.import_module(f"{package.__name__}.alerts")
    services = topology(package).SERVICES
    async with mmate.Client(url, service="alerts") as client:
        await client.declare(services["alerts"])
        await client.declare(services["shipping"])
        publisher = alerts.AlertsPublisher(client)
        await publisher.publish_alert_event(models.AlertEvent(level="high"))
        await publisher.publish_alert_event(models.AlertEvent(level="low"), priority=7)
        await publisher.send_ship_order_command(models.ShipOrderCommand(order_id="o-1"))
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        got = []
        for _ in range(2):
            message = await channel.basic_get("urgent-alerts", no_ack=True)
            got.append(message.header.properties.priority)
        assert got == [7, 4]  # the priority queue hands out the higher one first
        command = await channel.basic_get("shipping-queue", no_ack=True)
        assert command.header.properties.priority is None  # a route without priority
    finally:
        await connection.close()


async def rabbitmqctl(*args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_policy_the_generator_suggests_applies_without_a_redeclare(
    package: ModuleType, vhost: str
) -> None:
    """The command of the go_compatible errors' fix (and of docs/interop-go.md), run as printed:
    the queue gets a length limit and broker-side dead-lettering into mmate's dead-letter queue,
    and both Go's and mmate's declarations still succeed."""
    url = vhost_url(vhost)
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(topology(package).SERVICES["shipping"])
    settings = {
        "dead-letter-exchange": "",
        "dead-letter-routing-key": "shipping-queue.dlq",
        "max-length": 3,
    }
    command = shlex.split(policy_command("shipping-queue", settings))
    assert command[:2] == ["rabbitmqctl", "set_policy"]
    await rabbitmqctl("set_policy", "-p", vhost, *command[2:])
    listed = json.loads(
        await rabbitmqctl("list_queues", "-p", vhost, "--formatter", "json", "name", "policy")
    )
    policies = {q["name"]: q["policy"] for q in listed}
    assert policies["shipping-queue"] == "shipping-queue"
    assert policies["shipping-queue.dlq"] == ""  # the anchored pattern matches that queue only
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for n in range(5):
            await channel.basic_publish(f"m{n}".encode(), routing_key="shipping-queue")
        main = await channel.queue_declare("shipping-queue", passive=True)
        dead = await channel.queue_declare("shipping-queue.dlq", passive=True)
        assert (main.message_count, dead.message_count) == (3, 2)  # the oldest two dead-lettered
    finally:
        await connection.close()
    await go_declares(url, "shipping-queue")  # the policy is not part of the queue's identity
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(topology(package).SERVICES["shipping"])
