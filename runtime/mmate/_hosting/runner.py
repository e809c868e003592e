"""Hosting one service in this process (``host``, ``Host``): connect, health port, startup hooks,
declare, serve, schedule; drain on a signal and return the exit code (``OK`` ... ``FORCED``, the
table in docs/running.md).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._consuming.dispatch import Handlers
from .._contract.handler import HandlerBase
from .._contract.registry import HandlerRegistry
from .._contract.topology import ServiceTopology
from .._delays.scheduler import Scheduler
from .._observation.interceptors import Interceptor
from .._operations.health_http import HealthServer, MetricsBody, serve_health
from .._transport.urls import mask
from ..client import Client
from . import config, logs
from .app import App, service_of
from .target import TargetError, load

if TYPE_CHECKING:
    from .._consuming.serving import Serving

OK, FAILED, USAGE, DRAIN_EXPIRED, FORCED = 0, 1, 2, 3, 4
SUPERVISOR = "MMATE_SUPERVISOR_PID"
"""Set by ``--workers`` and ``--reload`` for their children: the pid a child watches."""

log = logging.getLogger("mmate.run")


class StartupError(Exception):
    """The service could not start (the text is one line, URLs masked)."""


def masked(text: str, urls: Sequence[str]) -> str:
    for url in urls:
        text = text.replace(url, mask(url))
    return text


def error(text: str) -> None:
    print(f"mmate run: error: {text}", file=sys.stderr, flush=True)


def _metrics() -> tuple[list[Interceptor], MetricsBody | None]:
    """A ``PrometheusMetrics`` interceptor on its own registry when prometheus-client is there."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from .._observation.metrics import PrometheusMetrics
    except ImportError:
        return [], None
    registry = CollectorRegistry()

    def body() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return [PrometheusMetrics(registry)], body


def _freeze() -> None:
    """Collect what start-up left over, then move every object alive (the imports, the
    handlers, the topology) to the collector's permanent generation: its full collections then
    scan only what the service allocates while running, which is where a busy publisher spends
    its collector time (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    log.info("garbage collector: %d objects alive after start-up frozen", gc.get_freeze_count())


async def _handlers(app: App, client: Client) -> list[Handlers]:
    made: list[Handlers] = []
    for handler in app.handlers:
        if isinstance(handler, (HandlerBase, HandlerRegistry)):
            made.append(handler)
            continue
        result = handler(client)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, (HandlerBase, HandlerRegistry)):
            raise StartupError(
                f"a handler function of the App returned {type(result).__name__}, "
                "not a handler object"
            )
        made.append(result)
    return made


def _name(hook: object) -> str:
    return str(getattr(hook, "__qualname__", None) or getattr(hook, "__name__", None) or hook)


def _topologies(handlers: Sequence[Handlers]) -> list[ServiceTopology]:
    seen: dict[str, ServiceTopology] = {}
    for handler in handlers:
        seen.setdefault(handler.TOPOLOGY.name, handler.TOPOLOGY)
    return list(seen.values())


@dataclass
class _Started:
    """What the startup of a ``Host`` got running, and the step it is at."""

    step: str = "starting"
    health: HealthServer | None = None
    scheduler: Scheduler | None = None

    async def close(self, client: Client) -> None:
        """After a failed or interrupted startup: stop what runs, close the client."""
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.health is not None:
            await self.health.close()
        await client.close(0)


class Host:
    """One hosted service; ``run()`` returns the exit code."""

    def __init__(self, app: App, cfg: config.RunConfig, service: str) -> None:
        self.app = app
        self.cfg = cfg
        self.service = service
        self._stop = asyncio.Event()
        self._signals = 0

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info(
                "%s: draining (up to %g s); a second signal stops at once",
                name,
                self.cfg.drain_timeout,
            )
            self._stop.set()
            return
        log.warning("%s again: stopping at once; the broker redelivers unsettled messages", name)
        logging.shutdown()
        os._exit(FORCED)

    async def _watch_parent(self, parent: int) -> None:
        """A worker drains when its supervisor is gone (killed without forwarding a signal)."""
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.warning("the supervisor (pid %d) is gone: draining", parent)
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        parent = os.environ.get(SUPERVISOR)
        watcher = None
        if parent and parent.isdigit():
            watcher = asyncio.create_task(self._watch_parent(int(parent)))
        try:
            return await self._run()
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _startup(
        self, client: Client, started: _Started, metrics: MetricsBody | None
    ) -> Serving:
        """Everything between connecting and serving; ``started`` keeps what is running."""
        cfg = self.cfg
        if cfg.health_port is not None:
            # open from the start: /live answers and /ready says "not serving" while the
            # startup hooks run; a port in use fails here, before anything is consumed
            started.step = f"health port {cfg.health_host}:{cfg.health_port}"
            started.health = await serve_health(
                client,
                host=cfg.health_host,
                port=cfg.health_port,
                ready_requires_serving=True,
                metrics=metrics,
            )
            log.info(
                "health on http://%s:%d/ (pid %d)",
                f"[{cfg.health_host}]" if ":" in cfg.health_host else cfg.health_host,  # IPv6
                started.health.port,
                os.getpid(),
            )
        for hook in self.app.startup:
            started.step = f"startup hook {_name(hook)}"
            await hook(client)
        started.step = "making the handlers"
        handlers = await _handlers(self.app, client)
        for topology in _topologies(handlers):
            started.step = f"declaring the topology of {topology.name}"
            await client.declare(topology)
        started.step = "serving"
        serving = await client.serve(*handlers, prefetch=cfg.prefetch, concurrency=cfg.concurrency)
        if self.app.schedules:
            started.step = "starting the schedules"
            scheduler = Scheduler(client)
            for entry in self.app.schedules:
                scheduler.add(entry.name, entry.expression, entry.publish(client), entry.message)
            await scheduler.start()
            started.scheduler = scheduler
        if cfg.gc_freeze:
            _freeze()
        return serving

    async def _run(self) -> int:
        interceptors, metrics = _metrics()
        cfg = self.cfg
        client = Client(
            list(cfg.urls), service=self.service, interceptors=interceptors, **self.app.options
        )
        try:
            await client.connect()
        except Exception as exc:
            raise StartupError(f"cannot connect: {exc}") from None
        started = _Started()
        startup = asyncio.create_task(self._startup(client, started, metrics))
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not startup.done():
            # a signal while starting (a startup hook still running, say): nothing was served
            startup.cancel()
            await asyncio.gather(startup, return_exceptions=True)
            await started.close(client)
            log.info("stopped while starting (%s): nothing was served", started.step)
            return OK
        failure = startup.exception()
        if failure is not None:
            await started.close(client)
            if isinstance(failure, StartupError):
                raise failure
            raise StartupError(f"{started.step} failed: {type(failure).__name__}: {failure}")
        serving, scheduler, health = startup.result(), started.scheduler, started.health
        queues = ", ".join(sorted(serving.groups))
        log.info("serving %s (pid %d): %s", self.service, os.getpid(), queues)
        await self._stop.wait()
        if scheduler is not None:
            await scheduler.stop()
        draining = time.monotonic()
        await serving.stop(cfg.drain_timeout)
        expired = time.monotonic() - draining >= cfg.drain_timeout
        for hook in self.app.shutdown:
            try:
                await hook(client)
            except Exception as exc:
                log.error("shutdown hook %s failed: %s: %s", _name(hook), type(exc).__name__, exc)
        if health is not None:
            await health.close()
        await client.close(0)
        if expired:
            log.warning(
                "drain deadline of %g s passed; the broker redelivers what was unfinished",
                cfg.drain_timeout,
            )
            return DRAIN_EXPIRED
        log.info("stopped cleanly: %d handled, %d failed", serving.handled, serving.failed)
        return OK


async def _host(target: str, flags: Mapping[str, object], file: Path | None) -> int:
    try:
        app = await load(target)
    except TargetError as exc:
        error(str(exc))
        return FAILED
    try:
        cfg = config.resolve(app=app.settings(), file=file, flags=flags)
    except config.ConfigError as exc:
        error(str(exc))
        return USAGE
    logs.configure(cfg.log_level, cfg.log_format)
    service = os.environ.get("MMATE_SERVICE") or app.service or service_of(app.handlers)
    if not service:
        error(
            "every handler of the App is made by a function: "
            "give App(service=...) or set MMATE_SERVICE"
        )
        return USAGE
    try:
        return await Host(app, cfg, service).run()
    except StartupError as exc:
        error(masked(str(exc), cfg.urls))
        return FAILED


def host(target: str, flags: Mapping[str, object], file: Path | None) -> int:
    """Host ``target`` in this process until a signal; returns the exit code."""
    try:
        return asyncio.run(_host(target, flags, file))
    except KeyboardInterrupt:
        return FORCED
