"""Where a cluster puts a quorum queue: its leader and how many replicas it starts with.

RabbitMQ places a new quorum queue's leader on the node of the declaring connection unless the
declaration says otherwise, so one client declaring a whole topology (the delay cascade's 30
queues included) puts every leader on one node, and losing that node hits them all at once.
``QueuePlacement`` adds two arguments to every quorum queue the runtime declares:

* ``x-queue-leader-locator`` (``balanced`` by default: the node with the fewest leaders;
  ``client-local``: the declaring connection's node). RabbitMQ 3.10+ and 4.x accept both.
* ``x-quorum-initial-group-size`` when set: the number of replicas (default: every node).

Both are checked for equivalence by the broker: a queue that already exists without them, or with
other values (declared by an older client, by another Mmate implementation, by a client with other
settings), answers 406. ``declare_queue`` then declares it again with the value the broker names
(or without the argument), so existing queues keep working as they are; only the arguments the
runtime added are adjusted, the spec's own never, and any other difference still fails.
Queues declared exactly as Go Mmate does (``go_compatible``) and classic queues get nothing added.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._transport.base import Channel, QueueInfo
from ..errors import MmateError, PreconditionFailed

log = logging.getLogger("mmate.declare")

LeaderLocator = Literal["balanced", "client-local"]

LEADER_LOCATOR = "x-queue-leader-locator"
INITIAL_GROUP_SIZE = "x-quorum-initial-group-size"


@dataclass(frozen=True, slots=True)
class QueuePlacement:
    """The placement arguments added to quorum queues (see the module docstring)."""

    leader_locator: LeaderLocator | None = "balanced"
    """None: the broker's default (the declaring node, unless a policy says otherwise)."""
    initial_group_size: int | None = None
    """Replicas of a new quorum queue; None: every cluster node (RabbitMQ's default)."""

    def __post_init__(self) -> None:
        if self.leader_locator not in (None, "balanced", "client-local"):
            raise MmateError(
                f"queue_leader_locator must be 'balanced', 'client-local' or None, not "
                f"{self.leader_locator!r}"
            )
        size = self.initial_group_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise MmateError(f"quorum_initial_group_size must be a positive integer, not {size!r}")

    def added(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments this placement adds to a queue declared with ``arguments`` (none for a
        classic queue, none that the arguments already set)."""
        if arguments.get("x-queue-type") != "quorum":
            return {}
        extra: dict[str, Any] = {}
        if self.leader_locator is not None and LEADER_LOCATOR not in arguments:
            extra[LEADER_LOCATOR] = self.leader_locator
        if self.initial_group_size is not None and INITIAL_GROUP_SIZE not in arguments:
            extra[INITIAL_GROUP_SIZE] = self.initial_group_size
        return extra


NO_PLACEMENT = QueuePlacement(leader_locator=None)


def _current(key: str, text: str) -> tuple[bool, Any]:
    """From a 406 naming ``key``: (True, the queue's value; None when it has none), or (False,
    None) when the text does not say."""
    tail = text.partition(f"inequivalent arg '{key}'")[2]
    if not tail:
        return False, None
    if re.search(r"current is none", tail):
        return True, None
    found = re.search(r"current is (?:the value )?'([^']*)'", tail)
    if found is None:
        return False, None
    value = found.group(1)
    return True, int(value) if key == INITIAL_GROUP_SIZE and value.isdigit() else value


async def declare_queue(
    channel: Callable[[], Awaitable[Channel]],
    name: str,
    placement: QueuePlacement,
    *,
    durable: bool = True,
    exclusive: bool = False,
    auto_delete: bool = False,
    arguments: Mapping[str, Any] | None = None,
) -> QueueInfo:
    """Declare a queue with ``placement``'s arguments added. When the queue exists with other
    placement (a 406 naming an argument the placement added), declare it again with the value the
    broker has (or without it), so an existing queue is used as it is; any other difference fails
    as usual. ``channel`` returns an open channel (a fresh one after a 406 closed the last)."""
    wanted = dict(arguments or {})
    extra = placement.added(wanted)
    args = {**wanted, **extra}
    for _ in range(len(extra) + 1):
        try:
            return await (await channel()).declare_queue(
                name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=args,
            )
        except PreconditionFailed as exc:
            text = str(exc)
            key = next((k for k in extra if f"inequivalent arg '{k}'" in text), None)
            known, current = _current(key, text) if key is not None else (False, None)
            if key is None or not known:
                raise
            if current is None:
                args.pop(key, None)
            else:
                args[key] = current
            extra.pop(key)
            log.info(
                "queue %r exists with %s=%s; using it as it is (placement is fixed when a queue "
                "is created)",
                name,
                key,
                "none" if current is None else current,
            )
    return await (await channel()).declare_queue(
        name, durable=durable, exclusive=exclusive, auto_delete=auto_delete, arguments=args
    )
