"""Dead-letter queue tools: count, list (``DeadLetter`` records) and replay messages of a
dead-letter queue (``ReplayResult``). The ``mmate dlq`` command is built on them."""

from ._operations.dlq import (
    DeadLetter,
    Moved,
    ReplayResult,
    Skipped,
    count_dead_letters,
    list_dead_letters,
    replay,
)

__all__ = [
    "DeadLetter",
    "Moved",
    "ReplayResult",
    "Skipped",
    "count_dead_letters",
    "list_dead_letters",
    "replay",
]
