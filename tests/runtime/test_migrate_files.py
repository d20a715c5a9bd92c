"""`invoke migrate --rdb/--aof`: what a Redis with RedisAI and RedisGears kept on disk, copied into the runtime.

No Redis with the modules runs here, so the file is a real redis-server's dump.rdb (every plain
type in both of its encodings, TTLs, a second database, a stream with a consumer group and
pending entries) with the records such a Redis adds: RedisAI values in the documented format
(tests/runtime/rdb_payloads.py) and RedisGears' module aux data. A stock redis-server refuses
that file at start; the import reads it. Files of Redis 6 (RDB 9: ziplists, quicklists of
ziplists, the first stream layout) are built by hand from the same parts. Append-only files are
that RDB as a preamble followed by commands (Redis 6's appendonly.aof), and a real Redis 7
appendonlydir (manifest, base RDB, incremental commands) with RedisAI's records and commands added.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from gearcam import migrate
from gearcam.crc64 import crc64
from gearcam.errors import CallerError, OperatorError
from gearcam.migrate import import_aof, import_file, main
from gearcam.rdbfile import RdbFile
from gearcam.rdbformat import Cursor
from gearcam.redis_server import EmbeddedRedis
from gearcam.runtime.resp import encode_command
from tests.runtime import rdb_payloads as dump
from tests.runtime.models import add_model


def _fill(client: redis.Redis) -> None:
    """Every plain type, small (listpack, intset) and large (hash table, skiplist, quicklist), and a stream."""
    client.set("s", "hello")
    client.set("42", "a name Redis keeps as an integer")
    client.set("n", 12345)
    client.set("big", b"\x00\x01" * 40_000)  # compressed in the file
    client.set("ttl", "expires", px=600_000)
    client.rpush("l", *range(10))
    client.rpush("l:big", *[str(i) * 30 for i in range(2000)])
    client.sadd("set:ints", *range(10))
    client.sadd("set:small", "a", "b")
    client.sadd("set:big", *[f"m{i}" for i in range(1000)])
    client.zadd("z", {"a": 1.5, "b": -2})
    client.zadd("z:big", {f"m{i}": i / 3 for i in range(1000)})
    client.hset("h", mapping={"a": 1, "b": "x"})
    client.hset("h:big", mapping={f"f{i}": "v" * 100 for i in range(1000)})
    for i in range(300):
        client.xadd("camera:0", {"img": bytes(range(256)), "count": i})
    client.xgroup_create("camera:0", "g", id="0")
    client.xreadgroup("g", "c1", {"camera:0": ">"}, count=10)
    client.xreadgroup("g", "c2", {"camera:0": ">"}, count=5)
    client.xack("camera:0", "g", client.xrange("camera:0", count=1)[0][0])


def _snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Each key's value read back by its type (sets and hashes unordered), streams with their groups."""
    out: dict[bytes, Any] = {}
    for key in client.keys():
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            out[key] = sorted(client.hgetall(key).items())
        elif kind == b"stream":
            groups = client.xinfo_groups(key)
            out[key] = (
                client.xrange(key), groups,
                [sorted((c["name"], c["pending"]) for c in client.xinfo_consumers(key, g["name"])) for g in groups],
                [[(p["message_id"], p["consumer"], p["times_delivered"])
                  for p in client.xpending_range(key, g["name"], "-", "+", 100)] for g in groups],
            )  # fmt: skip
        else:
            out[key] = kind
    return out


_LIBRARY = "#!lua name=oldlib\nredis.register_function('hello', function() return 'from the old node' end)"


@pytest.fixture
def r(r: redis.Redis) -> Iterator[redis.Redis]:
    """The runtime's client; the function library the files carry is removed after (FLUSHALL keeps functions)."""
    yield r
    r.function_flush()


def _old_node_file(tmp_path: Path) -> tuple[bytes, dict[bytes, Any], dict[bytes, Any]]:
    """A real dump.rdb of _fill's keys (and one in database 2), with the snapshots of both databases."""
    directory = tmp_path / "old"
    directory.mkdir()
    with EmbeddedRedis(dir=directory) as server:
        client = server.client()
        _fill(client)
        other = redis.Redis(
            connection_pool=redis.ConnectionPool(**{**client.connection_pool.connection_kwargs, "db": 2})
        )
        other.set("in:db2", "yes")
        client.function_load(_LIBRARY)
        snapshots = _snapshot(client), _snapshot(other)
        client.save()
        other.close()
        client.close()
    return (directory / "dump.rdb").read_bytes(), *snapshots


_SCRIPT = "def f(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0]\n"
_FLOATS = np.array([1.5, 2.5], dtype="<f4").tobytes()


def _redisai_node_file(tmp_path: Path) -> tuple[Path, dict[bytes, Any], dict[bytes, Any]]:
    """The old node's file as a Redis with RedisAI and RedisGears wrote it: their records added."""
    plain, db0, db2 = _old_node_file(tmp_path)
    gears = dump.Fields().uint(1).string(b"StreamReader\0").uint(1).string(b"<a serialized registration>").uint(0)
    hour_from_now = int(time.time() * 1000) + 3_600_000
    records = (
        dump.key_record(b"t:v0", dump.tensor("FLOAT", [1, 2], _FLOATS, encver=0)),
        dump.key_record(b"t:ttl", dump.tensor("INT8", [3], b"\x01\x02\x03"), expires_at_ms=hour_from_now),
        dump.key_record(b"t:gone", dump.tensor("INT8", [1], b"\x01"), expires_at_ms=1_000),
        dump.key_record(b"m", dump.model("ONNX", add_model(), encver=3, tag="add", compress=True)),
        dump.key_record(b"script", dump.script(_SCRIPT, entry_points=["f"])),
        dump.key_record(b"json", dump.payload("ReJSON-RL", 3, dump.Fields().string(b"{}"))),
        dump.module_aux("GEARS_DT0", 4, gears),
    )
    path = tmp_path / "dump.rdb"
    path.write_bytes(dump.with_records(plain, *records, db=0))
    return path, db0, db2


def _import(path: Path, target: redis.Redis) -> None:
    with RdbFile(path) as rdb:
        import_file(rdb, target)


def _in_db(client: redis.Redis, db: int) -> redis.Redis:
    return redis.Redis(connection_pool=redis.ConnectionPool(**{**client.connection_pool.connection_kwargs, "db": db}))


def test_a_redisai_nodes_file_is_copied_key_by_key_into_the_runtime(
    tmp_path: Path, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, db0, db2 = _redisai_node_file(tmp_path)
    db2_client = _in_db(r, 2)
    # Batches cut by count (7 splits the file's keys unevenly) and by bytes (the 80 KB string, the big lists).
    monkeypatch.setattr(migrate, "_BATCH_BYTES", 50_000)
    try:
        with RdbFile(path) as rdb:
            summary = import_file(rdb, r, batch=7)
        assert dict(summary.copied) == {"tensors": 2, "models": 1, "scripts": 1}, summary.failed
        assert summary.plain == {"string": 6, "list": 2, "set": 3, "zset": 2, "hash": 2, "stream": 1}
        assert summary.expired == 1 and summary.functions == 1
        assert summary.failed == [(b"json", "a value of module type 'ReJSON-RL', which gearcam does not have")]
        assert len(summary.notes) == 1 and "RedisGears registrations" in summary.notes[0]

        ai_keys = {b"t:v0", b"t:ttl", b"m", b"script"}
        copied = _snapshot(r)
        assert {k: v for k, v in copied.items() if k not in ai_keys} == db0
        assert _snapshot(db2_client) == db2
        assert 500_000 < r.pttl("ttl") <= 600_000 and 3_500_000 < r.pttl("t:ttl") <= 3_600_000  # the same instant
        assert r.execute_command("AI.TENSORGET", "t:v0", "VALUES") == [b"1.5", b"2.5"]
        assert r.fcall("hello", 0) == b"from the old node"
        assert r.execute_command("AI.MODELGET", "m", "META")[5] == b"add"
        r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "t:v0", "t:v0", "OUTPUTS", 1, "out")
        assert r.execute_command("AI.TENSORGET", "out", "VALUES") == [b"3", b"5"]
        assert r.execute_command("AI.SCRIPTGET", "script", "META")[-1] == [b"f"]  # its entry points
        # The stream's consumer group goes on where the old node left it.
        assert r.xreadgroup("g", "c1", {"camera:0": ">"}, count=1)[0][1][0][1][b"count"] == b"15"

        with RdbFile(path) as rdb:
            again = import_file(rdb, r)
        busy = [key for key, why in again.failed if why == "BUSYKEY Target key name already exists."]
        assert len(busy) == 20 and len(again.failed) == 22  # and the library, already loaded
        with RdbFile(path) as rdb:
            replaced = import_file(rdb, r, replace=True)
        assert len(replaced.failed) == 1 and r.xinfo_groups("camera:0")[0]["pending"] == 14
    finally:
        db2_client.flushdb()
        db2_client.close()


def test_a_stock_redis_server_refuses_the_file_and_the_embedded_start_names_the_import(tmp_path: Path) -> None:
    path, _, _ = _redisai_node_file(tmp_path)
    directory = tmp_path / "data"
    directory.mkdir()
    path.rename(directory / "dump.rdb")
    with pytest.raises(OperatorError, match=r"invoke migrate --rdb") as caught:
        EmbeddedRedis(dir=directory).start()
    assert "module data I can't load" in str(caught.value)  # Redis' own words follow
    assert (directory / "dump.rdb").exists()  # nothing lost


def test_a_damaged_file_copies_nothing_and_says_what_is_wrong(tmp_path: Path, r: redis.Redis) -> None:
    path, _, _ = _redisai_node_file(tmp_path)
    whole = path.read_bytes()
    damaged = tmp_path / "damaged.rdb"
    damaged.write_bytes(whole[:5000] + bytes([whole[5000] ^ 0x40]) + whole[5001:])
    with pytest.raises(CallerError, match=r"checksum is [0-9a-f]{16}, the file says [0-9a-f]{16}.*nothing was copied"):
        _import(damaged, r)
    damaged.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CallerError, match=r"altered or cut"):
        _import(damaged, r)
    # Written with rdbchecksum no (a zero checksum), its last record damaged: the walk finds it before any copy.
    damaged.write_bytes(whole[:-9] + b"\x30" + b"\0" * 8)
    with pytest.raises(CallerError, match=r"unknown record type 48 .*nothing was copied"):
        _import(damaged, r)
    assert r.dbsize() == 0


def test_the_command_line_imports_a_file_and_exits_1_when_a_key_failed(
    tmp_path: Path, r: redis.Redis, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = _redisai_node_file(tmp_path)
    assert main(["--rdb", str(path), "--to", server_url]) == 1
    out = capsys.readouterr().out
    assert out.startswith("copied 2 tensors, 1 models, 1 scripts; 1 failed; 16 other keys copied (2 hash, 2 list,")
    assert (
        "1 expired in the file, not copied; 1 function libraries loaded" in out
        and "json: a value of module type 'ReJSON-RL'" in out
    )
    assert "note: dump.rdb holds RedisGears registrations" in out
    r.flushall()
    (tmp_path / "not.rdb").write_text("hello")
    assert main(["--rdb", str(tmp_path / "not.rdb"), "--to", server_url]) == 2
    assert "is not an RDB file" in capsys.readouterr().err


# -- Redis 6 files (RDB 9) --------------------------------------------------------------------------------------


def _ziplist(items: list[bytes]) -> bytes:
    """A ziplist of short strings, the list/hash/zset encoding of Redis before 7."""
    entries, previous = b"", 0
    for item in items:
        entry = bytes([previous, len(item)]) + item  # prevlen < 254, string of < 64 bytes
        entries += entry
        previous = len(entry)
    tail = 10 + len(entries) - previous if items else 10
    return struct.pack("<IIH", 10 + len(entries) + 1, tail, len(items)) + entries + b"\xff"


def _string(data: bytes) -> bytes:
    return dump.length(len(data)) + data


def _first_stream_layout(payload: bytes) -> bytes:
    """A Redis 7 stream's DUMP value (type 19) in the layout Redis 6 wrote (type 15): without the first id,
    the deletion mark, the entries added and each group's entries read."""
    cursor = Cursor(memoryview(payload[:-10]), "stream")
    assert cursor.byte() == 19
    out = bytearray()
    mark = cursor.pos

    def keep() -> None:
        nonlocal mark
        out.extend(payload[mark : cursor.pos])
        mark = cursor.pos

    for _ in range(cursor.number()):
        cursor.skip_string(), cursor.skip_string()
    cursor.number(), cursor.number(), cursor.number()
    keep()
    for _ in range(5):
        cursor.number()
    mark = cursor.pos
    groups = cursor.number()
    keep()
    for _ in range(groups):
        cursor.skip_string(), cursor.number(), cursor.number()
        keep()
        cursor.number()
        mark = cursor.pos
        for _ in range(cursor.number()):
            cursor.take(24), cursor.number()
        for _ in range(cursor.number()):
            cursor.skip_string(), cursor.take(8)
            for _ in range(cursor.number()):
                cursor.take(16)
        keep()
    return bytes(out)


def test_a_redis_6_file_with_ziplists_and_the_first_stream_layout_is_read(
    tmp_path: Path, r: redis.Redis, embedded_redis: EmbeddedRedis
) -> None:
    source = embedded_redis.client()
    try:
        source.xadd("st:src", {"a": 1}, id="1-1")
        source.xadd("st:src", {"a": 2}, id="2-1")
        source.xgroup_create("st:src", "g", id="0")
        source.xreadgroup("g", "c", {"st:src": ">"}, count=1)
        stream = source.dump("st:src")
    finally:
        source.delete("st:src")
        source.close()
    records = [
        b"\x0e" + _string(b"quick") + dump.length(1) + _string(_ziplist([b"a", b"b", b"c"])),  # quicklist
        b"\x0a" + _string(b"zl") + _string(_ziplist([b"x", b"y"])),  # list as a ziplist
        b"\x0d" + _string(b"hz") + _string(_ziplist([b"f", b"v", b"g", b"w"])),  # hash as a ziplist
        b"\x0c" + _string(b"zz") + _string(_ziplist([b"m", b"2.5", b"n", b"3"])),  # zset as a ziplist
        b"\x01" + _string(b"plain:list") + dump.length(2) + _string(b"p") + _string(b"q"),
        b"\x03" + _string(b"old:zset") + dump.length(2) + _string(b"i") + b"\x03inf" + _string(b"k") + b"\xff",
        b"\x0f" + _string(b"st") + _first_stream_layout(stream),
        dump.key_record(b"t", dump.tensor("INT8", [2], b"\x07\x08")),
    ]
    body = b"REDIS0009\xfa" + _string(b"redis-ver") + _string(b"6.2.6") + b"\xfe\x00" + b"".join(records) + b"\xff"
    path = tmp_path / "redis6.rdb"
    path.write_bytes(body + struct.pack("<Q", crc64(body)))

    with RdbFile(path) as rdb:
        summary = import_file(rdb, r)
        assert rdb.contents.aux == {"redis-ver": "6.2.6"}
    assert not summary.failed and summary.copied["tensors"] == 1
    assert r.lrange("quick", 0, -1) == [b"a", b"b", b"c"] and r.lrange("zl", 0, -1) == [b"x", b"y"]
    assert r.hgetall("hz") == {b"f": b"v", b"g": b"w"} and r.lrange("plain:list", 0, -1) == [b"p", b"q"]
    assert r.zrange("zz", 0, -1, withscores=True) == [(b"m", 2.5), (b"n", 3.0)]
    assert r.zrange("old:zset", 0, -1, withscores=True) == [(b"i", float("inf")), (b"k", float("-inf"))][::-1]
    assert [entry_id for entry_id, _ in r.xrange("st")] == [b"1-1", b"2-1"]
    assert r.xpending("st", "g")["pending"] == 1
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [7, 8]


# -- append-only files ------------------------------------------------------------------------------------------


def _commands(*commands: tuple[object, ...]) -> bytes:
    return b"".join(
        b"".join(encode_command([a if isinstance(a, bytes) else str(a).encode() for a in c])) for c in commands
    )


_AFTER_THE_SNAPSHOT = (
    ("SELECT", 0),
    ("SET", "after", "1"),
    ("AI.TENSORSET", "t:aof", "FLOAT", 1, 2, "VALUES", 3, 4),
    ("AI.MODELSTORE", "m:aof", "ONNX", "CPU", "BLOB", add_model()),
    ("MULTI",), ("INCR", "counter"), ("AI.TENSORSET", "t:tx", "INT8", 1, "VALUES", 5), ("EXEC",),
    ("RG.INNERREGISTER", b"<a pickled registration>"),
    ("DEL", "s"),
    ("LPUSH", "42", "x"),  # WRONGTYPE: reported, the rest goes on
    ("AI.MODELEXECUTE", "m:aof", "INPUTS", 2, "t:aof", "t:aof", "OUTPUTS", 1, "out:aof"),
    ("SELECT", 2),
    ("SET", "in:db2:aof", "x"),
)  # fmt: skip


def test_a_redis_6_append_only_file_is_its_snapshot_then_its_commands_replayed(
    tmp_path: Path, r: redis.Redis, capsys: pytest.CaptureFixture[str], server_url: str
) -> None:
    snapshot, db0, _ = _redisai_node_file(tmp_path)
    aof = tmp_path / "appendonly.aof"
    cut = _commands(("SET", "never", "written"))[:-5]  # Redis stopped while writing it
    aof.write_bytes(snapshot.read_bytes() + _commands(*_AFTER_THE_SNAPSHOT) + cut)
    db2_client = _in_db(r, 2)
    try:
        summary = import_aof(aof, r)
        assert dict(summary.copied) == {"tensors": 2, "models": 1, "scripts": 1}  # the snapshot's
        assert summary.gears_commands == 1 and summary.replayed == len(_AFTER_THE_SNAPSHOT) - 2
        assert [(where, why) for where, why in summary.failed if where != b"json"] == [
            (
                b"command 11 of appendonly.aof (LPUSH)",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            )
        ]
        assert r.get("after") == b"1" and r.get("counter") == b"1" and r.exists("s", "never") == 0
        assert r.execute_command("AI.TENSORGET", "t:tx", "VALUES") == [5]
        assert r.execute_command("AI.TENSORGET", "out:aof", "VALUES") == [b"6", b"8"]
        assert r.execute_command("AI.TENSORGET", "t:v0", "VALUES") == [b"1.5", b"2.5"]  # from the snapshot
        assert r.lrange("l:big", 0, -1) == db0[b"l:big"]
        assert db2_client.mget("in:db2", "in:db2:aof") == [b"yes", b"x"]
    finally:
        db2_client.flushdb()
        db2_client.close()
    r.flushall()
    r.function_flush()
    assert main(["--aof", str(aof), "--to", server_url]) == 1
    out = capsys.readouterr().out
    assert f"; {len(_AFTER_THE_SNAPSHOT) - 2} commands replayed" in out and "note: 1 RedisGears registration" in out


def test_a_redis_7_appendonlydir_is_read_in_its_manifests_order(tmp_path: Path, r: redis.Redis) -> None:
    directory = tmp_path / "node"
    directory.mkdir()
    with EmbeddedRedis(dir=directory, appendonly=True) as server:
        client = server.client()
        client.config_set("aof-timestamp-enabled", "yes")  # annotations between commands, which loading skips
        _fill(client)
        client.bgrewriteaof()  # the base: an RDB of what is there now
        while (
            client.info("persistence")["aof_rewrite_in_progress"] or client.info("persistence")["aof_rewrite_scheduled"]
        ):
            time.sleep(0.05)
        client.set("after:rewrite", "incremental")
        time.sleep(1.1)  # Redis annotates the first write of a new second
        client.rpush("l", "appended")
        expected = _snapshot(client)
        client.close()
    aofdir = directory / "appendonlydir"
    (base,) = aofdir.glob("*.base.rdb")
    (incremental,) = aofdir.glob("*.incr.aof")
    assert b"#TS:" in incremental.read_bytes()
    base.write_bytes(
        dump.with_records(base.read_bytes(), dump.key_record(b"t", dump.tensor("INT8", [1], b"\x09")), db=0)
    )
    with incremental.open("ab") as handle:
        handle.write(_commands(("AI.TENSORSET", "t:incr", "INT8", 1, "VALUES", 3)))

    summary = import_aof(aofdir, r)
    assert not summary.failed and summary.copied["tensors"] == 1 and summary.replayed >= 3
    copied = _snapshot(r)
    assert {k: v for k, v in copied.items() if k not in (b"t", b"t:incr")} == expected
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [9]
    assert r.execute_command("AI.TENSORGET", "t:incr", "VALUES") == [3]


def test_a_damaged_append_only_file_copies_nothing(tmp_path: Path, r: redis.Redis) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(_commands(("SET", "a", "1")) + b"*2\r\n$3\r\nSET\r\n:5\r\n" + _commands(("SET", "b", "2")))
    with pytest.raises(CallerError, match=r"appendonly.aof: entry 2 is not a command .*nothing was copied"):
        import_aof(aof, r)
    aof.write_bytes(_commands(("SET", "a", "1")) + b"?garbage\r\n")
    with pytest.raises(CallerError, match=r"is not a list of commands after command 1 .*nothing was copied"):
        import_aof(aof, r)
    aof.write_bytes(_commands(("SET", "a", "1")) + b"*2\r\n$3\r\nGET\r\n$1\r\nab\r\n")
    with pytest.raises(CallerError, match=r"entry 2 is not a command \(argument 2 is longer than its length\)"):
        import_aof(aof, r)
    (tmp_path / "appendonlydir").mkdir()
    with pytest.raises(CallerError, match=r"should hold one \*.manifest .*found none"):
        import_aof(tmp_path / "appendonlydir", r)
    assert r.dbsize() == 0


@pytest.mark.parametrize("preamble", [True, False], ids=["module values in its preamble", "AI commands"])
def test_an_embedded_start_on_an_old_nodes_aof_names_the_aof_import(tmp_path: Path, preamble: bool) -> None:
    snapshot, _, _ = _redisai_node_file(tmp_path)
    directory = tmp_path / "data"
    directory.mkdir()
    head = snapshot.read_bytes() if preamble else b""
    (directory / "appendonly.aof").write_bytes(head + _commands(("SELECT", 0), ("AI.TENSORSET", "t", "INT8", 1)))
    with pytest.raises(
        OperatorError, match=r"written by a Redis with modules .*`invoke migrate --aof <what you moved>`"
    ):
        EmbeddedRedis(dir=directory, appendonly=True).start()
