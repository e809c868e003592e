"""``Scheduler`` and ``Schedule``: publish a message on a cron schedule (``cron.py``), each tick
once however many instances run, through claims on a single-active-consumer queue
``<prefix>.<name>`` and the last published tick in ``<prefix>.<name>.last``; ``tick_id`` is the
deterministic message id of a tick. How and what is guaranteed: docs/runtime/delays.md
(Recurring schedules).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, Unpack

from .._consuming.raw import RawConsumer, ack
from .._contract.model import Model
from .._contract.options import PublishOptions
from .._contract.publish_method import PublishMethod
from .._publishing.confirmed import ConfirmedPublisher, Outgoing
from .._topology.placement import declare_queue
from .._transport.base import Channel, Delivery, Properties
from .._wire import envelope as codec
from .._wire.envelope import Encoded
from ..client import Client
from ..errors import DecodeError, MmateError
from . import cron

log = logging.getLogger("mmate.scheduler")

M = TypeVar("M", bound=Model)

DEFAULT_PREFIX = "mmate.schedule"
CLAIM_TYPE = "mmate.schedule.claim"
RECORD_TYPE = "mmate.schedule.published"


def tick_id(name: str, tick: datetime) -> str:
    """The deterministic message id of ``name``'s message for ``tick``: UUID-v4-shaped (the wire
    format's id form), derived from a SHA-256 of name and tick."""
    stamp = tick.astimezone(UTC).isoformat()
    digest = hashlib.sha256(f"mmate.schedule\0{name}\0{stamp}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass
class Schedule(Generic[M]):
    """One registered schedule (see ``Scheduler.add``)."""

    name: str
    cron: cron.Cron
    publish: PublishMethod[M]
    factory: Callable[[datetime], M]
    options: PublishOptions
    published: int = 0
    """Ticks this instance published."""
    skipped: int = 0
    """Claims for a tick already published, or too old, or whose factory failed."""
    last_published: datetime | None = None
    last_done: datetime | None = field(default=None, repr=False)
    """The last tick this instance published, or found recorded as published."""


class Scheduler:
    """Runs schedules on a ``Client``'s connection (see the module docstring)."""

    def __init__(
        self, client: Client, *, prefix: str = DEFAULT_PREFIX, misfire_grace: float = 60.0
    ) -> None:
        if misfire_grace <= 0:
            raise MmateError("misfire_grace must be positive")
        self._client = client
        self._prefix = prefix
        self._grace = misfire_grace
        self._schedules: dict[str, Schedule[Any]] = {}
        self._publisher = ConfirmedPublisher(client.connection, "schedules")
        self._clock = client.connection.clock
        self._consumers: list[RawConsumer] = []
        self._tickers: list[asyncio.Task[None]] = []
        self._running = False

    def queue(self, name: str) -> str:
        """The coordination queue of schedule ``name``."""
        return f"{self._prefix}.{name}"

    def last_queue(self, name: str) -> str:
        """The queue holding the record of the last tick of ``name`` that was published."""
        return f"{self._prefix}.{name}.last"

    @property
    def schedules(self) -> dict[str, Schedule[Any]]:
        return dict(self._schedules)

    def add(
        self,
        name: str,
        expression: str | cron.Cron,
        publish: PublishMethod[M],
        factory: Callable[[datetime], M],
        *,
        tz: tzinfo = UTC,
        **options: Unpack[PublishOptions],
    ) -> Schedule[M]:
        """Publish ``factory(tick)`` through ``publish`` (a generated publisher method) at every
        tick of ``expression``. ``name`` identifies the schedule across instances; ``options`` are
        passed to every publish (``message_id`` is set per tick)."""
        if self._running:
            raise MmateError("add schedules before start()")
        if not name or any(c.isspace() for c in name):
            raise MmateError(f"schedule name {name!r} must be non-empty without spaces")
        if name in self._schedules:
            raise MmateError(f"schedule {name!r} is already added")
        if "message_id" in options:
            raise MmateError("a schedule sets message_id itself (one per tick)")
        parsed = expression if isinstance(expression, cron.Cron) else cron.parse(expression, tz)
        schedule = Schedule(name, parsed, publish, factory, options)
        self._schedules[name] = schedule
        return schedule

    async def start(self) -> None:
        """Declare the coordination queues, consume them, and start ticking."""
        if self._running:
            return
        if not self._schedules:
            raise MmateError("Scheduler has no schedules; add() some first")
        self._running = True
        try:
            connection = self._client.connection
            channel = await connection.channel(confirms=False)

            async def open_channel() -> Channel:
                nonlocal channel
                if not channel.is_open:  # a 406 on placement arguments closed it
                    channel = await connection.channel(confirms=False)
                return channel

            try:
                for name in self._schedules:
                    # The record queue is classic: it is peeked (get + requeue) once per tick, and a
                    # quorum queue would count those as deliveries (RabbitMQ 4 drops a message
                    # after 20 by default).
                    declarations: list[tuple[str, dict[str, Any]]] = [
                        (
                            self.queue(name),
                            {"x-queue-type": "quorum", "x-single-active-consumer": True},
                        ),
                        (self.last_queue(name), {"x-queue-type": "classic", "x-max-length": 1}),
                    ]
                    for queue, arguments in declarations:
                        await declare_queue(
                            open_channel,
                            queue,
                            self._client.settings.placement,
                            arguments=arguments,
                        )
            finally:
                await channel.close()
            for schedule in self._schedules.values():
                consumer = RawConsumer(
                    self._client.connection,
                    self.queue(schedule.name),
                    self._claim_handler(schedule),
                    prefetch=1,
                )
                await consumer.start()
                self._consumers.append(consumer)
                self._tickers.append(asyncio.create_task(self._tick_loop(schedule)))
        except BaseException:
            await self.stop()
            raise
        log.info("scheduler running %s", ", ".join(self._schedules))

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking and consuming (a claim being handled finishes first)."""
        self._running = False
        tickers, self._tickers = self._tickers, []
        for task in tickers:
            task.cancel()
        await asyncio.gather(*tickers, return_exceptions=True)
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.stop(timeout)
        await self._publisher.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- ticking: every instance claims every tick ------------------------------------------------

    async def _tick_loop(self, schedule: Schedule[Any]) -> None:
        tick = schedule.cron.next_after(self._clock.now())
        while True:
            wait = (tick - self._clock.now()).total_seconds()
            if wait > 0:
                await self._clock.sleep(wait)
                continue  # the event loop's clock and the wall clock may differ: check again
            try:
                await self._claim(schedule, tick)
            except Exception as exc:  # another instance may still claim it
                log.error("claiming tick %s of %s failed: %s", tick, schedule.name, exc)
            tick = schedule.cron.next_after(max(tick, self._clock.now()))

    async def _claim(self, schedule: Schedule[Any], tick: datetime) -> None:
        mid = tick_id(schedule.name, tick)
        body = json.dumps({"schedule": schedule.name, "tick": tick.isoformat()}).encode()
        props = Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=mid,
            type=CLAIM_TYPE,
            app_id=self._client.service,
        )
        out = Outgoing(Encoded(body, props, mid, None, CLAIM_TYPE), "", self.queue(schedule.name))
        await self._publisher.send(out)

    async def _read_last(self, schedule: Schedule[Any]) -> datetime | None:
        """The last tick any instance recorded as published (peeked: the record stays)."""
        channel = await self._client.connection.channel(confirms=False)
        try:
            got = await channel.get(self.last_queue(schedule.name))
            if got is None:
                return None
            await channel.nack(got.delivery_tag, requeue=True)
            tick = datetime.fromisoformat(codec.load_json(got.body)["tick"])
            if tick.tzinfo is None:
                return None
            if self._future(tick):  # a forged record would silence every tick until then
                log.error(
                    "ignoring the record of tick %s in %s: it is in the future",
                    tick.isoformat(),
                    self.last_queue(schedule.name),
                )
                return None
            return tick
        except (DecodeError, ValueError, KeyError, TypeError, OverflowError):
            return None
        finally:
            await channel.close()

    async def _record(self, schedule: Schedule[Any], tick: datetime) -> None:
        mid = tick_id(schedule.name, tick)
        body = json.dumps({"schedule": schedule.name, "tick": tick.isoformat()}).encode()
        props = Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=mid,
            type=RECORD_TYPE,
            app_id=self._client.service,
        )
        queue = self.last_queue(schedule.name)
        await self._publisher.send(
            Outgoing(Encoded(body, props, mid, None, RECORD_TYPE), "", queue)
        )

    # -- the active instance publishes ------------------------------------------------------------

    def _claim_handler(self, schedule: Schedule[Any]) -> Callable[[Delivery], Any]:
        async def handle(message: Delivery) -> None:
            await self._on_claim(schedule, message)

        return handle

    async def _on_claim(self, schedule: Schedule[Any], message: Delivery) -> None:
        """One claim: publish its tick if it is due, then ack; a failed publish raises, and the
        claim comes back after a pause (``RawConsumer``)."""
        tick = self._tick_of(schedule, message)
        if tick is not None and await self._due(schedule, tick):
            payload = self._build(schedule, tick)
            if payload is not None:
                await self._publish_tick(schedule, tick, payload)
        await ack(message)

    def _tick_of(self, schedule: Schedule[Any], message: Delivery) -> datetime | None:
        """The claim's tick, or None (logged) for a claim that is not one of ours."""
        try:
            tick = datetime.fromisoformat(codec.load_json(message.body)["tick"])
            if tick.tzinfo is None:
                raise ValueError("naive tick")
        except (DecodeError, ValueError, KeyError, TypeError, OverflowError) as exc:
            log.error("dropping a malformed claim on %s: %r", self.queue(schedule.name), exc)
            return None
        # Anyone who may publish to the queue can write a claim: only a tick of this schedule
        # that is not in the future counts (a far-future one would be published now and make
        # every real tick before it look published, for good, through the record).
        if self._future(tick) or not self._on_grid(schedule, tick):
            log.error(
                "dropping a claim on %s for %s: not a tick of %r up to now",
                self.queue(schedule.name),
                tick.isoformat(),
                schedule.cron.expression,
            )
            return None
        return tick

    @staticmethod
    def _on_grid(schedule: Schedule[Any], tick: datetime) -> bool:
        try:
            return schedule.cron.is_tick(tick)
        except (OverflowError, ValueError):  # year 1
            return False

    def _future(self, tick: datetime) -> bool:
        """Later than now by more than the clock skew between instances tolerated
        (``misfire_grace``)."""
        return (tick - self._clock.now()).total_seconds() > self._grace

    async def _due(self, schedule: Schedule[Any], tick: datetime) -> bool:
        """The tick is later than the last one published (by any instance) and not too old."""
        if schedule.last_done is None or tick > schedule.last_done:
            # Another instance may have published it before this one became active.
            recorded = await self._read_last(schedule)
            if recorded is not None and (
                schedule.last_done is None or recorded > schedule.last_done
            ):
                schedule.last_done = recorded
        if schedule.last_done is not None and tick <= schedule.last_done:
            schedule.skipped += 1  # another instance's claim of a tick already published
            return False
        age = (self._clock.now() - tick).total_seconds()
        if age > self._grace:
            log.warning(
                "schedule %s: tick %s is %.0f s old (misfire_grace %g s); not published",
                schedule.name,
                tick.isoformat(),
                age,
                self._grace,
            )
            schedule.skipped += 1
            schedule.last_done = tick
            return False
        return True

    @staticmethod
    def _build(schedule: Schedule[M], tick: datetime) -> M | None:
        """The tick's message from the factory, or None (logged, the tick skipped) when it
        raised."""
        try:
            return schedule.factory(tick)
        except Exception:
            log.exception("schedule %s: the factory failed for tick %s", schedule.name, tick)
            schedule.skipped += 1
            schedule.last_done = tick
            return None

    async def _publish_tick(self, schedule: Schedule[M], tick: datetime, payload: M) -> None:
        """Publish the tick's message with its deterministic id, then record the tick."""
        options = PublishOptions(**schedule.options)
        options["message_id"] = tick_id(schedule.name, tick)
        try:
            await schedule.publish(payload, **options)
        except Exception as exc:
            log.error(
                "schedule %s: publishing tick %s failed (retry in 1 s): %s",
                schedule.name,
                tick.isoformat(),
                exc,
            )
            raise  # RawConsumer requeues the claim after 1 s; it comes back to the active instance
        schedule.last_done = tick
        schedule.published += 1
        schedule.last_published = tick
        try:
            await self._record(schedule, tick)
        except Exception as exc:  # only widens the failover window for a duplicate
            log.warning("schedule %s: recording tick %s failed: %s", schedule.name, tick, exc)
