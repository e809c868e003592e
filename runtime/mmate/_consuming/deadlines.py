"""Handler deadlines: one watchdog task per consumer instead of a timer per message.

Contract: every worker of a consumer owns a ``Slot``. Around a handler call the worker sets the
slot's deadline (``begin``) and clears it afterwards (``end``); that is all a message costs. The
consumer's ``Watchdog`` task wakes at the earliest deadline of its slots (when none is set, after
one whole timeout: a deadline set later cannot fall earlier) and cancels the worker task of every
slot whose deadline has passed, exactly as ``asyncio.timeout`` would. ``end`` then turns that
cancellation into ``TimeoutError`` (after ``Task.uncancel``); a cancellation that came from
anywhere else as well (``stop`` cancelling the worker) stays a cancellation.

The deadline covers the handler method only (not a query's reply, not the interceptors around
it), as before. A handler that swallows the cancellation and returns is not failed (the
``asyncio.timeout`` behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib


class Slot:
    """The deadline of the message one worker task is handling."""

    __slots__ = ("deadline", "fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.deadline: float | None = None
        """``loop.time()`` by which the running handler must have returned (None: none runs)."""
        self.fired = False
        """The watchdog cancelled ``task`` for this deadline (consumed by ``end``)."""

    def end(self, error: BaseException | None) -> None:
        """The handler returned (``error`` None) or raised ``error``: clear the deadline; raise
        ``TimeoutError`` when the watchdog cancelled the handler and nothing else did."""
        self.deadline = None
        if not self.fired:
            return
        self.fired = False
        if self.task.uncancel() == 0 and isinstance(error, asyncio.CancelledError):
            raise TimeoutError("the handler exceeded handler_timeout") from None


class Watchdog:
    """Cancels the handlers of ``slots`` that run past ``timeout`` seconds."""

    def __init__(self, timeout: float, name: str) -> None:
        if timeout <= 0:
            raise ValueError(f"handler_timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._name = name
        self._slots: list[Slot] = []
        self._task: asyncio.Task[None] | None = None

    def slot(self, task: asyncio.Task[object]) -> Slot:
        """A slot for the worker ``task`` (call from the worker, before its first message)."""
        slot = Slot(task)
        self._slots.append(slot)
        return slot

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._slots.clear()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wake = now + self.timeout
            for slot in self._slots:
                deadline = slot.deadline
                if deadline is None:
                    continue
                if deadline <= now:
                    slot.deadline = None
                    slot.fired = True
                    slot.task.cancel()
                elif deadline < wake:
                    wake = deadline
            await asyncio.sleep(wake - now)
