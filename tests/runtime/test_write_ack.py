"""When the runtime answers an AI write (docs/runtime.md, "When a write is answered").

Where Redis' reply to a write would promise no more than its sending (no AOF, nothing that
may refuse it), the runtime answers an AI write once it is on its way to Redis; elsewhere
once Redis has it. `CLIENT PAUSE WRITE` on the backing Redis tells the two apart without
timing anything: while Redis holds writes back, only a write answered on sending can be
answered at all.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from gearcam.runtime.ai.write_ack import WriteAck, wait_reason
from tests.conftest import wait_for
from tests.runtime.conftest import (
    Backing,
    RawClient,
    Runtime,
    running_stack,
    silent_while_held,
    unix_stack,
    writes_held,
)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Backing, Runtime]]:
    with running_stack(tmp_path) as both:  # no AOF, no maxmemory: Redis' reply promises nothing more
        yield both


def _ack(client: redis.Redis) -> str:
    return str(client.info("modules")["ai_write_ack"])


def _tensorset(client: redis.Redis, key: str, value: int) -> object:
    return client.execute_command("AI.TENSORSET", key, "INT32", 1, "VALUES", value)


def test_without_an_aof_a_write_is_answered_before_redis_has_it(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1)  # a new key takes the checked commit, which always waits; `t` is known now
    assert _ack(client) == "sent"
    raw = RawClient("127.0.0.1", runtime.port)
    with writes_held(backing) as direct:
        before = direct.get("t")
        assert raw.call("AI.TENSORSET", "t", "INT32", 1, "VALUES", 2) == b"OK"
        assert raw.call("AI.TENSORGET", "t", "VALUES") == [2]  # the writer reads its own write
        assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [2]  # so do others, through the runtime
        assert direct.get("t") == before, "Redis was holding writes back: the OK came before Redis had the write"
    # The client's relayed commands come after its write: its GET sees what the OK promised.
    after = raw.call("GET", "t")
    assert after != before and direct_get(backing, "t") == after
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [2]
    raw.close()


def direct_get(backing: Backing, key: str) -> bytes | None:
    with redis.Redis(port=backing.port) as direct:
        value: bytes | None = direct.get(key)
        return value


@pytest.mark.parametrize(
    ("redis_args", "runtime_args"),
    [(["--appendonly", "yes"], []), ([], ["--write-ack", "stored"])],
    ids=["appendonly-yes", "write-ack-stored"],
)
def test_a_write_waits_for_redis_where_its_reply_promises_more_or_when_told(
    tmp_path: Path, redis_args: list[str], runtime_args: list[str]
) -> None:
    with running_stack(tmp_path, redis_args, runtime_args) as (backing, runtime):
        client = runtime.client()
        _tensorset(client, "t", 1)
        assert _ack(client) == "stored"
        raw = RawClient("127.0.0.1", runtime.port)
        with writes_held(backing):
            raw.sock.sendall(_TENSORSET_T_7)
            assert silent_while_held(raw), "the write was answered while Redis was holding it back"
        assert raw.read() == b"OK"
        raw.close()


def test_config_set_through_the_runtime_takes_effect_from_the_next_write(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1)
    assert _ack(client) == "sent"

    client.config_set("appendonly", "yes")  # relayed: the very next write waits for Redis
    raw = RawClient("127.0.0.1", runtime.port)
    with writes_held(backing):
        raw.sock.sendall(_TENSORSET_T_7)
        assert silent_while_held(raw)
    assert raw.read() == b"OK"
    assert _ack(client) == "stored"
    client.config_set("appendonly", "no")
    wait_for(lambda: _ack(client) == "sent", "write-behind again once the AOF is off")

    client.config_set("maxmemory", "1")  # noeviction: Redis refuses writes, and the write's reply says so
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        _tensorset(client, "t", 4)
    client.config_set("maxmemory", "0")
    client.config_set("maxmemory-policy", "allkeys-lru")  # Redis evicts instead of refusing
    client.config_set("maxmemory", "100mb")
    wait_for(lambda: _ack(client) == "sent", "write-behind under an evicting policy")
    client.config_set("maxmemory", "0")

    client.config_set("min-replicas-to-write", "1")  # no replica: Redis refuses writes (NOREPLICAS)
    with pytest.raises(redis.ResponseError, match="^NOREPLICAS"):
        _tensorset(client, "t", 5)
    client.config_set("min-replicas-to-write", "0")
    wait_for(lambda: _ack(client) == "sent", "write-behind once no replica is required")
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [7]
    raw.close()


def test_replicaof_through_the_runtime_makes_writes_wait_and_get_readonly(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1)
    client.execute_command("REPLICAOF", "127.0.0.1", "1")  # a master that is not there: role slave, read-only
    try:
        assert _ack(client) == "stored"
        with pytest.raises(redis.exceptions.ReadOnlyError):
            _tensorset(client, "t", 2)
    finally:
        client.execute_command("REPLICAOF", "NO", "ONE")
    wait_for(lambda: _ack(client) == "sent", "write-behind once a master again")
    assert _tensorset(client, "t", 3) == b"OK"


def test_a_write_redis_refuses_after_its_answer_is_withdrawn_and_later_writes_wait(
    pair: tuple[Backing, Runtime],
) -> None:
    backing, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1)
    direct = redis.Redis(port=backing.port)
    # Behind the runtime's back: it learns of it when it next reads Redis' settings (every few
    # seconds) or when a write is refused. The write below almost always comes first; if the
    # runtime read the settings just before it, the write is refused outright: try again.
    for _ in range(5):
        wait_for(lambda: _ack(client) == "sent", "write-behind")
        direct.config_set("maxmemory", "1")
        try:
            reply = _tensorset(client, "t", 2)
        except redis.exceptions.OutOfMemoryError:
            direct.config_set("maxmemory", "0")
            continue
        assert reply == b"OK"
        break
    else:
        pytest.fail("the runtime read Redis' settings before every write: nothing was written behind")
    wait_for(lambda: int(client.info("modules")["ai_writes_refused_after_ack"]) == 1, "the refusal counted")
    assert _ack(client) == "stored"
    # Memory forgot the value Redis refused: every read gets what Redis has.
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [1]
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        _tensorset(client, "t", 3)  # answered only once Redis has it, so its refusal is the reply
    assert "refused a write already acknowledged" in runtime.output()
    direct.config_set("maxmemory", "0")
    wait_for(lambda: _ack(client) == "sent", "write-behind again after the next settings check", timeout=30)
    direct.close()


def test_wait_reason_reads_what_a_real_info_says(pair: tuple[Backing, Runtime]) -> None:
    backing, _ = pair
    raw = RawClient("127.0.0.1", backing.port)
    info = raw.call("INFO")
    raw.close()
    assert isinstance(info, bytes)
    assert wait_reason(info) is None
    assert "MISCONF" in str(wait_reason(info.replace(b"rdb_last_bgsave_status:ok", b"rdb_last_bgsave_status:err")))
    assert "LOADING" in str(wait_reason(info.replace(b"loading:0", b"loading:1")))
    assert "AOF" in str(wait_reason(info.replace(b"aof_enabled:0", b"aof_enabled:1")))
    assert wait_reason(b"") is not None, "an INFO without the fields it needs must not allow write-behind"

    acks = WriteAck()
    asked_at = acks.epoch  # an INFO on its way when a relayed CONFIG SET is sent ...
    acks.suspend("CONFIG was sent to the backing Redis")
    acks.learn(info, asked_at)  # ... may predate the change: it must not end the wait
    assert not acks.behind
    acks.learn(info, acks.epoch)
    assert acks.behind
    acks.refused_write(b"t", Exception("OOM command not allowed"))
    acks.learn(info, acks.epoch)  # after a refusal only the periodic check ends the wait
    assert not acks.behind and acks.refused == 1
    acks.learn(info, acks.epoch, periodic=True)
    assert acks.behind


def test_a_write_answered_behind_is_applied_though_its_client_hangs_up_at_once(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    sock = socket.create_connection(("127.0.0.1", runtime.port), timeout=30)
    sock.sendall(_TENSORSET_T_7.replace(b"$1\r\n7", b"$1\r\n1"))  # a new key: the checked commit; `t` known now
    assert sock.recv(16) == b"+OK\r\n"
    with writes_held(backing):
        before = direct_get(backing, "t")
        sock.sendall(_TENSORSET_T_7)
        assert sock.recv(16) == b"+OK\r\n"
        sock.close()  # its link to Redis must not close before Redis has read the write
        time.sleep(0.5)  # the runtime sees the hang-up while Redis still holds the write back
    wait_for(lambda: direct_get(backing, "t") != before, "Redis applying the write of a client now gone")
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [7]


_TENSORSET_T_7 = b"*6\r\n$12\r\nAI.TENSORSET\r\n$1\r\nt\r\n$5\r\nINT32\r\n$1\r\n1\r\n$6\r\nVALUES\r\n$1\r\n7\r\n"


def test_a_300_kb_tensor_is_answered_behind_over_a_unix_socket(tmp_path: Path) -> None:
    """A unix socket's default send buffer (208 KB) cannot take such a write while Redis is not reading,
    so its answer waited for Redis; the runtime's unix links get a larger one (relay.tune_link)."""
    with unix_stack(tmp_path) as (backing, runtime):
        blob = np.arange(75_000, dtype=np.float32).tobytes()  # 300,000 bytes
        raw = RawClient("127.0.0.1", runtime.port)
        assert raw.call("AI.TENSORSET", "t", "FLOAT", 75_000, "BLOB", b"\0" * len(blob)) == b"OK"
        assert backing.proc is not None
        backing.proc.send_signal(signal.SIGSTOP)  # Redis reads nothing: the write must fit in the kernel's buffer
        try:
            assert raw.call("AI.TENSORSET", "t", "FLOAT", 75_000, "BLOB", blob) == b"OK"
        finally:
            backing.proc.send_signal(signal.SIGCONT)
        assert raw.call("AI.TENSORGET", "t", "BLOB") == blob
        assert isinstance(length := raw.call("STRLEN", "t"), int) and length > len(blob)  # Redis has it too
        raw.close()
