"""URL handling (passwords never shown) and the aiormq backend's aiormq -> mmate error table."""

from __future__ import annotations

import re
from pathlib import Path

import aiormq.exceptions as amqp_exc
import mmate
import pytest
from backends import requires
from mmate._transport.aiormq.errors import translate
from mmate._transport.aiormq.urls import aiormq_url
from mmate._transport.urls import mask, validate, vhost_of
from mmate.errors import MmateError


def test_mask_hides_the_password() -> None:
    assert mask("amqp://guest:guest@localhost/") == "amqp://guest:****@localhost/"
    assert mask("amqps://u:p%40ss@h:5671/v?heartbeat=5") == "amqps://u:****@h:5671/v?heartbeat=5"
    assert mask("amqp://localhost/") == "amqp://localhost/"


def test_connection_url_adds_heartbeat_and_name_but_keeps_given_ones() -> None:
    url = aiormq_url("amqp://u:p@h/vh", heartbeat=7, connection_name="order-service (mmate-py)")
    assert url.startswith("amqp://u:p@h/vh?")
    assert "heartbeat=7" in url and "name=order-service%20%28mmate-py%29" in url
    kept = aiormq_url("amqps://u:p@h/?heartbeat=3&cafile=/ca.pem", heartbeat=7)
    assert "heartbeat=3" in kept and "cafile=%2Fca.pem" in kept


def test_vhost() -> None:
    assert vhost_of("amqp://h/") == "/" and vhost_of("amqp://h/prod%2Fa") == "prod/a"


@pytest.mark.parametrize("url", ["http://u:hunter2@h/", "amqp://u:hunter2@/x"])
def test_bad_urls_fail_without_showing_the_password(url: str) -> None:
    with pytest.raises(mmate.MmateError) as info:
        validate(url)
    assert "hunter2" not in str(info.value)


def test_client_repr_hides_the_password() -> None:
    client = mmate.Client("amqp://guest:hunter2@127.0.0.1:5672/", service="svc")
    assert "hunter2" not in repr(client) and "****" in repr(client)
    assert "hunter2" not in repr(client.connection)


async def test_failed_connect_names_host_but_not_password(caplog: pytest.LogCaptureFixture) -> None:
    client = mmate.Client("amqp://guest:hunter2@127.0.0.1:1/", service="svc", connect_timeout=3)
    with pytest.raises(mmate.BrokerConnectionError) as info:
        await client.connect()
    assert "127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
    assert "hunter2" not in caplog.text


@requires("amqp_wire")  # the memory broker has no users or passwords
async def test_wrong_password_is_a_connection_error_without_the_password(url: str) -> None:
    bad = url.replace("guest:guest", "guest:wrong-secret")
    client = mmate.Client(bad, service="svc", connect_timeout=5)
    with pytest.raises(mmate.BrokerConnectionError) as info:
        await client.connect()
    assert "wrong-secret" not in str(info.value)


def test_translate_table() -> None:
    assert isinstance(
        translate(amqp_exc.ChannelNotFoundEntity("NOT_FOUND - no queue 'q'"), "x"),
        mmate.EntityNotFound,
    )
    err = translate(amqp_exc.ChannelAccessRefused("ACCESS_REFUSED"), "declaring q")
    assert isinstance(err, mmate.AccessRefused) and "declaring q" in str(err)
    assert isinstance(
        translate(amqp_exc.ConnectionClosed(320, "forced"), "x"), mmate.BrokerConnectionError
    )
    assert isinstance(translate(ConnectionRefusedError(), "x"), mmate.BrokerConnectionError)
    original = mmate.PublishTimeout("t")
    assert translate(original, "x") is original


def test_exception_tree() -> None:
    for cls in (
        mmate.UnroutableError,
        mmate.NackError,
        mmate.PublishTimeout,
        mmate.BatchPublishError,
    ):
        assert issubclass(cls, mmate.PublishError)
    assert issubclass(mmate.PreconditionFailed, mmate.TopologyError)
    assert issubclass(mmate.RequestTimeout, TimeoutError)
    assert mmate.ReplyError is mmate.RemoteError
    for cls in (
        mmate.PublishError,
        mmate.TopologyError,
        mmate.RemoteError,
        mmate.DecodeError,
        mmate.PermanentError,
        mmate.TransientError,
    ):
        assert issubclass(cls, mmate.MmateError)


def test_ssl_context_needs_amqps() -> None:
    import ssl

    with pytest.raises(mmate.MmateError, match="amqps://"):
        mmate.Client("amqp://u:hunter2@h/", service="s", ssl_context=ssl.create_default_context())
    client = mmate.Client(
        "amqps://u:hunter2@h/", service="s", ssl_context=ssl.create_default_context()
    )
    assert "hunter2" not in repr(client)


def test_the_errors_page_shows_every_exported_error() -> None:
    """docs/runtime/errors.md draws the tree; an error class exported from mmate and missing
    there is a page gone stale."""
    page = (Path(__file__).parents[2] / "docs" / "runtime" / "errors.md").read_text("utf-8")
    exported = {
        name
        for name in mmate.__all__
        if isinstance(getattr(mmate, name), type) and issubclass(getattr(mmate, name), MmateError)
    }
    missing = sorted(name for name in exported if not re.search(rf"\b{name}\b", page))
    assert missing == []
