"""Interceptors: code that runs around every publish (``on_publish``) and every handled message
(``on_handle``) of a ``Client``, and hears every delivery's outcome (``on_outcome``); logging,
metrics (``mmate.metrics``) and tracing (``mmate.tracing``) are built on them.

The first interceptor of the list is the outermost. Each method has a pass-through default; the
chains are built once per client from the interceptors that override it, and skipped when none
does. The fixed order around publishing and consuming, what ``info.headers`` may change, how
batches and transactions run their chains, and what each hook is called for, are in
docs/runtime/interceptors.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._contract.context import MessageContext
from .._contract.model import Model
from .._contract.topology import HeaderValue
from .._delays import cascade as delay
from .._failures.decide import Stage
from .._publishing.confirmed import Outgoing, as_publish_error
from ..errors import BatchFailure, BatchPublishError, MmateError

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger("mmate.interceptors")

PublishKind = Literal["publish", "batch", "request", "reply", "transaction"]
"""What published the message: a single publish or send, a message of ``publish_many`` or a
batch, a query sent by ``request``, a reply sent for a query handler, a message published in a
transaction."""

OutcomeResult = Literal["handled", "retried", "dead_lettered", "rejected", "requeued"]

PublishNext = Callable[[], Awaitable[None]]
"""``call_next`` of ``on_publish``: the rest of the chain, then the confirmed publish."""
HandleNext = Callable[[], Awaitable[Any]]
"""``call_next`` of ``on_handle``: the rest of the chain, then the handler; returns its result."""


@dataclass(slots=True)
class PublishInfo:
    """One message being published, as ``on_publish`` sees it. Only ``headers`` may be changed."""

    message_type: str
    message_id: str
    correlation_id: str | None
    exchange: str
    """Where the message goes (for a delayed message: where it is delivered after its delay)."""
    routing_key: str
    kind: PublishKind
    headers: dict[str, HeaderValue]
    """Extra headers (a copy of the ``headers`` option); changes go on the wire."""
    message: Model | Mapping[str, Any] | None = None
    """What is published: the typed message (for an error reply, its payload table). Read it,
    do not change it (it was encoded before the chain ran)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the runtime did with one delivery, passed to ``on_outcome``."""

    result: OutcomeResult
    """``handled``: the handler returned (acked); ``retried``: moved to a wait queue (or the delay
    cascade); ``dead_lettered``: moved to the dead-letter route; ``rejected``: nacked without
    requeue (the queue has no dead-letter route: ``dead_letter: false`` in the spec);
    ``requeued``: its move to a wait or dead-letter queue failed, so it went back to its queue
    and is delivered again after a pause."""
    queue: str
    message_type: str
    """The envelope's type; for poison, whatever was known (may be empty)."""
    message_id: str
    attempt: int
    stage: Stage | None
    """None when handled; ``handler`` when the handler failed; otherwise the poison stage that
    stopped the message before any handler (``poison``, ``decode``, ``dispatch``,
    ``validate``)."""
    reason: str
    """Dead-letter reason (``permanent-error``, ``retries-exhausted``, a poison reason) or why it
    was rejected (``no-dead-letter-route``, ``move-failed``); empty otherwise."""
    error: BaseException | None
    """The exception that decided it (None when handled)."""
    context: MessageContext | None
    """The handler's context; None for poison (it never reached a handler)."""


class Interceptor:
    """Base class of interceptors; every method passes through. Override what you need.

    Methods are called concurrently from many tasks (publishes and handler workers); keep state
    task-safe (plain counters are, within one event loop).
    """

    def bind(self, client: Client) -> None:
        """Called once by each ``Client`` built with this interceptor, before it connects."""

    async def on_publish(self, info: PublishInfo, call_next: PublishNext) -> None:
        """Wraps one publish; ``await call_next()`` returns once the broker confirmed it."""
        await call_next()

    async def on_handle(self, message: Model, ctx: MessageContext, call_next: HandleNext) -> Any:
        """Wraps one handler call; return what ``call_next`` returned (a query's reply)."""
        return await call_next()

    def on_outcome(self, outcome: Outcome) -> None:
        """Called after the runtime carried out its decision about a delivery."""


def _overrides(interceptor: Interceptor, name: str) -> bool:
    return getattr(type(interceptor), name) is not getattr(Interceptor, name)


class Interceptors:
    """The chains of one client, built once. Each chain passes straight through when no
    interceptor overrides its hook, so the runtime calls them unconditionally."""

    def __init__(self, interceptors: Sequence[Interceptor]) -> None:
        for item in interceptors:
            if not isinstance(item, Interceptor):
                raise MmateError(f"interceptors must subclass mmate.Interceptor, got {item!r}")
        self.items = tuple(interceptors)
        self._publish = tuple(i.on_publish for i in self.items if _overrides(i, "on_publish"))
        self._handle = tuple(i.on_handle for i in self.items if _overrides(i, "on_handle"))
        self._outcome = tuple(i.on_outcome for i in self.items if _overrides(i, "on_outcome"))
        self.publishes = bool(self._publish)
        self.handles = bool(self._handle)
        self.observes = bool(self._outcome)

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, info: PublishInfo, last: PublishNext) -> Awaitable[None]:
        """Run the publish chain around ``last`` (the encode-if-changed and the send)."""
        return self._publish_from(0, info, last)

    def _publish_from(self, index: int, info: PublishInfo, last: PublishNext) -> Awaitable[None]:
        if index == len(self._publish):
            return last()
        return self._publish[index](info, lambda: self._publish_from(index + 1, info, last))

    async def publish_one(
        self,
        out: Outgoing,
        draft: Callable[[], Draft],
        send: Callable[[Outgoing], Awaitable[None]],
    ) -> None:
        """Publish ``out`` through the chain (``draft`` builds what the interceptors see; not
        called when none publishes); re-encoded first when they changed the headers."""
        if not self.publishes:
            await send(out)
            return
        made = draft()
        info = made.info
        original = dict(info.headers)

        async def last() -> None:
            await send(made.final(original))

        await self.publish(info, last)

    async def publish_batch(
        self,
        outs: Sequence[Outgoing],
        draft: Sequence[Callable[[], Draft]],
        send_many: Callable[[list[Outgoing]], Awaitable[None]],
    ) -> None:
        """Publish a batch, each message through its own chain (see the module docstring)."""
        if not outs:
            return
        if not self.publishes:
            await send_many(list(outs))
            return
        meeting = _BatchMeeting([make() for make in draft])
        tasks = [asyncio.create_task(meeting.chain(self, i)) for i in range(len(meeting.drafts))]
        try:
            await meeting.everyone
            whole = await meeting.send(send_many)
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            for task in tasks:
                task.cancel()
            meeting.cancel()
            raise
        failures = _batch_failures(outcomes, meeting.drafts)
        if whole is not None and all(outcome is whole for outcome in outcomes):
            raise whole  # as without interceptors: nothing was sent
        if failures:
            raise BatchPublishError(failures, len(meeting.drafts))

    # -- consuming --------------------------------------------------------------------------------

    def handle(self, message: Model, ctx: MessageContext, last: HandleNext) -> Awaitable[Any]:
        """Run the handle chain around ``last`` (the handler call)."""
        if not self.handles:
            return last()
        return self._handle_from(0, message, ctx, last)

    def _handle_from(
        self, index: int, message: Model, ctx: MessageContext, last: HandleNext
    ) -> Awaitable[Any]:
        if index == len(self._handle):
            return last()
        return self._handle[index](
            message, ctx, lambda: self._handle_from(index + 1, message, ctx, last)
        )

    def outcome(self, outcome: Outcome) -> None:
        """Tell every ``on_outcome`` (exceptions logged and ignored)."""
        for hook in self._outcome:
            try:
                hook(outcome)
            except Exception:
                log.exception("on_outcome of %r failed", getattr(hook, "__self__", hook))


Reencode = Callable[[Mapping[str, HeaderValue]], Outgoing]
"""Encodes the same message again with other extra headers (same message id)."""


@dataclass(frozen=True, slots=True)
class Draft:
    """A message of a batch: what ``on_publish`` sees, the encoded message, how to re-encode it."""

    info: PublishInfo
    out: Outgoing
    reencode: Reencode

    def final(self, original: Mapping[str, HeaderValue]) -> Outgoing:
        """What to send once the chain ran: re-encoded if it changed the headers from
        ``original`` (their value before the chain)."""
        headers = self.info.headers
        return self.out if headers == original else self.reencode(headers)


def publish_info(
    out: Outgoing,
    kind: PublishKind,
    headers: Mapping[str, HeaderValue] | None,
    message: Model | Mapping[str, Any] | None = None,
) -> PublishInfo:
    """The ``PublishInfo`` of an encoded message (its destination, not the delay cascade's)."""
    encoded = out.encoded
    exchange, routing_key = out.exchange, out.routing_key
    table = encoded.properties.headers
    if table and delay.HEADER_EXCHANGE in table:
        exchange = str(table[delay.HEADER_EXCHANGE])
        routing_key = str(table.get(delay.HEADER_ROUTING_KEY, ""))
    return PublishInfo(
        message_type=encoded.type,
        message_id=encoded.message_id,
        correlation_id=encoded.correlation_id,
        exchange=exchange,
        routing_key=routing_key,
        kind=kind,
        headers=dict(headers) if headers else {},
        message=message,
    )


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _BatchMeeting:
    """Where the publish chains of one batch meet: each chain's last step records its message
    and waits; once every chain got there (or ended early), the recorded messages go out in one
    batch and each waiting step learns its own message's outcome."""

    def __init__(self, drafts: list[Draft]) -> None:
        loop = asyncio.get_running_loop()
        self.drafts = drafts
        self.results: list[asyncio.Future[None]] = [loop.create_future() for _ in drafts]
        self.reached: dict[int, Outgoing] = {}
        self.everyone: asyncio.Future[None] = loop.create_future()
        self._left = len(drafts)

    def _arrived(self) -> None:
        self._left -= 1
        if self._left == 0 and not self.everyone.done():
            self.everyone.set_result(None)

    async def chain(self, chains: Interceptors, index: int) -> None:
        draft = self.drafts[index]
        original = dict(draft.info.headers)

        async def last() -> None:
            if index in self.reached:
                raise MmateError("call_next was called twice for one message")
            self.reached[index] = draft.final(original)
            self._arrived()
            await self.results[index]

        try:
            await chains.publish(draft.info, last)
        finally:
            if index not in self.reached:
                self._arrived()

    async def send(
        self, send_many: Callable[[list[Outgoing]], Awaitable[None]]
    ) -> Exception | None:
        """Send what reached the end of its chain and settle each waiting step; returns the
        error of the batch as a whole (breaker open, delays refused), if that is what failed."""
        order = sorted(self.reached)
        try:
            if order:
                await send_many([self.reached[i] for i in order])
        except BatchPublishError as exc:
            failed = {order[f.index]: f.error for f in exc.failures}
            for i in order:
                _settle(self.results[i], failed.get(i))
        except Exception as exc:
            for i in order:
                _settle(self.results[i], exc)
            return exc
        else:
            for i in order:
                _settle(self.results[i], None)
        return None

    def cancel(self) -> None:
        for future in self.results:
            future.cancel()


def _batch_failures(outcomes: Sequence[object], drafts: Sequence[Draft]) -> list[BatchFailure]:
    """The failures among the chains' outcomes, by index (a non-Exception is re-raised)."""
    failures: list[BatchFailure] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            error = outcome if isinstance(outcome, MmateError) else as_publish_error(outcome)
            failures.append(BatchFailure(index, drafts[index].info.message_id, error))
    return failures
