"""The failure policy: every failure is dead-lettered at once for now, and logged with context."""

from __future__ import annotations

import logging

import pytest
from mmate.failure import Action, Failure, decide


@pytest.mark.parametrize("stage", ["decode", "dispatch", "validate", "handler"])
def test_every_failure_is_dead_lettered_and_logged(
    stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="mmate.failure")
    failure = Failure(
        stage, ValueError("bad input"), "orders-q", "CreateOrderCommand", "m-1", False
    )
    assert decide(failure) is Action.DEAD_LETTER
    assert "orders-q" in caplog.text and "CreateOrderCommand" in caplog.text
    assert "m-1" in caplog.text and "bad input" in caplog.text
