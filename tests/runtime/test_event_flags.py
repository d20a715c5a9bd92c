"""The key events need `notify-keyspace-events` on the backing Redis: the runtime keeps them on or says why not.

Memory's coherence and every Gears registration trust that a write sends an event. A Redis that
sends none (the flags off, and a runtime user that may not turn them on) must stop the runtime at
start with the fix, never leave it serving what memory holds: before this, `DEL t` through such a
runtime left `AI.TENSORGET t` answering the deleted tensor.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvloop

from gearcam.runtime.keyevents import REQUIRED_FLAGS, KeyEvents, keep_required_flags, missing_flags
from gearcam.runtime.relay import Address, BackendLink
from tests.conftest import free_port
from tests.runtime.conftest import ROOT, Backing, Runtime, seen_soon

PASSWORD = "pw"
# A KeysReader hooking GET on keymiss: RedisGears subscribes to key misses for it.
KEYMISS_HOOK = ("GB().foreach(lambda x: override_reply('no such key'))"
                ".register(eventTypes=['keymiss'], commands=['get'], mode='sync')")  # fmt: skip


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Backing]:
    """A redis-server of its own, with notify-keyspace-events as Redis ships it (off)."""
    backing = Backing(free_port(), tmp_path)
    backing.start()
    yield backing
    backing.stop()


def _user_without_config(backing: Backing) -> str:
    admin = redis.Redis(port=backing.port)
    admin.execute_command("ACL", "SETUSER", "rt", "reset", "on", f">{PASSWORD}", "~*", "&*", "+@all", "-config")
    admin.close()
    return f"redis://rt:{PASSWORD}@127.0.0.1:{backing.port}"


def _flags(backing: Backing) -> str:
    admin = redis.Redis(port=backing.port, decode_responses=True)
    try:
        return str(admin.config_get("notify-keyspace-events")["notify-keyspace-events"])
    finally:
        admin.close()


def test_missing_and_kept_flags_read_redis_notation() -> None:
    assert missing_flags("") == REQUIRED_FLAGS
    assert missing_flags("AKE") == ""  # A stands for g$lshzxet
    assert missing_flags("KA") == "E"
    assert missing_flags("g$lshzxetE") == ""
    config = [b"CONFIG", b"SET", b"maxmemory", b"0", b"NOTIFY-KEYSPACE-EVENTS", b"K"]
    kept = keep_required_flags(config)
    assert kept[:5] == config[:5] and missing_flags(kept[5].decode()) == "" and "K" in kept[5].decode()
    assert keep_required_flags([b"CONFIG", b"SET", b"maxmemory", b"0"]) == [b"CONFIG", b"SET", b"maxmemory", b"0"]
    assert "m" in keep_required_flags([b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA"], "Egm")[3].decode()


def test_a_user_that_may_not_turn_the_events_on_stops_the_runtime_at_start(bare: Backing) -> None:
    url = _user_without_config(bare)
    done = subprocess.run(
        [sys.executable, "-m", "gearcam.runtime", "--redis-url", url, "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert error, done.stderr[-2000:]
    assert "notify-keyspace-events" in error[-1] and REQUIRED_FLAGS in error[-1] and "+config|get" in error[-1]
    assert "NOPERM" in error[-1]  # Redis' own reason
    keys = redis.Redis(port=bare.port).keys("gearcam:tmp:*")
    assert keys == []  # the probe's key is gone


def test_a_user_without_config_is_served_where_the_events_were_turned_on_for_it(bare: Backing) -> None:
    # A managed Redis: CONFIG refused, the events set by its operator. The runtime sees a probe's
    # events arrive and serves; a DEL through it is seen by the next AI read.
    redis.Redis(port=bare.port).config_set("notify-keyspace-events", "KEA")
    runtime = Runtime(free_port(), _user_without_config(bare))
    runtime.start()
    try:
        client = runtime.client()
        client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
        assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [b"1"]
        assert client.delete("t") == 1
        with pytest.raises(redis.ResponseError, match="tensor key is empty"):
            client.execute_command("AI.TENSORGET", "t", "VALUES")
        client.close()
    finally:
        runtime.stop()
    assert "cannot be read" in runtime.output() and "NOPERM" in runtime.output()


def test_a_client_turning_the_events_off_through_the_runtime_does_not_blind_it(bare: Backing) -> None:
    runtime = Runtime(free_port(), bare.url)
    runtime.start()
    try:
        client = runtime.client()
        assert client.config_set("notify-keyspace-events", "") is True
        assert missing_flags(_flags(bare)) == ""
        client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CONFIG", "SET", "notify-keyspace-events", "K", "maxmemory", "0")
        pipe.delete("t")
        pipe.execute_command("AI.TENSORGET", "t", "VALUES")
        replies = pipe.execute(raise_on_error=False)
        assert replies[:2] == [b"OK", 1]
        assert isinstance(replies[2], redis.ResponseError) and "tensor key is empty" in str(replies[2])
        assert "K" in _flags(bare) and missing_flags(_flags(bare)) == ""
        client.close()
    finally:
        runtime.stop()


def test_a_keymiss_hook_keeps_its_events_when_a_client_sets_the_flags(bare: Backing) -> None:
    # RedisGears' keymiss subscription holds whatever notify-keyspace-events says; here `m` stays in
    # what a client sets through the runtime once a KeysReader hooks commands on keymiss.
    runtime = Runtime(free_port(), bare.url)
    runtime.start()
    try:
        client = runtime.client()
        assert client.execute_command("RG.PYEXECUTE", KEYMISS_HOOK) == b"OK"
        assert "m" in _flags(bare)
        assert client.config_set("notify-keyspace-events", "KEA") is True
        assert "m" in _flags(bare) and missing_flags(_flags(bare)) == ""
        assert client.get("absent") == b"no such key"
        client.close()
    finally:
        runtime.stop()


def test_a_keymiss_hook_registers_where_the_runtime_may_not_touch_the_flags(bare: Backing) -> None:
    # RedisGears hooks whatever CONFIG allows; here the registration stands, the log says what to set,
    # and misses reach it once the operator sets `m`.
    admin = redis.Redis(port=bare.port)
    admin.config_set("notify-keyspace-events", "KEA")
    runtime = Runtime(free_port(), _user_without_config(bare))
    runtime.start()
    try:
        client = runtime.client()
        assert client.execute_command("RG.PYEXECUTE", KEYMISS_HOOK) == b"OK"
        assert client.get("absent") is None  # no `m`: no miss seen
        admin.config_set("notify-keyspace-events", "KEAm")
        assert client.get("absent") == b"no such key"
        client.close()
    finally:
        runtime.stop()
        admin.close()
    assert "sees key misses only where" in runtime.output() and "+config|get +config|set" in runtime.output()


def test_events_turned_off_around_the_runtime_are_turned_on_again(bare: Backing) -> None:
    # Straight on the backing Redis, not through the runtime: the flags are read again every
    # flags_check_s; when off, the subscription starts over (turning them on) and on_ready runs, which
    # makes memory forget what it knew.
    seen: list[tuple[str, bytes]] = []
    readies: list[None] = []

    async def scenario() -> None:
        address = Address(host="127.0.0.1", port=bare.port)
        events = KeyEvents(address, 2.0, flags_check_s=0.2)
        events.add_listener(lambda event, db, key: seen.append((event, key)))
        events.on_ready.append(lambda: readies.append(None))
        events.require("m")  # as a Gears keymiss hook asks: kept on with the rest
        events.start()
        admin = await BackendLink.open(address, 2.0)
        try:
            await asyncio.wait_for(events.ready.wait(), 10)
            await admin.call(b"SET", b"gearcam:tmp:x", b"v")  # the runtime's own key: no listener hears it
            await admin.call(b"SET", b"k1", b"v")
            assert await seen_soon(seen, ("set", b"k1"))
            assert not any(key.startswith(b"gearcam:tmp:") for _, key in seen)
            await admin.call(b"CONFIG", b"SET", b"notify-keyspace-events", b"")
            for _ in range(500):
                if len(readies) >= 2:
                    break
                await asyncio.sleep(0.01)
            assert len(readies) >= 2, "the subscription did not start over after the flags were turned off"
            reply = await admin.call(b"CONFIG", b"GET", b"notify-keyspace-events")
            assert missing_flags(reply[1].decode(), events.required) == ""
            await admin.call(b"SET", b"k2", b"v")
            assert await seen_soon(seen, ("set", b"k2"))
            await admin.call(b"CONFIG", b"SET", b"notify-keyspace-events", REQUIRED_FLAGS.encode())  # `m` off
            for _ in range(500):
                if len(readies) >= 3:
                    break
                await asyncio.sleep(0.01)
            reply = await admin.call(b"CONFIG", b"GET", b"notify-keyspace-events")
            assert "m" in reply[1].decode(), "a class required since the start was left off"
        finally:
            await admin.close()
            await events.stop()

    uvloop.run(scenario())
