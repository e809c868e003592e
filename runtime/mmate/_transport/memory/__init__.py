"""The in-memory broker behind the transport seam: RabbitMQ 3.10's semantics for what mmate
uses, in the process, with a clock a test can advance.

``MemoryBroker`` is the broker (``memory://`` the process's default one, ``memory://<name>`` a
named one, ``MemoryBroker()`` a new one with a unique ``url``); ``memory_backend(url)`` the seam's
``Backend`` for a URL; ``FEATURES`` what it models. What it models and what it does not is listed
in ``docs/testing.md`` ("What the in-memory broker models"); the modules say how:

* ``broker``: the registry, exchanges, queues, bindings, routing, dead-lettering, ``advance`` and
  ``wait_idle``, and the inspection views (``inspect``);
* ``queue``: order, priority, TTL, length limits, consumers, single active consumer;
* ``channel`` / ``link`` / ``backend``: the seam's ``Channel``, ``Link`` and ``Backend``;
* ``arguments``: what a declaration checks; ``routing``: how exchanges match; ``deadletter``:
  ``x-death``; ``values``: what a message can carry; ``replies``: RabbitMQ's reply texts;
  ``clock``: virtual time.
"""

from .backend import MemoryBackend, memory_backend
from .broker import FEATURES, MemoryBroker
from .clock import VirtualClock
from .inspect import BindingView, ConsumerView, ExchangeView, MessageView, QueueView

__all__ = [
    "FEATURES",
    "BindingView",
    "ConsumerView",
    "ExchangeView",
    "MemoryBackend",
    "MemoryBroker",
    "MessageView",
    "QueueView",
    "VirtualClock",
    "memory_backend",
]
