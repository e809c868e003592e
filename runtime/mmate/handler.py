"""The base of generated handler classes."""

from __future__ import annotations

from typing import ClassVar

from .topology import ServiceTopology


class HandlerBase:
    """Base of generated ``<Service>Handlers`` classes.

    Subclass the generated class and implement its abstract ``handle_*`` methods; ``Client.serve``
    consumes every queue in ``TOPOLOGY.consumes`` and calls the method named by the route for each
    message type. A handler returning normally means the message is acknowledged; raising means it
    failed.
    """

    TOPOLOGY: ClassVar[ServiceTopology]
