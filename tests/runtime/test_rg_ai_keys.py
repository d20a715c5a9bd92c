"""Gears code sees stored tensors and models as RedisGears sees RedisAI's keys, and the server it runs in as clients do.

Inside Redis, a KeysReader record of a RedisAI key says `type: 'module'` with no value, `execute('TYPE')`
answers `AI_TENSOR`, `SCAN ... TYPE string` leaves them out, and `INFO`, `MODULE LIST` and `CONFIG GET
port` describe the server the modules are loaded in. The backing Redis stores them as strings, and its
port is not the runtime's (gearcam/runtime/gears/ai_keys.py, commands/core.py amend_for_gears).
"""

from __future__ import annotations

import ast
from typing import Any

import redis

from tests.runtime.conftest import Runtime
from tests.runtime.gears_helpers import pyexecute, rg
from tests.runtime.models import add_model

__all__ = ["rg"]


def _stored(client: redis.Redis) -> None:
    client.execute_command("AI.TENSORSET", "aik:t", "FLOAT", 2, "VALUES", 1, 2)
    client.execute_command("AI.MODELSTORE", "aik:m", "ONNX", "CPU", "BLOB", add_model())
    client.set("aik:s", "plain")


def _run(client: redis.Redis, code: str) -> list[Any]:
    results, errors = pyexecute(client, code)
    assert errors == [], errors
    return [ast.literal_eval(r.decode()) for r in results]


def test_keys_reader_records_name_ai_objects_of_a_module_type_without_a_value(rg: redis.Redis) -> None:
    _stored(rg)
    records = _run(rg, "GB().map(lambda r: (r['key'], r['type'], r['value'])).run('aik:*')")
    assert sorted(records) == [("aik:m", "module", None), ("aik:s", "string", "plain"), ("aik:t", "module", None)]
    assert _run(rg, "GB().map(lambda r: (r['type'], r['value'])).run('aik:t', noScan=True)") == [("module", None)]
    assert rg.type("aik:t") == b"AI_TENSOR"  # unchanged for clients


def test_a_registration_filtered_by_key_type_tells_ai_objects_from_strings(rg: redis.Redis) -> None:
    for kind in ("module", "string"):
        code = f"GB().foreach(lambda r: execute('HINCRBY', 'aik-count', '{kind}:' + r['event'], 1))"
        assert pyexecute(rg, f"{code}.register(prefix='aik:*', keyTypes=['{kind}'], mode='sync')") == b"OK"
    _stored(rg)  # the runtime's own AI writes trigger nothing, as RedisAI's cause no key event
    assert rg.hgetall("aik-count") == {b"string:set": b"1"}
    rg.expire("aik:t", 100)  # sync registrations: each has run when the reply comes
    rg.rename("aik:m", "aik:m2")
    rg.append("aik:s", "!")
    assert rg.hgetall("aik-count") == {
        b"string:set": b"1", b"module:expire": b"1", b"module:rename_to": b"1", b"string:append": b"1",
    }  # fmt: skip


def test_gears_code_asks_type_and_scan_by_type_with_redisai_names(rg: redis.Redis) -> None:
    _stored(rg)
    code = (
        "def look(_):\n"
        "    types = [execute('TYPE', k) for k in ('aik:t', 'aik:m', 'aik:s', 'aik:none')]\n"
        "    def scan(*kind):\n"
        "        return sorted(k for k in execute('SCAN', '0', 'MATCH', 'aik:*', 'COUNT', '1000', *kind)[1])\n"
        "    return [types, scan('TYPE', 'AI_TENSOR'), scan('TYPE', 'ai__model'), scan('TYPE', 'string'), scan()]\n"
        "GB('ShardsIDReader').map(look).run()"
    )
    [[types, tensors, models, strings, every]] = _run(rg, code)
    assert types == ["AI_TENSOR", "AI__MODEL", "string", "none"]
    assert (tensors, models, strings) == (["aik:t"], ["aik:m"], ["aik:s"])
    assert every == ["aik:m", "aik:s", "aik:t"]


def test_type_in_a_sync_keys_reader_step_answers_redisai_names(rg: redis.Redis) -> None:
    """A sync KeysReader's step runs its commands inside transactions (docs/gears.md): TYPE too."""
    code = (
        "GB().foreach(lambda r: execute('SET', 'aik-seen', execute('TYPE', 'aik:t'))).register('aik:go', mode='sync')"
    )
    assert pyexecute(rg, code) == b"OK"
    rg.execute_command("AI.TENSORSET", "aik:t", "FLOAT", 1, "VALUES", 1)
    rg.set("aik:go", "1")
    assert rg.get("aik-seen") == b"AI_TENSOR"


def test_gears_code_reads_the_runtime_it_runs_in_from_info_module_list_and_config(
    rg: redis.Redis, runtime: Runtime
) -> None:
    code = (
        "def look(_):\n"
        "    modules = sorted(m[1] for m in execute('MODULE', 'LIST'))\n"
        "    server = execute('INFO', 'server')\n"
        "    port = [l for l in server.splitlines() if l.startswith('tcp_port:')]\n"
        "    info = execute('INFO', 'modules')\n"
        "    clients = execute('CLIENT', 'LIST')\n"
        "    return [modules, port, 'module:name=ai' in info, '# ai_versions' in info,\n"
        "            execute('CONFIG', 'GET', 'port'), execute('CONFIG', 'GET', 'maxmemory-policy'),\n"
        f"            'name=gearcam-runtime ' in clients, 'laddr=127.0.0.1:{runtime.port} ' in clients]\n"
        "GB('ShardsIDReader').map(look).run()"
    )
    [[modules, port, ai_listed, ai_sections, config_port, policy, internal, ours]] = _run(rg, code)
    assert modules == ["ai", "rg"]
    assert port == [f"tcp_port:{runtime.port}"]
    assert ai_listed and ai_sections
    assert config_port == ["port", str(runtime.port)]
    assert policy == ["maxmemory-policy", rg.config_get("maxmemory-policy")["maxmemory-policy"]]  # the backing's
    assert not internal and ours  # CLIENT LIST: clients where they reach the runtime, none of its own links
    assert (
        "ERR" in pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('MODULE', 'NOSUCH')).run()")[1][0].decode()
    )


def test_gears_code_cannot_set_the_runtimes_own_settings_in_the_backing_redis(
    rg: redis.Redis, runtime: Runtime, direct: redis.Redis
) -> None:
    """CONFIG SET port from Gears code would move the backing Redis (the runtime would lose it): refused, saying
    where to send it; the backing Redis' own parameters are set as before."""
    backing_port = direct.config_get("port")
    code = "GB('ShardsIDReader').map(lambda x: execute('CONFIG', 'SET', 'maxmemory-samples', '5', {})).run()"
    results, errors = pyexecute(rg, code.format("'PORT', '1'"))
    assert results == [] and "PORT is the gearcam runtime's own setting" in errors[0].decode()
    assert "send the CONFIG SET from a client" in errors[0].decode()
    assert direct.config_get("port") == backing_port and rg.config_get("port") == {"port": str(runtime.port)}
    assert pyexecute(rg, code.format("'maxmemory-eviction-tenacity', '10'")) == [[b"OK"], []]


def _notifications(client: redis.Redis, write: Any) -> list[tuple[bytes, bytes]]:
    """(channel, payload) of every keyspace and keyevent message a subscriber gets while `write` runs."""
    pubsub = client.pubsub()
    pubsub.psubscribe("__keyspace@0__:*", "__keyevent@0__:*")
    confirmed = 0
    while confirmed < 2:  # both subscriptions in place before the write
        message = pubsub.get_message(timeout=5.0)
        assert message is not None, "a subscription was not confirmed"
        confirmed += message["type"] == "psubscribe"
    write()
    seen = []
    while (message := pubsub.get_message(timeout=1.0)) is not None:
        seen.append((message["channel"], message["data"]))
    pubsub.close()
    return seen


def test_subscribers_get_no_notification_of_the_runtimes_own_keys(stack: tuple[Any, Runtime]) -> None:
    """An AI.TENSORSET of a new key writes it under a temporary key of the runtime's and renames it into place;
    a client subscribed through the runtime to keyspace notifications sees the events on the key it named,
    never the runtime's temporary key (RedisAI writes none), in RESP2 and RESP3 alike."""
    _, runtime = stack
    for protocol in (2, 3):
        client = redis.Redis(port=runtime.port, protocol=protocol, socket_timeout=30)
        client.config_set("notify-keyspace-events", "KEA")

        def write(client: redis.Redis = client, protocol: int = protocol) -> None:
            client.execute_command("AI.TENSORSET", f"aik:new{protocol}", "FLOAT", 1, "VALUES", 1)
            client.set(f"aik:plain{protocol}", "v")

        seen = _notifications(client, write)
        assert seen, "no notification at all"
        assert not [s for s in seen if b"gearcam:tmp:" in s[0] + s[1]], seen
        assert (b"__keyevent@0__:set", f"aik:plain{protocol}".encode()) in seen
        assert (f"__keyspace@0__:aik:new{protocol}".encode(), b"rename_to") in seen
        client.close()
