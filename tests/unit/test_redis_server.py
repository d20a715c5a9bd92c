"""gearcam.redis_server: a real redis-server started, used and stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from gearcam import redis_server
from gearcam.errors import OperatorError
from gearcam.redis_server import EmbeddedRedis, find_redis_server, server_version


def test_the_server_found_is_at_least_6_2() -> None:
    assert server_version(find_redis_server())[:2] >= (6, 2)


def test_it_answers_on_loopback_and_removes_its_directory_on_stop() -> None:
    server = EmbeddedRedis()
    server.start()
    directory = server.dir
    try:
        client = server.client()
        assert client.ping()
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert server.url == f"redis://127.0.0.1:{server.port}"
    finally:
        server.stop()
    assert not directory.exists()


def test_a_password_is_required_when_set() -> None:
    with EmbeddedRedis(password="pw") as server:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, retry=None).ping()
        assert redis.Redis.from_url(server.url).ping()


def test_a_unix_socket_url_reaches_it() -> None:
    with EmbeddedRedis(unixsocket=True) as server:
        assert server.url.startswith("unix://")
        assert redis.Redis.from_url(server.url).ping()


def test_data_survives_a_restart_in_a_given_directory(tmp_path: Path) -> None:
    with EmbeddedRedis(dir=tmp_path, save_on_stop=True) as server:
        server.client().set("kept", "yes")
    assert (tmp_path / "dump.rdb").exists()
    with EmbeddedRedis(dir=tmp_path) as server:
        assert server.client().get("kept") == b"yes"


def test_no_server_anywhere_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(redis_server, "_valkey_binary", lambda: None)
    with pytest.raises(OperatorError, match="apt-get install redis-server"):
        find_redis_server()


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match="exited at start"):
        EmbeddedRedis(dir=tmp_path, config={"maxmemory": "not-a-size"}).start()
