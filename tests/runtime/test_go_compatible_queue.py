"""Generated topology on the broker where Go Mmate meets it: a ``go_compatible`` queue declared
after (and before) a Go-style declaration raises no 406 and keeps mmate's wait and dead-letter
queues; the RabbitMQ policy the generator suggests gives it limits and dead-lettering without a
redeclare; a route's ``priority`` reaches the wire unless the publish option overrides it. A
queue declared as Go declares it is served by Python beside a Go consumer (raw aiormq): Go's
publishes are handled once, failures and poison reach ``<queue>.dlq``, and a dead-letter move that
is refused or finds its queue deleted never loses the message.

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
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType

import aiormq
import mmate
import pytest
from broker_ctl import vhost_fixture, vhost_url
from go_json import marshal_envelope

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


# -- a Go-declared queue served by Python, shared with Go ------------------------------------------


def go_command(order_id: str, n: int) -> tuple[bytes, aiormq.spec.Basic.Properties]:
    """ShipOrderCommand as Go Mmate's PublishCommand writes it (envelope and headers)."""
    message_id = f"0f8e3a52-2a8b-4d8e-9f3c-{n:012d}"
    headers = {
        "message-id": message_id,
        "message-type": "ShipOrderCommand",
        "source": "mmate-go",
        "x-message-id": message_id,
        "x-message-kind": "command",
        "x-message-type": "ShipOrderCommand",
        "x-source": "mmate-go",
        "x-version": "1.0",
    }
    body = {
        "id": message_id,
        "type": "ShipOrderCommand",
        "timestamp": "2026-11-28T17:35:00Z",
        "headers": headers,
        "payload": {"orderId": order_id, "targetService": "shipping"},
    }
    properties = aiormq.spec.Basic.Properties(
        headers=headers, content_type="application/json", delivery_mode=2
    )
    return marshal_envelope(body), properties


async def go_publish(url: str, messages: list[tuple[bytes, aiormq.spec.Basic.Properties]]) -> None:
    """Publish as a Go instance does: mmate.commands, its default route cmd.<service>.<Type>."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.confirm_delivery()
        for body, properties in messages:
            await channel.basic_publish(
                body,
                exchange="mmate.commands",
                routing_key="cmd.shipping.ShipOrderCommand",
                properties=properties,
                mandatory=True,
            )
    finally:
        await connection.close()


async def counts(url: str, *queues: str) -> tuple[int, ...]:
    """Ready messages of each queue."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        found = [await channel.queue_declare(q, passive=True) for q in queues]
        return tuple(q.message_count or 0 for q in found)
    finally:
        await connection.close()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds (a generous bound only against a hang, not a timing)."""
    async with asyncio.timeout(60):
        while not await check():
            await asyncio.sleep(0.05)
    assert await check(), what


def shipping_handlers(package: ModuleType, handled: list[str]) -> object:
    base = importlib.import_module(f"{package.__name__}.shipping").ShippingHandlers

    class Shipping(base):  # type: ignore[misc,valid-type]
        async def handle_ship_order_command(self, message: object, ctx: object) -> None:
            order_id = message.order_id  # type: ignore[attr-defined]
            if order_id.startswith("bad"):
                raise mmate.PermanentError(f"order {order_id} cannot be shipped")
            handled.append(order_id)

    return Shipping()


async def test_python_serves_a_queue_go_declared_and_dead_letters_what_fails(
    package: ModuleType, vhost: str
) -> None:
    """Go declares shipping-queue (no arguments) and publishes; the Python port declares the
    same queue (no 406) and serves it; Go declares again while Python consumes. Handled messages
    are handled, a permanent failure and a poison message end in mmate's shipping-queue.dlq with
    the reason stamped, byte for byte; nothing is left or lost."""
    url = vhost_url(vhost)
    await go_declares(url, "shipping-queue")
    handled: list[str] = []
    poison = b'{"id":"p-1","type":"NoSuchCommand","payload":{}}'
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(topology(package).SERVICES["shipping"])
        serving = await client.serve(shipping_handlers(package, handled))
        await go_declares(url, "shipping-queue")  # a Go instance starting beside it
        sent = [go_command("o-1", 1), go_command("bad-1", 2), go_command("o-2", 3)]
        await go_publish(url, [*sent, (poison, aiormq.spec.Basic.Properties(delivery_mode=2))])

        async def settled() -> bool:
            return len(handled) == 2 and await counts(url, "shipping-queue.dlq") == (1 + 1,)

        await until(settled, "two handled, two dead-lettered")
        await serving.stop()
    assert sorted(handled) == ["o-1", "o-2"]
    assert await counts(url, "shipping-queue", "shipping-queue.dlq") == (0, 2)
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        dead = {}
        for _ in range(2):
            got = await channel.basic_get("shipping-queue.dlq", no_ack=True)
            headers = got.header.properties.headers or {}
            dead[got.body] = headers["x-mmate-dead-letter-reason"]
    finally:
        await connection.close()
    assert dead[sent[1][0]] == "permanent-error"  # Go's bytes, unchanged
    assert dead[poison] != "permanent-error" and dead[poison]


async def test_a_dead_letter_move_that_fails_keeps_the_message_in_the_go_queue(
    package: ModuleType, vhost: str
) -> None:
    """The broker has no dead-letter route for a Go-declared queue, so a move that fails must not
    reject. The dead-letter queue refuses every publish (a policy: max-length 0, reject-publish):
    the move is nacked, the message goes back to shipping-queue and is tried again after a
    growing pause; once the queue accepts again it is moved, and counted exactly once."""
    url = vhost_url(vhost)
    await go_declares(url, "shipping-queue")
    handled: list[str] = []
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(topology(package).SERVICES["shipping"])
        await rabbitmqctl(
            "set_policy", "-p", vhost, "full-dlq", r"^shipping-queue\.dlq$",
            '{"max-length":0,"overflow":"reject-publish"}', "--apply-to", "queues",
        )  # fmt: skip
        serving = await client.serve(shipping_handlers(package, handled))
        consumer = serving.consumers[0]
        await go_publish(url, [go_command("bad-1", 1)])

        async def requeued_twice() -> bool:
            return consumer.requeued >= 2

        await until(requeued_twice, "the failed move requeued twice")
        assert consumer.dead_lettered == 0 and consumer.rejected == 0
        assert await counts(url, "shipping-queue.dlq") == (0,)
        await rabbitmqctl("clear_policy", "-p", vhost, "full-dlq")

        async def moved() -> bool:
            return consumer.dead_lettered == 1

        await until(moved, "moved once the dead-letter queue accepts")
        await serving.stop()
    assert consumer.rejected == 0 and handled == []
    assert await counts(url, "shipping-queue", "shipping-queue.dlq") == (0, 1)


async def test_a_deleted_dead_letter_queue_is_declared_again_and_the_message_moved(
    package: ModuleType, vhost: str
) -> None:
    """shipping-queue.dlq deleted under a running Python consumer of the Go queue: the move is
    unroutable, the topology is declared again and the message moved; nothing is rejected."""
    url = vhost_url(vhost)
    await go_declares(url, "shipping-queue")
    handled: list[str] = []
    async with mmate.Client(url, service="shipping") as client:
        await client.declare(topology(package).SERVICES["shipping"])
        serving = await client.serve(shipping_handlers(package, handled))
        consumer = serving.consumers[0]
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            await channel.queue_delete("shipping-queue.dlq")
        finally:
            await connection.close()
        await go_publish(url, [go_command("bad-1", 1)])

        async def moved() -> bool:
            return consumer.dead_lettered == 1

        await until(moved, "moved after the redeclare")
        await serving.stop()
    assert consumer.rejected == 0
    assert await counts(url, "shipping-queue", "shipping-queue.dlq") == (0, 1)


async def test_a_go_and_a_python_consumer_share_the_queue_and_each_message_is_handled_once(
    package: ModuleType, vhost: str
) -> None:
    """A Go instance (raw aiormq, acking what it gets) and the Python port consume shipping-queue
    at once; every message Go publishes is handled by exactly one of them."""
    url = vhost_url(vhost)
    await go_declares(url, "shipping-queue")
    handled: list[str] = []
    by_go: list[str] = []
    go = await aiormq.connect(url)
    try:
        channel = await go.channel()
        await channel.basic_qos(prefetch_count=1)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            by_go.append(json.loads(message.body)["payload"]["orderId"])
            await channel.basic_ack(message.delivery_tag)

        await channel.basic_consume("shipping-queue", on_message)
        async with mmate.Client(url, service="shipping") as client:
            await client.declare(topology(package).SERVICES["shipping"])
            serving = await client.serve(shipping_handlers(package, handled))
            await go_publish(url, [go_command(f"o-{n}", n) for n in range(20)])

            async def all_handled() -> bool:
                return len(handled) + len(by_go) == 20

            await until(all_handled, "20 handled between the two")
            await serving.stop()
    finally:
        await go.close()
    assert sorted(handled + by_go) == sorted(f"o-{n}" for n in range(20))
    assert await counts(url, "shipping-queue", "shipping-queue.dlq") == (0, 0)
