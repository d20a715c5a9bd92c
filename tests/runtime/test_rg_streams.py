"""StreamReader registrations: every entry once and in order, binary values, batches, trimming, failure policies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from tests.conftest import data_file, free_port
from tests.runtime.conftest import running_stack
from tests.runtime.gears_helpers import counters, pyexecute, registration, rg, unregister_all, wait_for

__all__ = ["rg"]

JPEG = data_file("chelsea.jpg")
FORWARD = (
    "GB('StreamReader').foreach(lambda r: execute('XADD', 'out', '*', 'src', r['key'], 'ref', r['id'], "
    "'v', r['value']['v'])).register(prefix='cam:*'{extra})"
)


def _out(client: redis.Redis, stream: str = "out") -> list[dict[bytes, bytes]]:
    return [fields for _, fields in client.xrange(stream)]


def test_stream_processing_delivers_every_entry_once_in_order(rg: redis.Redis, direct: redis.Redis) -> None:
    pyexecute(rg, FORWARD.format(extra=""))
    ids = [rg.xadd("cam:0", {"v": str(i)}) for i in range(20)]
    ids += [direct.xadd("cam:0", {"v": str(i)}) for i in range(20, 30)]
    wait_for(lambda: rg.xlen("out") == 30, what="30 forwarded entries")
    out = _out(rg)
    assert [f[b"v"] for f in out] == [str(i).encode() for i in range(30)]
    assert [f[b"ref"] for f in out] == ids
    assert {f[b"src"] for f in out} == {b"cam:0"}
    # RedisGears' count: the reader's first execution on a stream reads its pending entries (none), then
    # one execution an entry (batch=1).
    wait_for(lambda: counters(rg)["numSuccess"] == 31, what="31 successes")
    wait_for(lambda: rg.xlen("cam:0") == 0, what="trimStream=True trims what was processed")


def test_binary_values_stay_bytes_through_records_and_execute(rg: redis.Redis) -> None:
    code = (
        "def fwd(r):\n"
        "    img = r['value']['img']\n"
        "    execute('XADD', 'all', 'MAXLEN', '~', '1000', '*', 'img', img, 'kind', type(img).__name__, 'n', r['value']['n'])\n"
        "GB('StreamReader').foreach(fwd).register(prefix='camera:*')"
    )
    pyexecute(rg, code)
    frame = JPEG.read_bytes()
    rg.xadd("camera:0", {"img": frame, "n": "7"})
    wait_for(lambda: rg.xlen("all") == 1)
    (fields,) = _out(rg, "all")
    assert fields[b"img"] == frame
    assert fields[b"kind"] == b"bytearray" and fields[b"n"] == b"7"


def test_trim_stream_false_keeps_the_entries_and_streams_of_other_names_are_ignored(rg: redis.Redis) -> None:
    pyexecute(rg, FORWARD.format(extra=", trimStream=False"))
    rg.xadd("cam:1", {"v": "a"})
    rg.xadd("other", {"v": "b"})
    rg.xadd("cam:1", {"v": "c"})
    wait_for(lambda: rg.xlen("out") == 2)
    assert rg.xlen("cam:1") == 2 and rg.xlen("other") == 1
    (entry,) = rg.execute_command("RG.DUMPREGISTRATIONS")
    assert entry[7][0::2] == [
        b"mode", b"numTriggered", b"numSuccess", b"numFailures", b"numAborted", b"lastRunDurationMS",
        b"totalRunDurationMS", b"avgRunDurationMS", b"lastEstimatedLagMS", b"avgEstimatedLagMS", b"lastError",
        b"args", b"status",
    ]  # fmt: skip
    assert registration(rg)["RegistrationData"]["args"] == {
        "batchSize": 1, "durationMS": 0, "stream": b"cam:*", "trimStream": 0, "onFailedPolicy": b"continue",
        "retryInterval": 1,
    }  # fmt: skip


def test_existing_entries_are_processed_when_registering(rg: redis.Redis) -> None:
    rg.xadd("cam:9", {"v": "early"})
    pyexecute(rg, FORWARD.format(extra=""))
    wait_for(lambda: rg.xlen("out") == 1)
    assert _out(rg)[0][b"v"] == b"early"


def test_batch_collects_entries_and_duration_flushes_a_short_batch(rg: redis.Redis) -> None:
    code = ("GB('StreamReader').aggregate([], lambda a, r: a + [r['value']['v']], lambda a, r: a + r)"
            ".foreach(lambda b: execute('RPUSH', 'batches', ','.join(b))).register(prefix='b:*', batch=3, duration={d})")  # fmt: skip
    pyexecute(rg, code.format(d=0), "ID", "nodur")
    for i in range(7):
        rg.xadd("b:0", {"v": str(i)})
    wait_for(lambda: rg.llen("batches") == 2, what="two full batches")
    assert rg.lrange("batches", 0, -1) == [b"0,1,2", b"3,4,5"]
    wait_for(lambda: rg.xlen("b:0") == 1, what="entry 6 waiting for a full batch")
    rg.execute_command("RG.UNREGISTER", registration(rg)["id"])
    pyexecute(rg, code.format(d=200), "ID", "withdur")
    rg.xadd("b:1", {"v": "x"})
    wait_for(lambda: b"x" in rg.lrange("batches", 0, -1), what="a short batch after the duration")


def test_huge_batch(rg: redis.Redis) -> None:
    pipe = rg.pipeline(transaction=False)
    for i in range(5000):
        pipe.xadd("h:0", {"v": str(i)})
    pipe.execute()
    pyexecute(
        rg,
        "GB('StreamReader').count().foreach(lambda n: execute('SET', 'n', n)).register(prefix='h:*', batch=100000, duration=100)",
    )
    wait_for(lambda: rg.get("n") == b"5000", what="one batch of 5000")
    wait_for(lambda: rg.xlen("h:0") == 0, what="the batch trimmed")


def test_continue_policy_counts_the_failure_and_goes_on(rg: redis.Redis) -> None:
    pyexecute(
        rg,
        FORWARD.format(extra="").replace(
            ".foreach(", ".map(lambda r: r if r['value']['v'] != 'bad' else 1/0).foreach(", 1
        ),
    )
    for v in ("1", "bad", "2"):
        rg.xadd("cam:0", {"v": v})
    wait_for(lambda: rg.xlen("out") == 2)
    # the reader's first execution (the pending entries: none) and the two good entries succeed
    wait_for(lambda: (counters(rg)["numFailures"], counters(rg)["numSuccess"]) == (1, 3), what="the counters")
    data = counters(rg)
    assert data["status"] == b"OK" and data["lastError"] is None  # the last entry's success cleared it
    wait_for(lambda: rg.xlen("cam:0") == 0, what="the batches trimmed")


def test_abort_policy_stops_the_registration_and_keeps_the_entries(rg: redis.Redis) -> None:
    pyexecute(rg, "GB('StreamReader').map(lambda r: 1/0).register(prefix='ab:*', onFailedPolicy='abort')")
    rg.xadd("ab:0", {"v": "1"})
    wait_for(lambda: counters(rg)["status"] == b"ABORTED")
    rg.xadd("ab:0", {"v": "2"})
    data = counters(rg)
    # the first execution read the pending entries (none), the second failed: nothing runs after it
    assert (data["numFailures"], data["numTriggered"]) == (1, 2)
    assert rg.xlen("ab:0") == 2


def test_retry_policy_retries_the_same_batch_until_it_succeeds(rg: redis.Redis) -> None:
    code = (
        "def flaky(r):\n"
        "    if int(execute('INCR', 'attempts')) < 3:\n"
        "        raise Exception('not yet')\n"
        "    execute('RPUSH', 'done', r['value']['v'])\n"
        "GB('StreamReader').foreach(flaky).register(prefix='re:*', onFailedPolicy='retry', onFailedRetryInterval=0)"
    )
    pyexecute(rg, code)
    rg.xadd("re:0", {"v": "only"})
    wait_for(lambda: rg.lrange("done", 0, -1) == [b"only"], what="success on the third attempt")
    # the first (empty) execution and the third attempt succeed; each retry reads the pending entries again
    wait_for(lambda: counters(rg)["numSuccess"] == 2, what="the success counted")
    data = counters(rg)
    assert (data["numFailures"], data["status"]) == (2, b"OK")
    assert data["lastError"] is None  # a success clears it, as in RedisGears


def test_two_stream_registrations_on_overlapping_prefixes_each_see_every_entry(rg: redis.Redis) -> None:
    pyexecute(rg, "GB('StreamReader').foreach(lambda r: execute('RPUSH', 'wide', r['value']['v'])).register(prefix='o:*')",
              "ID", "wide")  # fmt: skip
    pyexecute(rg, "GB('StreamReader').foreach(lambda r: execute('RPUSH', 'narrow', r['value']['v'])).register(prefix='o:a*')",
              "ID", "narrow")  # fmt: skip
    for i in range(10):
        rg.xadd("o:a", {"v": str(i)})
    rg.xadd("o:b", {"v": "b"})
    expected = [str(i).encode() for i in range(10)]
    wait_for(lambda: rg.llen("wide") == 11 and rg.llen("narrow") == 10, what="both registrations")
    assert rg.lrange("narrow", 0, -1) == expected
    assert [v for v in rg.lrange("wide", 0, -1) if v != b"b"] == expected
    wait_for(lambda: rg.xlen("o:a") == 0, what="trimmed once both processed")


def test_a_stream_deleted_and_written_again_is_read_from_its_start(rg: redis.Redis, direct: redis.Redis) -> None:
    """FLUSHALL or DEL takes the stream and its consumer groups; RedisGears creates its group again when
    XREADGROUP fails and reads on, so the first XADD to the new stream is processed (rgsync's tests FLUSHALL
    before each case). Here the reader that got that XADD stopped at NOGROUP and left the entry unread."""
    pyexecute(rg, FORWARD.format(extra=", trimStream=False"))
    rg.xadd("cam:0", {"v": "before"})
    wait_for(lambda: rg.xlen("out") == 1, what="the first entry forwarded")
    wipes = {"FLUSHALL": lambda: rg.flushall(), "DEL": lambda: rg.delete("cam:0", "out"),
             "DEL in the backing Redis": lambda: direct.delete("cam:0", "out")}  # fmt: skip
    for how, wipe in wipes.items():
        wipe()
        rg.xadd("cam:0", {"v": how})
        wait_for(lambda how=how: [f[b"v"] for f in _out(rg)] == [how.encode()], what=f"the entry after {how}")
        rg.xadd("cam:0", {"v": "next"})
        wait_for(lambda how=how: [f[b"v"] for f in _out(rg)] == [how.encode(), b"next"], what="the next one")
    assert counters(rg)["numFailures"] == 0


def test_a_key_of_another_type_on_the_prefix_is_ignored(rg: redis.Redis) -> None:
    rg.set("w:string", "not a stream")
    pyexecute(rg, "GB('StreamReader').foreach(lambda r: execute('INCR', 'n')).register(prefix='w:*')")
    rg.set("w:other", "x")
    rg.xadd("w:stream", {"v": "1"})
    wait_for(lambda: rg.get("n") == b"1")
    assert rg.get("w:string") == b"not a stream" and counters(rg)["numFailures"] == 0


def test_stream_events_reach_the_runtime_only_while_registrations_need_them(
    rg: redis.Redis, direct: redis.Redis
) -> None:
    """A camera's every XADD sends a key event; without a Gears registration nothing needs it (the AI
    store ignores stream events), so the runtime is not subscribed to them (keyevents.STREAM_EVENTS)."""

    def stream_pattern_subscribed() -> bool:
        return int(direct.execute_command("PUBSUB", "NUMPAT")) == 2  # every event but streams', and streams'

    wait_for(lambda: int(direct.execute_command("PUBSUB", "NUMPAT")) == 1, what="no stream events subscribed")
    pyexecute(rg, FORWARD.format(extra=""))
    wait_for(stream_pattern_subscribed, what="stream events subscribed for the registration")
    rg.xadd("cam:late", {"v": "1"})  # a stream the registration has not seen yet: its event starts a reader
    wait_for(lambda: rg.xlen("out") == 1, what="the new stream's entry forwarded")
    unregister_all(rg)
    wait_for(lambda: int(direct.execute_command("PUBSUB", "NUMPAT")) == 1, what="stream events dropped again")


def test_stream_readers_stop_on_a_replica_and_read_again_once_it_is_a_master(tmp_path: Path) -> None:
    """As in RedisGears: on a replica no StreamReader execution is triggered (a failing one's retries stop),
    and once `REPLICAOF NO ONE` makes it a master they start again. A stack of its own: its Redis becomes
    a replica of a port nothing listens on."""
    with running_stack(tmp_path) as (_, runtime):
        client = redis.Redis(port=runtime.port, protocol=2, socket_timeout=30)
        code = "GB('StreamReader').map(lambda r: r['missing']).register(prefix='rp:*', onFailedPolicy='retry', onFailedRetryInterval=0.2)"
        pyexecute(client, code)
        client.xadd("rp:0", {"v": "1"})
        first = counters(client)["numTriggered"]
        wait_for(lambda: counters(client)["numTriggered"] > first + 2, what="the retries on a master")
        assert client.execute_command("REPLICAOF", "127.0.0.1", str(free_port())) == b"OK"
        time.sleep(1.0)  # a retry that was on its way ends
        stopped = counters(client)["numTriggered"]
        time.sleep(1.5)
        assert counters(client)["numTriggered"] == stopped  # nothing triggered on a replica
        assert client.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
        wait_for(lambda: counters(client)["numTriggered"] > stopped + 1, what="the retries once it is a master again")


def test_a_runtime_stopped_while_streams_are_written_leaves_no_reader_behind(tmp_path: Path) -> None:
    """SIGTERM while XADDs keep coming: a reader that finished its batch must not be started again meanwhile.

    Each finished reader was replaced by a new one at the next XADD, after the stop had counted
    the readers to wait for, and the Gears loop stopped under it: "Task was destroyed but it is
    pending!" logged as an ERROR at every restart of a busy runtime.
    """
    with running_stack(tmp_path) as (backing, runtime):
        client = runtime.client()
        pyexecute(client, FORWARD.format(extra=""))
        writing = threading.Event()
        writing.set()

        def write() -> None:  # straight to Redis: the writes go on while the runtime stops
            direct = redis.Redis(port=backing.port)
            n = 0
            while writing.is_set():
                direct.xadd(f"cam:{n % 20}", {"v": n})
                n += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_for(lambda: client.xlen("out") > 200, what="entries forwarded from every stream")
            runtime.stop()
        finally:
            writing.clear()
            writer.join(10)
    assert "Task was destroyed" not in runtime.output()
    assert "Traceback" not in runtime.output()
