"""register(): KeysReader and CommandReader registrations, RG.TRIGGER, RG.DUMPREGISTRATIONS, RG.UNREGISTER, sessions."""

from __future__ import annotations

import redis

from tests.runtime.conftest import error_of
from tests.runtime.gears_helpers import counters, pyexecute, registration, registrations, rg, wait_for

__all__ = ["rg"]

COPY = "GB().foreach(lambda r: execute('SET', 'seen:' + r['key'], r['event'])).register(prefix='doc:*'{extra})"


def test_trigger_runs_a_command_reader_registration(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB('CommandReader').register(trigger='mytrigger')") == b"OK"
    assert rg.execute_command("RG.TRIGGER", "mytrigger", "foo", "bar") == [b"['mytrigger', 'foo', 'bar']"]
    data = counters(rg)
    assert (data["numTriggered"], data["numSuccess"], data["numFailures"]) == (1, 1, 0)
    assert data["args"] == {"trigger": b"mytrigger", "inorder": 0}
    assert error_of(rg, "RG.TRIGGER", "nosuch") == "ERR subcommand not found"


def test_trigger_answers_the_steps_error(rg: redis.Redis) -> None:
    pyexecute(rg, "GB('CommandReader').map(lambda a: int(a[1])).register(trigger='parse')")
    assert rg.execute_command("RG.TRIGGER", "parse", "41") == [b"41"]
    assert "ValueError" in error_of(rg, "RG.TRIGGER", "parse", "x")
    data = counters(rg)
    assert (data["numSuccess"], data["numFailures"]) == (1, 1)
    assert b"ValueError" in data["lastError"]


def test_dumpregistrations_has_the_reference_shape(rg: redis.Redis) -> None:
    pyexecute(rg, COPY.format(extra=", eventTypes=['set'], keyTypes=['string']"), "ID", "copier", "DESCRIPTION", "d")
    (entry,) = rg.execute_command("RG.DUMPREGISTRATIONS")
    assert entry[0::2] == [b"id", b"reader", b"desc", b"RegistrationData", b"PD", b"ExecutionThreadPool"]
    assert entry[3] == b"KeysReader" and entry[5] is None and entry[11] == b"DefaultPool"
    assert entry[9] == b"{'sessionId':'copier', 'depsList':[]}"
    data = entry[7]
    assert data[0::2] == [
        b"mode",
        b"numTriggered",
        b"numSuccess",
        b"numFailures",
        b"numAborted",
        b"lastRunDurationMS",
        b"totalRunDurationMS",
        b"avgRunDurationMS",
        b"lastError",
        b"args",
    ]
    assert data[1] == b"async" and data[17] is None
    assert data[19] == [b"regex", b"doc:*", b"eventTypes", [b"set"], b"keyTypes", [b"string"], b"hookCommands", None]


def test_a_keys_registration_fires_on_writes_through_the_runtime_and_direct_ones(
    rg: redis.Redis, direct: redis.Redis
) -> None:
    pyexecute(rg, COPY.format(extra=", eventTypes=['set', 'hset']"))
    rg.set("doc:1", "a")
    direct.set("doc:2", "b")
    direct.set("other", "c")
    direct.hset("doc:3", "f", "v")
    direct.lpush("doc:4", "x")  # lpush is not in eventTypes
    wait_for(lambda: rg.get("seen:doc:1") and rg.get("seen:doc:2") and rg.get("seen:doc:3"), what="three triggers")
    assert rg.get("seen:doc:3") == b"hset"
    assert rg.get("seen:other") is None and rg.get("seen:doc:4") is None
    wait_for(lambda: counters(rg)["numSuccess"] == 3, what="counters")


def test_key_types_filter_out_other_types(rg: redis.Redis) -> None:
    pyexecute(
        rg, "GB().foreach(lambda r: execute('RPUSH', 'types', r['type'])).register(prefix='t:*', keyTypes=['hash'])"
    )
    rg.set("t:string", "x")
    rg.hset("t:hash", "f", "v")
    wait_for(lambda: rg.lrange("types", 0, -1) == [b"hash"], what="hash trigger")
    assert counters(rg)["numTriggered"] == 1


def test_two_registrations_on_overlapping_prefixes_both_fire(rg: redis.Redis) -> None:
    pyexecute(rg, "GB().foreach(lambda r: execute('INCR', 'wide')).register(prefix='a:*', eventTypes=['set'])")
    pyexecute(rg, "GB().foreach(lambda r: execute('INCR', 'narrow')).register(prefix='a:b:*', eventTypes=['set'])")
    rg.set("a:b:1", "x")
    rg.set("a:c:1", "x")
    wait_for(lambda: rg.get("wide") == b"2" and rg.get("narrow") == b"1", what="both registrations")


def test_a_registration_that_raises_counts_failures_and_others_keep_running(rg: redis.Redis) -> None:
    pyexecute(rg, "GB().map(lambda r: 1 // int(r['value'])).register(prefix='div:*')", "ID", "bad")
    pyexecute(rg, "GB().foreach(lambda r: execute('INCR', 'ok')).register(prefix='div:*')", "ID", "good")
    bad = next(r for r in registrations(rg) if b"'bad'" in r["PD"])
    rg.set("div:1", "0")
    wait_for(lambda: counters(rg, bad["id"])["numFailures"] == 1, what="the failure counted")
    assert b"ZeroDivisionError" in counters(rg, bad["id"])["lastError"]
    rg.set("div:2", "1")
    wait_for(lambda: rg.get("ok") == b"2", what="good registration")
    wait_for(lambda: (counters(rg, bad["id"])["numFailures"], counters(rg, bad["id"])["numSuccess"]) == (1, 1))
    assert counters(rg, bad["id"])["lastError"] is None  # a success clears it, as in RedisGears
    assert rg.get("div:1") == b"0"  # nothing in Redis is lost


def test_unregister_stops_a_registration(rg: redis.Redis) -> None:
    pyexecute(rg, "GB().foreach(lambda r: execute('INCR', 'hits')).register(prefix='u:*', eventTypes=['set'])")
    reg_id = registration(rg)["id"]
    rg.set("u:1", "x")
    wait_for(lambda: rg.get("hits") == b"1")
    assert rg.execute_command("RG.UNREGISTER", reg_id) == b"OK"
    assert rg.execute_command("RG.DUMPREGISTRATIONS") == []
    rg.set("u:2", "x")
    rg.set("u:marker", "x")
    assert rg.get("hits") == b"1"
    assert error_of(rg, "RG.UNREGISTER", reg_id) == "execution is not registered"


def test_session_ids_upgrade_and_replace(rg: redis.Redis) -> None:
    v1 = "GB('CommandReader').map(lambda a: 'v1').register(trigger='version')"
    v2 = "GB('CommandReader').map(lambda a: 'v2').register(trigger='version')"
    pyexecute(rg, v1, "ID", "app")
    assert error_of(rg, "RG.PYEXECUTE", v2, "ID", "app") == "Session app already exists"
    assert pyexecute(rg, v2, "ID", "app", "UPGRADE") == b"OK"
    assert len(registrations(rg)) == 1
    assert rg.execute_command("RG.TRIGGER", "version") == [b"v2"]
    assert "failed_upgrade" in error_of(rg, "RG.PYEXECUTE", "raise Exception('failed_upgrade')", "ID", "app", "UPGRADE")
    assert rg.execute_command("RG.TRIGGER", "version") == [b"v2"]  # a failed upgrade keeps the running code
    v3 = v1.replace("v1", "v3")
    assert error_of(rg, "RG.PYEXECUTE", v3, "ID", "app2", "REPLACE_WITH", "nosuch") == (
        "Can not replace with nosuch, session does not exists."
    )
    assert pyexecute(rg, v3, "ID", "app2", "REPLACE_WITH", "app") == b"OK"
    assert rg.execute_command("RG.TRIGGER", "version") == [b"v3"]
    sessions = rg.execute_command("RG.PYDUMPSESSIONS")
    assert [s[1] for s in sessions] == [b"app2"]


def test_pydumpsessions_shapes(rg: redis.Redis) -> None:
    pyexecute(rg, "GB('CommandReader').register(trigger='t1')", "ID", "s1", "DESCRIPTION", "first")
    (entry,) = rg.execute_command("RG.PYDUMPSESSIONS")
    assert entry[0::2] == [
        b"ID",
        b"sessionDescription",
        b"refCount",
        b"linked",
        b"dead",
        b"requirementInstallationNeeded",
        b"requirements",
        b"registrations",
    ]
    assert entry[1] == b"s1" and entry[3] == b"first" and entry[13] == []
    reg_id = registration(rg)["id"]
    assert entry[15] == [reg_id]
    (verbose,) = rg.execute_command("RG.PYDUMPSESSIONS", "VERBOSE")
    assert verbose[15][0][:2] == [b"id", reg_id] and b"PD" not in verbose[15][0]
    assert rg.execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "s1", "nope")[1] == b"Session nope does not exists"
    assert error_of(rg, "RG.PYDUMPSESSIONS", "BOGUS") == "Unknown option BOGUS"


def test_register_argument_errors(rg: redis.Redis) -> None:
    assert error_of(rg, "RG.PYEXECUTE", "GB().register(mode='later')") == "unknown execution mode"
    assert error_of(rg, "RG.PYEXECUTE", "GB().register(keyTypes=['blob'])") == "unknown key type"
    assert error_of(rg, "RG.PYEXECUTE", "GB('StreamReader').register(onFailedPolicy='x')") == (
        "onFailedPolicy must be Continue/Abort/Retry"
    )
    assert error_of(rg, "RG.PYEXECUTE", "GB('StreamReader').register(batch='x')") == "batch argument must be a number"
    assert error_of(rg, "RG.PYEXECUTE", "GB('CommandReader').register(hook='nosuchcommand')") == (
        "Can not override an unexisting command"
    )
    assert "Can not hook an unexisting command" in error_of(rg, "RG.PYEXECUTE", "GB().register(commands=['nosuch'])")
    assert rg.execute_command("RG.DUMPREGISTRATIONS") == []


def test_callbacks_key_only_records_and_unread_values(rg: redis.Redis) -> None:
    code = (
        "GB('KeysOnlyReader').foreach(lambda k: execute('RPUSH', 'names', k)).register(prefix='ko:*',"
        " onRegistered=lambda: execute('SET', 'registered', '1'), onUnregistered=lambda: execute('SET', 'gone', '1'))\n"
        "GB().foreach(lambda r: execute('SET', 'unread', repr(sorted(r)))).register(prefix='ur:*', readValue=False)\n"
    )
    pyexecute(rg, code)
    assert rg.get("registered") == b"1"
    rg.set("ko:1", "x")
    rg.set("ur:1", "secret")
    # readValue=False: RedisGears' record has the key and the event only.
    wait_for(lambda: rg.lrange("names", 0, -1) == [b"ko:1"] and rg.get("unread") == b"['event', 'key']",
             what="both triggers")  # fmt: skip
    ko = next(r for r in registrations(rg) if r["RegistrationData"]["args"]["regex"] == b"ko:*")
    rg.execute_command("RG.UNREGISTER", ko["id"])
    assert rg.get("gone") == b"1"


def test_sync_mode_runs_before_the_writer_gets_its_reply(rg: redis.Redis) -> None:
    code = "GB().foreach(lambda r: execute('INCR', 'synced')).register(prefix='sy:*', mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    assert counters(rg)["mode"] == b"sync"
    for n in range(1, 21):
        rg.set(f"sy:{n}", "x")
        # No wait: the registration ran before SET answered, as inside Redis.
        assert rg.get("synced") == str(n).encode()
    # A pipeline of writes: each reply waits for its own registration runs.
    with rg.pipeline(transaction=False) as pipe:
        for n in range(5):
            pipe.set(f"sy:p{n}", "x")
        pipe.get("synced")
        assert pipe.execute()[-1] == b"25"


def test_sync_mode_runs_before_a_script_or_a_transaction_that_wrote_answers(rg: redis.Redis) -> None:
    """Inside Redis the writes of EVAL, FCALL and EXEC trigger sync registrations before their reply too
    (Redis 7.0 flags none of those commands as writes)."""
    code = "GB().foreach(lambda r: execute('INCR', 'synced-w')).register(prefix='syw:*', mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    rg.execute_command("FUNCTION", "LOAD", "REPLACE",
                       "#!lua name=syncw\nredis.register_function('w', function(k) return redis.call('SET', k[1], 1) end)")  # fmt: skip
    writes = [
        ("EVAL", "return redis.call('SET', KEYS[1], 1)", 1, "syw:eval"),
        ("EVALSHA", rg.script_load("return redis.call('SET', KEYS[1], 1)"), 1, "syw:evalsha"),
        ("FCALL", "w", 1, "syw:fcall"),
    ]
    for n, write in enumerate(writes, start=1):
        with rg.pipeline(transaction=False) as pipe:  # the GET goes out with the write: no wait in between
            pipe.execute_command(*write)
            pipe.get("synced-w")
            assert pipe.execute()[-1] == str(n).encode(), write[0]
    with rg.pipeline(transaction=False) as pipe:
        pipe.execute_command("MULTI")
        pipe.set("syw:multi1", "x")
        pipe.set("syw:multi2", "x")
        pipe.execute_command("EXEC")
        pipe.get("synced-w")
        assert pipe.execute()[-1] == b"5"
    with rg.pipeline(transaction=False) as pipe:  # with a command the runtime serves in the transaction
        pipe.execute_command("MULTI")
        pipe.execute_command("AI.TENSORSET", "syw-tensor", "FLOAT", 1, "VALUES", 1)
        pipe.set("syw:multi3", "x")
        pipe.execute_command("EXEC")
        pipe.get("synced-w")
        assert pipe.execute()[-1] == b"6"


def test_a_sync_registrations_own_writes_trigger_no_keys_reader_but_stream_readers(rg: redis.Redis) -> None:
    """RedisGears runs a sync KeysReader inside the key event, and Redis does not notify a subscriber from inside
    its own notification: RedisGears' own example (examples/automatic-expire.py, EXPIRE on every key) relies on it
    not triggering itself. StreamReaders subscribe apart, and do see the writes."""
    expire = "GB().foreach(lambda x: execute('EXPIRE', x['key'], 3600)).register('sq*', mode='sync', readValue=False)"
    copy = (
        "GB().foreach(lambda x: (execute('SET', 'sqcopy', 1), execute('XADD', 'qstream', '*', 'k', x['key'])))"
        ".register('sq:*', mode='sync')"
    )
    count = "GB().foreach(lambda x: execute('INCR', 'counted')).register('sqcopy')"
    stream = "GB('StreamReader').foreach(lambda x: execute('INCR', 'streamed')).register('qstream')"
    for code in (expire, copy, count, stream):
        assert pyexecute(rg, code) == b"OK"
    rg.set("sq:1", "x")
    wait_for(lambda: rg.get("streamed") == b"1", what="the StreamReader run on the sync registration's XADD")
    data = [r["RegistrationData"] for r in registrations(rg) if r["reader"] == b"KeysReader"]
    runs = {d["args"]["regex"]: d["numTriggered"] for d in data}
    assert runs == {b"sq*": 1, b"sq:*": 1, b"sqcopy": 0}, runs  # sq* saw none of the EXPIREs or the SET
    assert 0 < rg.ttl("sq:1") <= 3600 and rg.ttl("sqcopy") == -1 and rg.get("counted") is None


def test_an_async_registrations_writes_trigger_keys_readers(rg: redis.Redis) -> None:
    """Not inside a key event (RedisGears runs it on a thread of its own), its writes notify every KeysReader."""
    assert pyexecute(rg, "GB().foreach(lambda x: execute('SET', 'aq2', 1)).register('aq1')") == b"OK"
    assert pyexecute(rg, "GB().foreach(lambda x: execute('INCR', 'aq-sync')).register('aq2', mode='sync')") == b"OK"
    rg.set("aq1", "x")
    wait_for(lambda: rg.get("aq-sync") == b"1", what="the sync registration on the async one's write")


def test_key_misses_trigger_registrations_but_the_readers_own_reads_do_not(rg: redis.Redis) -> None:
    """RedisGears hears keymiss whatever notify-keyspace-events says (its read-through cache tutorial registers on
    eventTypes=['keymiss'] alone), and a registration with no eventTypes fires on them too; its own reads of a
    record (the TYPE of a deleted key) trigger nothing."""
    misses = "GB().foreach(lambda x: execute('INCR', 'misses-of-km')).register('km*', eventTypes=['keymiss'])"
    every = "GB().foreach(lambda x: execute('RPUSH', 'seen-of-km', x['event'])).register('km*')"
    for code in (misses, every):
        assert pyexecute(rg, code) == b"OK"
    rg.set("km1", "x")
    rg.delete("km1")  # the second registration reads the deleted key's record: no keymiss from that read
    wait_for(lambda: rg.lrange("seen-of-km", 0, -1) == [b"set", b"del"], what="set and del")
    assert rg.get("km1") is None  # a client's miss
    wait_for(lambda: rg.get("misses-of-km") == b"1", what="the keymiss registration")
    wait_for(lambda: rg.lrange("seen-of-km", 0, -1) == [b"set", b"del", b"keymiss"], what="the miss, to every event")
    rg.execute_command("RG.DUMPREGISTRATIONS")  # (waits for what the client's commands triggered)
    assert rg.get("misses-of-km") == b"1" and rg.llen("seen-of-km") == 3


def test_writes_of_executions_a_client_runs_trigger_sync_registrations_before_the_reply(rg: redis.Redis) -> None:
    """RG.PYEXECUTE's run(), RG.TRIGGER and a command hook write inside Redis, with their sync registrations."""
    code = "GB().foreach(lambda r: execute('INCR', 'sx-done')).register(prefix='sx:*', mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    trigger = "GB('CommandReader').foreach(lambda a: execute('SET', 'sx:' + a[1], 1)).register(trigger='sxw')"
    hook = "GB('CommandReader').map(lambda a: call_next(*a[1:])).register(hook='hset', mode='sync')"
    assert pyexecute(rg, trigger) == b"OK" and pyexecute(rg, hook) == b"OK"
    writes = [
        ("RG.PYEXECUTE", "GB('ShardsIDReader').foreach(lambda x: execute('SET', 'sx:run', 1)).run()"),
        ("RG.TRIGGER", "sxw", "trig"),
        ("HSET", "sx:hooked", "f", "v"),
    ]
    for n, write in enumerate(writes, start=1):
        with rg.pipeline(transaction=False) as pipe:  # the GET goes out with the command: no wait in between
            pipe.execute_command(*write)
            pipe.get("sx-done")
            assert pipe.execute()[-1] == str(n).encode(), write[0]
