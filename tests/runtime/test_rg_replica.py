"""Gears on a replica, as RedisGears: registrations replicated from the master are listed, nothing runs there
until it is promoted, and then its StreamReaders go on from the replicated consumer groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.runtime.conftest import running_stack
from tests.runtime.gears_helpers import counters, pyexecute, registrations, wait_for

COUNT_KEYS = "GB().filter(lambda r: r['key'] != 'n').foreach(lambda r: execute('INCR', 'n')).register(prefix='k:*')"
STREAM = "GB('StreamReader').foreach(lambda r: execute('INCR', 'seen')).register(prefix='s:*')"


def test_a_replicas_runtime_lists_the_masters_registrations_runs_nothing_and_takes_over_once_promoted(
    tmp_path: Path,
) -> None:
    (tmp_path / "master").mkdir()
    (tmp_path / "replica").mkdir()
    with running_stack(tmp_path / "master") as (backing, master_runtime):
        with running_stack(tmp_path / "replica", ["--replicaof", "127.0.0.1", str(backing.port)]) as (
            _,
            replica_runtime,
        ):
            master = redis.Redis(port=master_runtime.port, protocol=2, socket_timeout=30)
            replica = redis.Redis(port=replica_runtime.port, protocol=2, socket_timeout=30)
            wait_for(lambda: replica.info("replication")["master_link_status"] == "up", what="the replica in sync")
            pyexecute(master, COUNT_KEYS, "ID", "keys")
            pyexecute(master, STREAM, "ID", "streams")
            ids = sorted(r["id"] for r in registrations(master))
            wait_for(
                lambda: sorted(r["id"] for r in registrations(replica)) == ids, what="the registrations on the replica"
            )

            with pytest.raises(redis.ReadOnlyError):  # nothing flushed: the Gears sessions are not written again
                replica.flushall()
            for n in range(5):
                master.set(f"k:{n}", "x")
            master.xadd("s:0", {"v": "1"})
            wait_for(
                lambda: replica.get("n") == b"5" and replica.get("seen") == b"1",
                what="the master's results, replicated",
            )
            keys_reg = next(r for r in registrations(replica) if b"'keys'" in r["PD"])
            assert counters(replica, keys_reg["id"])["numTriggered"] == 0  # the replicated writes ran nothing here

            master_runtime.stop()  # the master goes; the replica is promoted and carries on
            assert replica.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
            replica.xadd("s:0", {"v": "2"})
            wait_for(lambda: replica.get("seen") == b"2", what="the StreamReader on the promoted replica")
            replica.set("k:9", "x")
            wait_for(lambda: replica.get("n") == b"6", what="the KeysReader on the promoted replica")
            assert "could not write the Gears sessions" not in replica_runtime.output()
