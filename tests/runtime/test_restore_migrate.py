"""`invoke migrate` (gearcam.migrate): a RedisAI server's keys copied into the runtime with SCAN, DUMP and RESTORE.

No Redis with RedisAI runs here and a stock redis-server refuses to RESTORE a module type
it does not know, so the old server is played by a small RESP server that answers the
four commands the copy sends (SCAN, TYPE, DUMP, PTTL) from a table of payloads built in
the documented format, page by page as Redis would. The copy's other side is the real
runtime; a second test copies between two databases of a real runtime, whose TYPE also
names the RedisAI types.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import hiredis
import numpy as np
import pytest
import redis

from gearcam.migrate import migrate
from tests.runtime import rdb_payloads as dump
from tests.runtime.conftest import Runtime
from tests.runtime.models import add_model

Table = dict[bytes, tuple[bytes, bytes | None, int]]  # key -> TYPE, DUMP payload, PTTL


def _encode(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_encode(v) for v in value)
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _OldServer(socketserver.StreamRequestHandler):
    table: Table = {}

    def handle(self) -> None:
        reader = hiredis.Reader()
        while data := self.request.recv(65536):
            reader.feed(data)
            while (request := reader.gets()) is not False:
                self.wfile.write(self.answer([bytes(a) for a in request]))

    def answer(self, args: list[bytes]) -> bytes:
        name, keys = args[0].upper(), sorted(self.table)
        if name == b"SCAN":  # two keys per page, cursor = index of the next page
            start = int(args[1])
            return _encode([b"%d" % (start + 2 if start + 2 < len(keys) else 0), keys[start : start + 2]])
        kind, payload, ttl = self.table.get(args[1], (b"none", None, -2))
        if name == b"TYPE":
            return b"+" + kind + b"\r\n"
        if name == b"DUMP":
            return _encode(payload)
        if name == b"PTTL":
            return _encode(ttl)
        return b"+OK\r\n"  # CLIENT SETINFO, which redis-py sends on connecting


@pytest.fixture
def old_redisai() -> Iterator[tuple[redis.Redis, Table]]:
    table: Table = {}
    handler = type("Handler", (_OldServer,), {"table": table})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = redis.Redis(port=server.server_address[1], socket_timeout=10, protocol=2)
    yield client, table
    client.close()
    server.shutdown()
    server.server_close()


def test_migrate_copies_tensors_models_and_scripts_and_reports_failures(
    old_redisai: tuple[redis.Redis, Table], r: redis.Redis
) -> None:
    source, table = old_redisai
    floats = np.array([1, 2], dtype="<f4").tobytes()
    table[b"t:old"] = (b"AI_TENSOR", dump.tensor("FLOAT", [2], floats, encver=0), -1)
    table[b"t:new"] = (b"AI_TENSOR", dump.tensor("FLOAT", [2], floats), 90_000)
    table[b"m"] = (b"AI__MODEL", dump.model("ONNX", add_model(), encver=2, tag="add"), -1)
    table[b"m:broken"] = (b"AI__MODEL", dump.model("ONNX", b"not onnx"), -1)
    table[b"s"] = (b"AI_SCRIPT", dump.script("def f(x):\n    return x\n", encver=1), -1)
    table[b"plain"] = (b"string", b"not asked for", -1)
    table[b"gone"] = (b"AI_TENSOR", None, -2)  # expired between SCAN and DUMP
    r.set("t:new", "in the way")

    summary = migrate(source, r)

    assert dict(summary.copied) == {"tensors": 1, "models": 1, "scripts": 1}
    assert summary.other == 1
    assert [(key, reason) for key, reason in summary.failed] == [
        (b"m:broken", "No graph was found in the protobuf."),
        (b"t:new", "BUSYKEY Target key name already exists."),
    ]
    assert r.execute_command("AI.TENSORGET", "t:old", "VALUES") == [b"1", b"2"]
    assert r.execute_command("AI.MODELGET", "m", "META")[5] == b"add"
    assert r.type("s") == b"AI_SCRIPT" and r.exists("plain", "m:broken") == 0
    assert "copied 1 tensors, 1 models, 1 scripts; 2 failed; 1 other keys" in summary.render()

    again = migrate(source, r, replace=True)
    assert again.copied["tensors"] == 2 and 0 < r.pttl("t:new") <= 90_000


def test_migrate_reads_the_source_with_scan_type_and_dump_of_a_real_server(runtime: Runtime, r: redis.Redis) -> None:
    old = redis.Redis.from_url(runtime.url + "/1")
    try:
        old.execute_command("AI.TENSORSET", "t", "INT8", 3, "VALUES", 1, 2, 3)
        old.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "TAG", "x", "BLOB", add_model())
        old.set("other", "left alone")
        summary = migrate(old, r)
    finally:
        old.flushdb()
        old.close()
    assert dict(summary.copied) == {"tensors": 1, "models": 1} and summary.other == 1 and not summary.failed
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [1, 2, 3]
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
