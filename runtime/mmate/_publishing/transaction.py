"""Transactional publishing: ``Transaction`` (``client.begin_tx()``), AMQP ``tx.select`` /
``tx.commit`` / ``tx.rollback`` on a channel of its own, never reopened behind the caller's back.
What commit, rollback and each failure (unroutable, channel or connection lost, no
``commit-ok``) give: docs/runtime/batches-and-transactions.md. ``publish`` may be called from
several tasks; ``commit`` / ``rollback`` wait for publishes already writing.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Literal, Self, TypeVar

from .._contract.model import Model
from .._contract.options import PublishOptions
from .._contract.topology import PublishRoute
from .._transport.base import Channel, Returned
from .._transport.connection import Connection
from ..errors import (
    BatchFailure,
    BatchPublishError,
    MmateError,
    TopologyError,
    TransactionError,
    UnroutableError,
)
from .confirmed import Outgoing
from .outbox import Outbox

log = logging.getLogger("mmate.tx")

R = TypeVar("R", bound=Model)

State = Literal["new", "open", "broken", "closed"]

_CLOSE_REASON_WAIT = 5.0
"""Seconds a failed commit waits for the reason its channel closed."""


class Transaction:
    """A publish transaction on its own channel (``Client.begin_tx``); see the module docstring."""

    def __init__(self, connection: Connection, outbox: Outbox, *, timeout: float) -> None:
        self._connection = connection
        self._outbox = outbox
        self._timeout = timeout
        self._channel: Channel | None = None
        self._state: State = "new"
        self._broken = ""
        self._lock = asyncio.Lock()
        self._pending: list[Outgoing] = []
        self._returned: dict[str, Returned] = {}
        """Message id -> its return, for the messages of the current transaction."""
        self.committed = 0
        """Messages committed by this transaction so far."""
        self.rolled_back = 0
        """Messages discarded by ``rollback`` (or an exception in ``async with``) so far."""

    def __repr__(self) -> str:
        return f"<mmate.Transaction {self._state} pending={len(self._pending)}>"

    @property
    def pending(self) -> int:
        """Messages published since the last commit or rollback (held by the broker)."""
        return len(self._pending)

    @property
    def state(self) -> State:
        return self._state

    # -- PublishTransport -------------------------------------------------------------------------

    async def publish(
        self, route: PublishRoute, message: Model, routing_key: str, options: PublishOptions
    ) -> None:
        """Add the message to the transaction (see the module docstring)."""
        outbox = self._outbox
        out = outbox.encode(route, message, routing_key, options)
        draft = outbox.draft("transaction", out, route, message, routing_key, options)

        async def write(final: Outgoing) -> None:
            await self._write(final, options)

        await outbox.interceptors.publish_one(out, draft, write)

    async def _write(self, out: Outgoing, options: PublishOptions) -> None:
        # Like a batch: plugin-mode delays (never mandatory) cannot be in a transaction.
        await self._outbox.prepare_delays((out,), single=False)
        async with self._lock:
            channel = await self._open()
            self._pending.append(out)
            try:
                async with asyncio.timeout(options.get("timeout", self._timeout)):
                    await channel.publish(
                        out.encoded.body,
                        out.encoded.properties,
                        exchange=out.exchange,
                        routing_key=out.routing_key,
                        mandatory=True,
                    )
            except (MmateError, TimeoutError) as exc:
                self._break(f"publishing {out.encoded.type} {out.encoded.message_id}", exc)
                raise self._lost() from exc

    async def request(
        self,
        route: PublishRoute,
        message: Model,
        routing_key: str,
        reply: type[R],
        options: PublishOptions,
    ) -> R:
        raise MmateError(
            f"{route.message.name}: a query cannot be sent in a transaction (its reply could not "
            "arrive before the query is committed); send it with the client"
        )

    # -- commit / rollback ------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit every message published since the last commit or rollback.

        Raises ``BatchPublishError`` for returned (unroutable) messages (the others are
        committed), ``TransactionError`` when the transaction was lost (see the module docstring).
        """
        async with self._lock:
            if self._state == "new" and not self._pending:
                return
            channel = self._usable("commit")
            pending, self._pending = self._pending, []
            try:
                try:
                    async with asyncio.timeout(self._timeout):
                        await channel.tx_commit()
                except TimeoutError:
                    self._break("commit", None)
                    raise TransactionError(
                        f"no commit-ok within {self._timeout:g} s for a transaction of "
                        f"{len(pending)} messages: all or none of them were published",
                        outcome="unknown",
                    ) from None
                except MmateError as exc:
                    reason = await _broker_close_reason(channel, exc)
                    self._break("commit", reason or exc)
                    if reason is not None and "partial tx completion" in str(reason):
                        raise TransactionError(
                            f"the transaction was committed only in part ({self._broken}): a "
                            "queue that rejects publishes when full (x-overflow: reject-publish) "
                            f"refused one of its {len(pending)} messages; some of them (which, "
                            "AMQP does not say) reached the other queues they were routed to",
                            outcome="partial",
                        ) from exc
                    if reason is not None:
                        # The broker closed the channel with an error (404 after a publish to a
                        # missing exchange, ...) and ignored every frame after it, the commit too.
                        raise TransactionError(
                            f"the transaction was lost ({self._broken}): the broker discarded "
                            f"its {len(pending)} uncommitted messages",
                            outcome="rolled-back",
                        ) from exc
                    raise TransactionError(
                        f"the commit of {len(pending)} messages got no answer ({self._broken}): "
                        "all or none of them were published",
                        outcome="unknown",
                    ) from exc
                failures = self._failures(pending)
            finally:
                self._returned.clear()
            self.committed += len(pending) - len(failures)
            if failures:
                raise BatchPublishError(failures, len(pending))

    async def rollback(self) -> None:
        """Discard every message published since the last commit or rollback."""
        async with self._lock:
            if self._state == "new" and not self._pending:
                return
            channel = self._usable("rollback")
            pending, self._pending = self._pending, []
            try:
                async with asyncio.timeout(self._timeout):
                    await channel.tx_rollback()
            except (MmateError, TimeoutError) as exc:
                # The broker discards an uncommitted transaction with its channel.
                self._break("rollback", exc)
                await self._close_channel()
            finally:
                self._returned.clear()
            self.rolled_back += len(pending)

    async def close(self) -> None:
        """Close the channel; messages not committed by then are discarded by the broker."""
        async with self._lock:
            if self._pending:
                log.info("transaction closed with %d uncommitted messages", len(self._pending))
            self.rolled_back += len(self._pending)
            self._returned.clear()
            self._pending = []
            self._state = "closed"
            await self._close_channel()
            self._channel = None

    async def __aenter__(self) -> Self:
        async with self._lock:
            await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.commit()
            elif self._state == "open":
                await self.rollback()
        finally:
            await self.close()

    # -- internals --------------------------------------------------------------------------------

    async def _open(self) -> Channel:
        if self._state == "open":
            return self._usable("publish")
        if self._state != "new":
            self._usable("publish")  # raises
        channel = await self._connection.channel(confirms=False)
        channel.on_return(self._on_return)
        try:
            await channel.tx_select()
        except MmateError as exc:
            await channel.close()
            raise TransactionError(
                f"could not start a transaction: {exc}", outcome="rolled-back"
            ) from exc
        self._channel = channel
        self._state = "open"
        return channel

    def _on_return(self, returned: Returned) -> None:
        if returned.message_id is not None:
            self._returned[returned.message_id] = returned

    def _usable(self, what: str) -> Channel:
        channel = self._channel
        if self._state == "closed":
            raise MmateError(f"cannot {what}: the transaction is closed")
        if self._state == "broken" or channel is None or not channel.is_open:
            if self._state != "broken":
                self._break("the transaction's channel", None)
            raise self._lost()
        return channel

    def _break(self, what: str, exc: BaseException | None) -> None:
        if self._state == "broken":
            return
        self._state = "broken"
        channel = self._channel
        reason = ""
        if exc is not None:
            reason = str(exc) or type(exc).__name__
        elif channel is not None and not channel.is_open:
            reason = "channel closed"
        self._broken = f"{what}: {reason}" if reason else what
        log.warning("transaction lost (%s)", self._broken)

    def _lost(self) -> TransactionError:
        count = len(self._pending)
        self.rolled_back += count
        self._returned.clear()
        self._pending = []
        return TransactionError(
            f"the transaction was lost ({self._broken}): the broker discarded its {count} "
            "uncommitted messages; start a new transaction",
            outcome="rolled-back",
        )

    async def _close_channel(self) -> None:
        channel = self._channel
        if channel is not None:
            await channel.close()

    def _failures(self, pending: list[Outgoing]) -> list[BatchFailure]:
        """The messages the broker returned at commit (every return precedes its commit-ok)."""
        failures: list[BatchFailure] = []
        for index, out in enumerate(pending):
            returned = self._returned.get(out.encoded.message_id)
            if returned is None:
                continue
            error = UnroutableError(
                f"{out.encoded.type} {out.encoded.message_id} is unroutable: no queue is bound to "
                f"exchange {out.exchange or '(default)'!r} with routing key {out.routing_key!r} "
                f"({returned.reply_text}); returned at commit",
                exchange=out.exchange,
                routing_key=out.routing_key,
            )
            failures.append(BatchFailure(index, out.encoded.message_id, error))
        return failures


async def _broker_close_reason(channel: Channel, error: MmateError) -> MmateError | None:
    """The broker's channel error when the broker closed ``channel`` (its ``channel.close``
    precedes any later frame, so a commit sent after it was never carried out); None when the
    channel is open or was closed otherwise (a lost connection: the commit's fate is unknown)."""
    if isinstance(error, TopologyError):
        return error
    # The backend may refuse the commit as soon as the broker's close arrived, before it finished
    # closing the channel; wait (briefly) for the reason.
    reason = await channel.wait_closed(_CLOSE_REASON_WAIT)
    return reason if isinstance(reason, TopologyError) else None
