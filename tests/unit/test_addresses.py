"""gearcam.addresses: one place decides every address, from the configuration (and a running `invoke up`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearcam.addresses import redis_cli_args, resolve
from gearcam.config import load_settings
from gearcam.errors import CallerError


def settings(tmp_path: Path, **environ: str):  # type: ignore[no-untyped-def]
    return load_settings(yaml_path=tmp_path / "none.yaml", environ=environ)


def test_clients_follow_the_runtime_port_unless_redis_url_is_set(tmp_path: Path) -> None:
    moved = resolve(settings(tmp_path, GEARCAM_RUNTIME__PORT="6390"))
    assert moved.redis_url == "redis://localhost:6390" and moved.runtime_url == "redis://127.0.0.1:6390"
    assert "runtime.host and runtime.port" in moved.redis_from
    explicit = resolve(settings(tmp_path, GEARCAM_RUNTIME__PORT="6390", REDIS_URL="redis://node:7000"))
    assert explicit.redis_url == "redis://node:7000" and explicit.runtime_url == "redis://127.0.0.1:6390"


def test_a_running_up_is_found_from_a_shell_without_its_environment(tmp_path: Path) -> None:
    found = resolve(settings(tmp_path), "redis://127.0.0.1:6390", "the running `invoke up`, pid 7")
    assert found.describe_redis() == "redis://127.0.0.1:6390 (the running `invoke up`, pid 7)"
    assert (
        resolve(settings(tmp_path, REDIS_URL="redis://node:1"), "redis://127.0.0.1:6390").redis_url == "redis://node:1"
    )


def test_the_hits_page_is_next_to_the_page_of_all_unless_set(tmp_path: Path) -> None:
    a = resolve(settings(tmp_path, GEARCAM_WEB__PORT="4000"))
    assert (a.all_page, a.hits_page) == ("http://localhost:4000/", "http://localhost:4001/")
    assert resolve(settings(tmp_path, GEARCAM_WEB__HITS_PORT="5000")).web_hits_port == 5000


def test_redis_cli_gets_host_port_db_user_and_tls_and_the_password_only_in_its_environment() -> None:
    assert redis_cli_args("rediss://bob:p%40ss@node:6390/3") == (
        ["-h", "node", "-p", "6390", "--tls", "-n", "3", "--user", "bob"],
        {"REDISCLI_AUTH": "p@ss"},
    )
    assert redis_cli_args("unix:///run/redis.sock") == (["-s", "/run/redis.sock"], {})
    with pytest.raises(CallerError, match="fix REDIS_URL"):
        redis_cli_args("http://node")


def test_the_notifier_publishes_to_the_loopback_mosquitto_unless_events_mqtt_url_names_a_broker(
    tmp_path: Path,
) -> None:
    local = resolve(settings(tmp_path, GEARCAM_EVENTS__BROKER_PORT="1999"))
    assert (local.mqtt_url, local.broker_port) == ("mqtt://127.0.0.1:1999", 1999)
    assert local.describe_mqtt() == "mqtt://127.0.0.1:1999 (the loopback mosquitto, events.broker_port)"
    remote = resolve(settings(tmp_path, GEARCAM_EVENTS__MQTT_URL="mqtt://ha:secret@broker.lan:1883"))
    assert remote.broker_port is None and remote.mqtt_url == "mqtt://ha:secret@broker.lan:1883"
    assert remote.describe_mqtt() == "mqtt://ha:***@broker.lan:1883 (events.mqtt_url)"
