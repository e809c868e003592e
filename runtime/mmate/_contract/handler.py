"""The base of generated handler classes."""

from __future__ import annotations

from abc import ABC
from typing import ClassVar

from .topology import ServiceTopology


class HandlerBase(ABC):
    """Base of generated ``<Service>Handlers`` classes.

    Subclass the generated class and implement its abstract ``handle_*`` methods; ``Client.serve``
    consumes every queue in ``TOPOLOGY.consumes`` and calls the method named by the route for each
    message type. A handler returning normally means the message is acknowledged; raising means it
    failed. A subclass that leaves a handler method unimplemented cannot be instantiated.
    """

    TOPOLOGY: ClassVar[ServiceTopology]
