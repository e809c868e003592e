"""A handler class must implement every message its service handles before it can exist."""

from __future__ import annotations

import mmate
import pytest

from generated.models import OrderCreatedEvent
from generated.order_audit import OrderAuditHandlers


class Incomplete(OrderAuditHandlers):
    pass


class Complete(OrderAuditHandlers):
    async def handle_order_created_event(
        self, message: OrderCreatedEvent, ctx: mmate.MessageContext
    ) -> None:
        return None


def test_a_handler_class_missing_a_method_cannot_be_instantiated() -> None:
    with pytest.raises(TypeError, match="handle_order_created_event"):
        Incomplete()  # type: ignore[abstract]


def test_a_complete_handler_class_can() -> None:
    assert isinstance(Complete(), mmate.HandlerBase)
