"""The delay cascade's entities, as the runtime declares them.

The cascade (59 entities under ``mmate.delay``) is defined by the runtime class
``mmate._delays.cascade.DelayTopology``; this is the only module of the generator that imports
it, so the two can never disagree on a name or an argument.
"""

from __future__ import annotations

from mmate._delays.cascade import DEFAULT_PREFIX, DelayTopology

from .entities import BindingEntity, ExchangeEntity, QueueEntity, arguments

__all__ = ["DEFAULT_PREFIX", "cascade_entities"]

WHAT = "delay cascade"


def cascade_entities(
    prefix: str = DEFAULT_PREFIX,
) -> tuple[list[ExchangeEntity], list[QueueEntity], list[BindingEntity]]:
    """Exchanges, queues and bindings (to queues and to exchanges) of the cascade."""
    cascade = DelayTopology(prefix)
    exchanges = [
        ExchangeEntity(
            name, kind, durable=True, auto_delete=False, arguments=arguments(args), what=WHAT
        )
        for name, kind, args in cascade.exchanges()
    ]
    queues = [
        QueueEntity(name, True, False, False, arguments(a), WHAT) for name, a in cascade.queues()
    ]
    bindings = [
        BindingEntity(source, destination, "queue", key, (), WHAT)
        for source, destination, key in cascade.queue_bindings()
    ] + [
        BindingEntity(source, destination, "exchange", key, (), WHAT)
        for source, destination, key in cascade.exchange_bindings()
    ]
    return exchanges, queues, bindings
