"""Fixtures of tests/hosting: one vhost for the module (deleted afterwards), its URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.runtime.broker_ctl import run_ctl, vhost_url


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    name = f"mmate-hosting-{uuid.uuid4().hex[:8]}"
    run_ctl("add_vhost", name)
    try:
        run_ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        run_ctl("delete_vhost", name, check=False)


@pytest.fixture(scope="module")
def url(vhost: str) -> str:
    return vhost_url(vhost)
