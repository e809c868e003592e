"""``PublishMethod``: the type of a generated publisher method, for APIs that take one.

A generated method such as ``StorefrontPublisher(client).send_create_order_command`` is a
``PublishMethod[CreateOrderCommand]``: it takes the message and the keyword ``PublishOptions`` and
returns an awaitable. ``Client.publish_with_delay``, ``Client.schedule_command`` and
``Scheduler.add`` take one, so the message type is checked by mypy against the method.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, TypeVar, Unpack

from .model import Model
from .options import PublishOptions

M = TypeVar("M", bound=Model, contravariant=True)


class PublishMethod(Protocol[M]):
    def __call__(self, message: M, **options: Unpack[PublishOptions]) -> Awaitable[object]: ...
