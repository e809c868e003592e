"""``mmate run`` settings in process: precedence of the sources and the errors naming a setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmate._hosting.config import ConfigError, RunConfig, resolve


def test_defaults() -> None:
    assert resolve(env={}) == RunConfig()


def test_precedence_flag_env_file_app(tmp_path: Path) -> None:
    file = tmp_path / "mmate.toml"
    file.write_text('[mmate]\nprefetch = 3\nconcurrency = 4\nurl = ["amqp://a/", "amqp://b/"]\n')
    app = {"prefetch": 1, "concurrency": 2, "drain_timeout": 5.0}
    cfg = resolve(app=app, file=file, env={"MMATE_PREFETCH": "6"}, flags={"prefetch": "7"})
    assert (cfg.prefetch, cfg.concurrency, cfg.drain_timeout) == (7, 4, 5.0)
    assert cfg.urls == ("amqp://a/", "amqp://b/")
    cfg = resolve(
        app=app, file=file, env={"MMATE_PREFETCH": "6", "MMATE_URL": "amqp://c/, amqp://d/"}
    )
    assert cfg.prefetch == 6 and cfg.urls == ("amqp://c/", "amqp://d/")
    assert resolve(env={"MMATE_HEALTH_PORT": "off"}).health_port is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MMATE_CONCURRENCY": "0"}, "MMATE_CONCURRENCY"),
        ({"MMATE_DRAIN_TIMEOUT": "soon"}, "MMATE_DRAIN_TIMEOUT"),
        ({"MMATE_LOG_LEVEL": "loud"}, "MMATE_LOG_LEVEL"),
        ({"MMATE_HEALTH_PORT": "-1"}, "MMATE_HEALTH_PORT"),
        ({"MMATE_URL": " , "}, "MMATE_URL"),
        ({"MMATE_GC_FREEZE": "maybe"}, "MMATE_GC_FREEZE"),
    ],
)
def test_invalid_environment(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        resolve(env=env)


def test_gc_freeze_is_on_unless_switched_off(tmp_path: Path) -> None:
    assert resolve(env={}).gc_freeze is True
    for off in ("off", "false", "0", "No"):
        assert resolve(env={"MMATE_GC_FREEZE": off}).gc_freeze is False
    file = tmp_path / "mmate.toml"
    file.write_text("[mmate]\ngc_freeze = false\n")
    assert resolve(file=file, env={}).gc_freeze is False
    assert resolve(file=file, env={}, flags={"gc_freeze": "on"}).gc_freeze is True


def test_invalid_file(tmp_path: Path) -> None:
    file = tmp_path / "mmate.toml"
    file.write_text("[mmate]\nprefetsh = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'prefetsh'"):
        resolve(file=file, env={})
    file.write_text("[mmate]\nprefetch = true\n")
    with pytest.raises(ConfigError, match="key prefetch: write a whole number"):
        resolve(file=file, env={})
    file.write_text("prefetch = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve(file=file, env={})


def test_a_bad_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(env={"MMATE_URL": "http://user:s3cret@host/"})
    assert "s3cret" not in str(caught.value)


def test_a_file_without_an_mmate_table_is_read_at_its_top_level(tmp_path: Path) -> None:
    file = tmp_path / "mmate.toml"
    file.write_text('prefetch = 5\nhealth_port = "off"\nlog_level = "debug"\n')
    cfg = resolve(file=file, env={})
    assert (cfg.prefetch, cfg.health_port, cfg.log_level) == (5, None, "DEBUG")
