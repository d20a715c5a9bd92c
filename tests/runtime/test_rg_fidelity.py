"""RedisGears 1.2 behaviours its own test suite checks, as tests of our own (docs/gears.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.runtime.conftest import RawClient, Runtime, error_of, running_stack
from tests.runtime.gears_helpers import pyexecute, registration, registrations, rg, unregister_all, wait_for

__all__ = ["rg"]


def test_sort_returns_records_in_redisgears_order(rg: redis.Redis) -> None:
    for key in ("x", "z", "y"):
        rg.set(key, "1")
    assert pyexecute(rg, "GB('KeysOnlyReader').sort().run()") == [[b"x", b"y", b"z"], []]
    assert pyexecute(rg, "GB('KeysOnlyReader').sort(reverse=False).run()") == [[b"z", b"y", b"x"], []]


def test_flatmap_expands_lists_from_their_end_and_keeps_other_values_whole(rg: redis.Redis) -> None:
    # RedisGears turns a returned list into a list record and pops its elements from the end;
    # a tuple (or any other value) stays one record.
    assert pyexecute(rg, "GB('ShardsIDReader').flatmap(lambda x: [1, 2, 3]).run()") == [[b"3", b"2", b"1"], []]
    assert pyexecute(rg, "GB('ShardsIDReader').flatmap(lambda x: (1, 2)).run()") == [[b"(1, 2)"], []]


def test_keys_reader_records_have_redisgears_fields(rg: redis.Redis) -> None:
    rg.set("x", "1")
    assert pyexecute(rg, "GB().map(lambda r: sorted(r)).run('x', readValue=False)") == [[b"['event', 'key']"], []]
    assert pyexecute(rg, "GB().map(lambda r: sorted(r)).run('x')") == [[b"['event', 'key', 'type', 'value']"], []]
    # noScan reads the one key named, and a missing key is one record of type 'empty'.
    assert pyexecute(rg, "GB().map(lambda r: (r['key'], r['type'], r['value'])).run('nokey', noScan=True)") == [
        [b"('nokey', 'empty', None)"], [],
    ]  # fmt: skip


def test_group_keys_are_strings_as_redisgears_makes_them(rg: redis.Redis) -> None:
    rg.mset({"a": "100", "b": "100", "c": "7"})
    results, errors = pyexecute(rg, "GB().map(lambda r: int(r['value'])).countby().run('*')")
    assert errors == []
    assert sorted(results) == [b"{'key': '100', 'value': 2}", b"{'key': '7', 'value': 1}"]


def test_register_returns_the_registration_id(rg: redis.Redis) -> None:
    code = (
        "reg = GB().register(prefix='noop-never')\n"
        "GB('CommandReader').map(lambda x: reg).register(trigger='which-id')\n"
    )
    assert pyexecute(rg, code, "ID", "returns-id") == b"OK"
    ids = {entry[1] for entry in rg.execute_command("RG.DUMPREGISTRATIONS") if entry[3] == b"KeysReader"}
    assert rg.execute_command("RG.TRIGGER", "which-id") == [ids.pop()]


def test_a_trigger_can_be_registered_once(rg: redis.Redis) -> None:
    code = "GB('CommandReader').register(trigger='only-once')"
    assert pyexecute(rg, code) == b"OK"
    assert error_of(rg, "RG.PYEXECUTE", code) == "trigger already registered"
    twice = "GB('CommandReader').register(trigger='twice')\nGB('CommandReader').register(trigger='twice')"
    assert error_of(rg, "RG.PYEXECUTE", twice) == "trigger already registered in this session"
    # The session that holds a trigger may register it again when it is upgraded.
    holder = "GB('CommandReader').register(trigger='kept')"
    assert pyexecute(rg, holder, "ID", "holder") == b"OK"
    assert pyexecute(rg, holder, "ID", "holder", "UPGRADE") == b"OK"


def test_a_registration_whose_callback_cannot_be_serialized_is_refused_as_redisgears_does(rg: redis.Redis) -> None:
    """RedisGears pickles a registration's callbacks when it registers (test_errors.py's
    testRegistrationFailureOnSerialization holds a redis.Redis connection in a step): refused, nothing kept."""
    holds_a_lock = "import threading\nlock = threading.Lock()\ndef test(x):\n    with lock:\n        return x\n"
    for reader, args in (("KeysReader", ""), ("StreamReader", ""), ("CommandReader", "trigger='t'")):
        error = error_of(rg, "RG.PYEXECUTE", f"{holds_a_lock}GB('{reader}').map(test).register({args})")
        assert error.startswith("Error occured when serialized a python callback, callback=test error=TypeError")
        assert "_thread.lock" in error
    unpicklable_hook = "import threading\nlock = threading.Lock()\nGB().register(onRegistered=lambda: lock.locked())"
    assert "callback=<lambda>" in error_of(rg, "RG.PYEXECUTE", unpicklable_hook)
    assert rg.execute_command("RG.DUMPREGISTRATIONS") == []
    # What the environment provides (execute, GB), modules and data pickle; a run is not serialized.
    fine = "import numpy\nw = numpy.ones(3)\nGB().foreach(lambda r: execute('SET', 'ser:seen', str(w.sum()))).register('ser:*')"
    assert pyexecute(rg, fine) == b"OK"
    rg.set("ser:x", "1")
    wait_for(lambda: rg.get("ser:seen") == b"3.0", what="the registration's step")
    run = f"{holds_a_lock}GB('ShardsIDReader').map(lambda x: str(lock.locked())).run()"
    assert pyexecute(rg, run) == [[b"False"], []]


def test_pause_and_unpause_a_stream_registration(rg: redis.Redis) -> None:
    code = "GB('StreamReader').foreach(lambda r: execute('INCR', 'paused-count')).register(prefix='pause:s')"
    assert pyexecute(rg, code) == b"OK"
    (reg,) = rg.execute_command("RG.DUMPREGISTRATIONS")
    reg_id = reg[1]
    rg.xadd("pause:s", {"n": "1"})
    wait_for(lambda: rg.get("paused-count") == b"1", what="the first entry")
    assert rg.execute_command("RG.PAUSEREGISTRATIONS", reg_id) == b"OK"
    assert registration(rg)["RegistrationData"]["status"] == b"PAUSED"
    rg.xadd("pause:s", {"n": "2"})
    rg.xadd("pause:s", {"n": "3"})
    time.sleep(0.5)  # nothing may run while paused: give a wrong implementation the time to show it
    assert rg.get("paused-count") == b"1"
    assert rg.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == b"OK"
    wait_for(lambda: rg.get("paused-count") == b"3", what="the entries added while paused")
    assert "does not exists on shard" in error_of(rg, "RG.PAUSEREGISTRATIONS", "no-such-id")
    keys_reg = pyexecute(rg, "GB().register(prefix='k-never')")
    assert keys_reg == b"OK"
    keys_id = next(e[1] for e in rg.execute_command("RG.DUMPREGISTRATIONS") if e[3] == b"KeysReader")
    assert error_of(rg, "RG.PAUSEREGISTRATIONS", keys_id) == "Reader KeysReader does not support pause"


def test_a_batch_failing_with_pause_pauses_its_registration(rg: redis.Redis) -> None:
    code = (
        "def step(r):\n"
        "    if execute('GET', 'should-pause') == 'yes':\n"
        "        flat_error('PAUSE')\n"
        "    execute('INCR', 'pause-counter')\n"
        "GB('StreamReader').foreach(step).register(prefix='self:s')"
    )
    assert pyexecute(rg, code) == b"OK"
    reg_id = rg.execute_command("RG.DUMPREGISTRATIONS")[0][1]
    rg.xadd("self:s", {"n": "1"})
    wait_for(lambda: rg.get("pause-counter") == b"1", what="the first entry")
    rg.set("should-pause", "yes")
    rg.xadd("self:s", {"n": "2"})
    wait_for(lambda: registration(rg)["RegistrationData"]["status"] == b"PAUSED", what="the pause")
    assert registration(rg)["RegistrationData"]["lastError"] == b"PAUSE"
    rg.set("should-pause", "no")
    assert rg.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == b"OK"
    wait_for(lambda: rg.get("pause-counter") == b"2", what="the paused entry, read again")


def test_module_list_shows_the_modules_the_runtime_stands_in_for(rg: redis.Redis) -> None:
    names = {dict(zip(m[::2], m[1::2], strict=True))[b"name"] for m in rg.execute_command("MODULE", "LIST")}
    assert {b"ai", b"rg"} <= names


def test_hello_and_module_list_name_the_modules_as_redis_names_loaded_ones(rg: redis.Redis) -> None:
    """HELLO's `modules` field lists them too, and a RESP3 client gets each module as a map (addReplyLoadedModules)."""
    kwargs = rg.connection_pool.connection_kwargs
    raw = RawClient(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
    hello2 = raw.call("HELLO", 2)
    assert isinstance(hello2, list)
    modules2 = hello2[hello2.index(b"modules") + 1]
    assert [m[:2] for m in modules2] == [[b"name", b"ai"], [b"name", b"rg"]]
    assert modules2 == rg.execute_command("MODULE", "LIST")
    hello3 = raw.call("HELLO", 3)
    assert isinstance(hello3, dict) and hello3[b"proto"] == 3 and hello3[b"server"] == b"redis"
    modules3 = hello3[b"modules"]
    assert [m[b"name"] for m in modules3] == [b"ai", b"rg"]
    assert all(isinstance(m, dict) and set(m) == {b"name", b"ver", b"path", b"args"} for m in modules3)
    assert raw.call("MODULE", "LIST") == modules3
    raw.close()


def test_gears_code_reaches_the_modules_own_commands(rg: redis.Redis) -> None:
    rg.execute_command("AI.TENSORSET", "t-from-gears", "FLOAT", "2", "VALUES", "1", "2")
    code = (
        "def step(_):\n"
        "    regs = execute('RG.DUMPREGISTRATIONS')\n"
        "    meta = execute('AI.TENSORGET', 't-from-gears', 'META')\n"
        "    try:\n"
        "        execute('RG.PYEXECUTE', 'GB().run()')\n"
        "        nested = 'ran'\n"
        "    except Exception as e:\n"
        "        nested = str(e)\n"
        "    return [regs, meta, nested]\n"
        "GB('ShardsIDReader').map(step).run()"
    )
    (result,), errors = pyexecute(rg, code)
    assert errors == []
    regs, meta, nested = eval(result)
    assert regs == [] and meta == ["dtype", "FLOAT", "shape", [2]]
    assert nested == "Can not run gears inside a multi exec, lua, or when blocking is not allowed"


def test_list_values_are_read_and_local_aggregateby_exists(rg: redis.Redis) -> None:
    rg.rpush("l", "1", "2", "3", "4", "5")
    assert pyexecute(rg, "GB().flatmap(lambda x: x['value']).limit(1, 3).collect().run('l')") == [[b"2"], []]
    code = "GB().__localAggregateby__(lambda x: x['type'], 0, lambda k, a, x: 1 + a).run('l')"
    assert pyexecute(rg, code) == [[b"{'key': 'list', 'value': 1}"], []]


def test_a_future_returned_by_a_step_is_completed_from_another_execution(rg: redis.Redis) -> None:
    code = (
        "blocked = []\n"
        "def wait(r):\n"
        "    f = gearsFuture()\n"
        "    blocked.append(f)\n"
        "    return f\n"
        "GB('CommandReader').map(wait).register(trigger='WaitForKeyChange', mode='async_local')\n"
        "async def release(r):\n"
        "    def unblock(x):\n"
        "        global blocked\n"
        "        [f.continueRun(x) for f in blocked]\n"
        "        blocked = []\n"
        "    await GB('ShardsIDReader').map(lambda x: r['key']).foreach(unblock).run()\n"
        "GB().foreach(release).register(prefix='release:*', mode='async_local')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    answer: list[Any] = []
    waiter = threading.Thread(target=lambda: answer.append(rg.execute_command("RG.TRIGGER", "WaitForKeyChange")))
    waiter.start()
    time.sleep(0.5)  # the trigger is waiting on its future by now
    assert waiter.is_alive()
    redis.Redis(connection_pool=rg.connection_pool).set("release:x", "1")
    waiter.join(20)
    assert answer == [[b"release:x"]]


def test_a_future_completed_in_a_step_goes_on_after_that_step_returned(rg: redis.Redis) -> None:
    # RedisGears' testSimpleAsyncOnAggregate: `unblock` completes the future, then clears the global that
    # the continued execution sets again for its next record. Inside RedisGears the step keeps the GIL
    # meanwhile; the sleep makes sure the continuation would run in between if it could (it hung then).
    code = (
        "import time\n"
        "pending = None\n"
        "def unblock(r):\n"
        "    global pending\n"
        "    if pending is None:\n"
        "        return 0\n"
        "    pending[1].continueRun(pending[0] + int(r[1]))\n"
        "    time.sleep(0.2)\n"
        "    pending = None\n"
        "    return 1\n"
        "def add(a, r):\n"
        "    global pending\n"
        "    pending = (a or 0, gearsFuture())\n"
        "    return pending[1]\n"
        "GB('CommandReader').flatmap(lambda x: x[1:]).accumulate(add).register(trigger='sum_blocked')\n"
        "GB('CommandReader').map(unblock).register(trigger='unblock_one')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    answer: list[Any] = []
    waiter = threading.Thread(target=lambda: answer.append(rg.execute_command("RG.TRIGGER", "sum_blocked", 1, 2, 3)))
    waiter.start()
    unblocker = redis.Redis(connection_pool=rg.connection_pool)
    deadline = time.monotonic() + 20
    while waiter.is_alive() and time.monotonic() < deadline:
        unblocker.execute_command("RG.TRIGGER", "unblock_one", 10)
        time.sleep(0.05)
    waiter.join(1)
    assert answer == [[b"30"]]  # three records, each completed with 10 added


def test_a_time_event_with_a_key_runs_until_the_key_is_deleted(rg: redis.Redis) -> None:
    rg.set("te-count", "0")
    code = (
        "def tick():\n"
        "    execute('INCR', 'te-count')\n"
        "    GB('ShardsIDReader').foreach(lambda x: execute('INCR', 'te-runs')).run()\n"
        "registerTE(0.2, tick, 'te-key')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    assert rg.exists("te-key")
    wait_for(lambda: int(rg.get("te-count") or 0) >= 2 and int(rg.get("te-runs") or 0) >= 2, what="ticks")
    rg.delete("te-key")
    time.sleep(0.5)
    stopped = int(rg.get("te-count") or 0)
    time.sleep(0.6)  # a still-running event would tick about three more times meanwhile
    assert int(rg.get("te-count") or 0) == stopped


def test_a_partial_stream_batch_runs_after_debug_reload(tmp_path: Path) -> None:
    with running_stack(tmp_path, ["--enable-debug-command", "yes"]) as (_, runtime):
        client = redis.Redis(port=runtime.port, socket_timeout=30)
        code = "GB('StreamReader').foreach(lambda x: execute('incr', 'NumOfElements')).register(regex='s', batch=5)"
        assert client.execute_command("RG.PYEXECUTE", code) == b"OK"
        for _ in range(5):
            client.xadd("s", {"foo": "bar"})
        wait_for(lambda: client.get("NumOfElements") == b"5", what="the first batch of five")
        for _ in range(4):
            client.xadd("s", {"foo": "bar"})  # a batch of 5 waits for one more
        client.save()
        assert client.execute_command("DEBUG", "RELOAD", "NOSAVE") == b"OK"
        wait_for(lambda: client.get("NumOfElements") == b"9", what="the four entries after the reload")


def test_debug_reload_starts_the_scripts_again_with_fresh_globals_shared_by_a_sessions_registrations(
    tmp_path: Path,
) -> None:
    """RedisGears deserializes its registrations from the data it loads: a session's globals start again
    (one dictionary for all its registrations), whatever the steps had changed before."""
    with running_stack(tmp_path, ["--enable-debug-command", "yes"]) as (_, runtime):
        client = redis.Redis(port=runtime.port, socket_timeout=30)
        code = (
            "g = 1\n"
            "def bump(x):\n"
            "    global g\n"
            "    g = g + 1\n"
            "    return g\n"
            "GB('CommandReader').map(bump).register(trigger='one', convertToStr=False)\n"
            "GB('CommandReader').map(bump).register(trigger='two', convertToStr=False)\n"
        )
        assert client.execute_command("RG.PYEXECUTE", code) == b"OK"
        for _ in range(2):
            assert client.execute_command("RG.TRIGGER", "one") == [2]
            assert client.execute_command("RG.TRIGGER", "two") == [3]
            assert client.execute_command("DEBUG", "RELOAD") == b"OK"
            # new registrations, as RedisGears deserializes them: counters from zero, no finished executions
            assert [r["RegistrationData"]["numTriggered"] for r in registrations(client)] == [0, 0]
            assert client.execute_command("RG.DUMPEXECUTIONS") == []


def test_a_command_hook_answers_commands_sent_through_the_runtime(rg: redis.Redis) -> None:
    code = "GB('CommandReader').map(lambda x: 'hooked ' + str(call_next(*x[1:]))).register(hook='hset', mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("HSET", "h", "f", "v") == b"hooked 1"
    assert rg.hget("h", "f") == b"v"
    # With a key prefix only the matching keys go through the hook.
    code = "GB('CommandReader').map(lambda x: 'seen').register(hook='lpush', keyprefix='hk:', mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("LPUSH", "hk:1", "x") == b"seen"
    assert rg.exists("hk:1") == 0  # the hook did not call call_next
    assert rg.execute_command("LPUSH", "plain", "x") == 1
    # Outside a hook, call_next says so as RedisGears does.
    results, errors = pyexecute(rg, "GB('ShardsIDReader').map(lambda x: call_next('x')).run()")
    assert results == [] and b"Can not get CommandHook ctx" in errors[0]


def test_an_async_step_calls_into_hooks_and_triggers_of_its_own_worker(rg: redis.Redis) -> None:
    """An `async def` step that calls call_next() or execute('RG.TRIGGER') holds its worker's loop until the
    runtime answers, and the answer is another execution of the same worker: it runs, as RedisGears runs it
    inline, without async records (Redis denies blocking to the module's own calls). Before, both hung."""
    inner = "def inner(x):\n    return 'plain ' + str(call_next(*x[1:]))\n"
    assert pyexecute(rg, inner + "GB('CommandReader').map(inner).register(hook='hset', mode='sync')") == b"OK"
    outer = "async def outer(x):\n    return 'async ' + str(call_next(*x[1:]))\n"
    assert pyexecute(rg, outer + "GB('CommandReader').map(outer).register(hook='hset', mode='sync')") == b"OK"
    assert rg.execute_command("HSET", "h-nested", "f", "v") == b"async plain 1"
    # A hook reached through call_next() may not create async records, as on RedisGears.
    nested = "async def nested(x):\n    return str(call_next(*x[1:]))\n"
    assert pyexecute(rg, nested + "GB('CommandReader').map(nested).register(hook='lpush', mode='sync')") == b"OK"
    assert pyexecute(rg, outer + "GB('CommandReader').map(outer).register(hook='lpush', mode='sync')") == b"OK"
    assert "Creating async record is not allowed" in error_of(rg, "LPUSH", "l-nested", "x")
    triggers = (
        "GB('CommandReader').map(lambda x: 'inner').register(trigger='inner', mode='sync')\n"
        "async def later(x):\n    return 'never'\n"
        "GB('CommandReader').map(later).register(trigger='inner-async', mode='sync')\n"
        "async def outer(x):\n"
        "    done = [str(execute('RG.TRIGGER', 'inner'))]\n"
        "    try:\n"
        "        execute('RG.TRIGGER', 'inner-async')\n"
        "    except Exception as e:\n"
        "        done.append(str(e))\n"
        "    return ' '.join(done)\n"
        "GB('CommandReader').map(outer).register(trigger='outer', mode='sync')\n"
    )
    assert pyexecute(rg, triggers) == b"OK"
    assert rg.execute_command("RG.TRIGGER", "outer") == [b"['inner'] Creating async record is not allowed"]


def test_command_hooks_are_refused_where_redisgears_refuses_them(rg: redis.Redis) -> None:
    def error(code: str) -> str:
        return error_of(rg, "RG.PYEXECUTE", code)

    assert error("GB('CommandReader').register(hook='nosuchcommand', mode='sync')") == (
        "Can not override an unexisting command"
    )
    assert error("GB('CommandReader').register(hook='multi', mode='sync')") == (
        "Can not override a command which are not allowed inside a script"
    )
    assert pyexecute(rg, "GB('CommandReader').flatmap(lambda x: x).register(hook='lpush')") == b"OK"
    assert error("GB('CommandReader').flatmap(lambda x: x).register(hook='lpush')") == (
        "Can not override a none sync registration"
    )
    assert pyexecute(rg, "GB('CommandReader').flatmap(lambda x: x).register(hook='rpush', mode='sync')") == b"OK"
    assert error_of(rg, "RPUSH", "l", "a") == "Command hook must return exactly one result"


def test_futures_and_coroutines_follow_redisgears_rules(rg: redis.Redis) -> None:
    assert "Future object can only be created inside certain execution steps" in error_of(
        rg, "RG.PYEXECUTE", "gearsFuture()"
    )
    _, errors = pyexecute(rg, "GB('ShardsIDReader').repartition(lambda x: gearsFuture()).run()")
    assert b"Step does not support async" in errors[0]
    _, errors = pyexecute(rg, "GB('ShardsIDReader').batchgroupby(lambda x: x, lambda k, l: gearsFuture()).run()")
    assert b"Step does not support async" in errors[0]
    coroutine = "import asyncio\nasync def c(r):\n    await asyncio.sleep(0.01)\n    return r\n"
    _, errors = pyexecute(rg, coroutine + "GB('ShardsIDReader').map(c).repartition(c).run()")
    assert b"coroutine are not allow on" in errors[0]
    twice = "def f(r):\n    gearsFuture()\n    gearsFuture()\n    return r\nGB('ShardsIDReader').map(f).run()"
    _, errors = pyexecute(rg, twice)
    assert b"Can not create async record twice on the same step" in errors[0]
    early = "def f(r):\n    g = gearsFuture()\n    g.continueRun(r)\n    return g\nGB('ShardsIDReader').map(f).run()"
    _, errors = pyexecute(rg, early)
    assert b"Can not handle future untill it returned from the callback" in errors[0]


def test_a_reducer_that_makes_a_future_and_keeps_it_leaves_none_as_redisgears(rg: redis.Redis) -> None:
    """RedisGears completes a future an accumulate or groupby reducer made but did not return with None in the
    accumulator's place, dropping what the reducer returned or raised (test_async's NoneAsyncResult)."""
    keep = "held = []\ndef f(a, *rest):\n    held.append(gearsFuture())\n"
    returned = keep + "    return 'returned'\n"
    raised = keep + "    raise Exception('raised')\n"
    for body in (returned, raised):
        assert pyexecute(rg, body + "GB('ShardsIDReader').accumulate(f).run()") == [[b"None"], []]
        got = pyexecute(rg, body + "GB('ShardsIDReader').groupby(lambda x: 'k', f).run()")
        assert got == [[b"{'key': 'k', 'value': None}"], []]
    # A map's return value still counts: only reducers give their accumulator up.
    assert pyexecute(rg, keep + "    return 'm'\nGB('ShardsIDReader').map(lambda r: f(r) or 'm').run()") == [[b"m"], []]


def test_a_blocking_run_is_dropped_once_it_answered(rg: redis.Redis) -> None:
    for execution in rg.execute_command("RG.DUMPEXECUTIONS"):
        rg.execute_command("RG.DROPEXECUTION", execution[1])
    code = "GB('ShardsIDReader').map(lambda x: len(execute('RG.DUMPEXECUTIONS'))).run()"
    assert pyexecute(rg, code) == [[b"1"], []]  # only itself, while it runs
    assert pyexecute(rg, code) == [[b"1"], []]  # the first one is gone
    assert rg.execute_command("RG.DUMPEXECUTIONS") == []
    unblocking = pyexecute(rg, "GB('ShardsIDReader').run()", "UNBLOCKING")
    rg.execute_command("RG.GETRESULTSBLOCKING", unblocking)
    assert [e[1] for e in rg.execute_command("RG.DUMPEXECUTIONS")] == [unblocking]  # kept until dropped


def test_rg_trigger_inside_multi_runs_sync_registrations_without_async_records(rg: redis.Redis) -> None:
    code = (
        "def where(r):\n"
        "    if isAsyncAllow():\n"
        "        async def later():\n"
        "            return 'outside'\n"
        "        return later()\n"
        "    return 'inside'\n"
        "GB('CommandReader').map(where).register(trigger='multi-where', mode='sync')\n"
        "GB('CommandReader').map(lambda r: gearsFuture()).register(trigger='multi-future', mode='sync')\n"
        "GB('CommandReader').map(lambda r: 'async').register(trigger='multi-async')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("RG.TRIGGER", "multi-where") == [b"outside"]
    with rg.pipeline(transaction=True) as pipe:
        pipe.execute_command("RG.TRIGGER", "multi-where")
        pipe.set("multi-key", "1")
        pipe.execute_command("RG.TRIGGER", "multi-future")
        pipe.execute_command("RG.TRIGGER", "multi-async")
        pipe.execute_command("RG.TRIGGER", "no-such-trigger")
        replies = pipe.execute(raise_on_error=False)
    assert replies[:2] == [[b"inside"], True]
    assert "Creating async record is not allowed" in str(replies[2])
    assert "can not run a non-sync execution inside a MULTI/LUA" in str(replies[3])
    assert "subcommand not found" in str(replies[4])
    # A transaction that does not run (a WATCHed key changed) runs none of them.
    counting = "GB('CommandReader').foreach(lambda r: execute('INCR', 'multi-runs')).register(trigger='multi-count', mode='sync')"
    assert pyexecute(rg, counting) == b"OK"
    with rg.pipeline(transaction=True) as pipe:
        pipe.watch("multi-watched")
        rg.set("multi-watched", "changed")
        pipe.multi()
        pipe.execute_command("RG.TRIGGER", "multi-count")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert rg.get("multi-runs") is None


def test_argument_errors_use_redisgears_words(rg: redis.Redis) -> None:
    assert "wrong number of args" in error_of(rg, "RG.PYEXECUTE", "GB().map(lambda x: x, 1).run()")
    assert "wrong number of args" in error_of(rg, "RG.PYEXECUTE", "GB().limit().run()")
    assert "pyreader argument must be a function" in error_of(rg, "RG.PYEXECUTE", "GB('PythonReader').run('*')")
    assert "fromId" in error_of(rg, "RG.PYEXECUTE", "GB('StreamReader').run('s', fromId=1)")
    assert "boolean" in error_of(rg, "RG.PYEXECUTE", "GB().run(noScan=1)")
    assert "type is not string" in error_of(rg, "RG.PYEXECUTE", "GB().register(regex='*', eventTypes=[1, 2])")
    assert "time argument must be a long" in error_of(rg, "RG.PYEXECUTE", "registerTE('x', lambda: 1)")
    rg.xadd("s", {"foo": "bar"})
    assert pyexecute(rg, "GB('StreamReader').run('s', fromId='test')") == [
        [], [b"ERR Invalid stream ID specified as stream command argument"],
    ]  # fmt: skip


def test_registration_stats_can_be_cleared(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB().register(prefix='cs:*')") == b"OK"
    rg.set("cs:1", "x")
    wait_for(lambda: registration(rg)["RegistrationData"]["numSuccess"] == 1, what="one run")
    assert rg.execute_command("RG.CLEARREGISTRATIONSSTATS") == b"OK"
    data = registration(rg)["RegistrationData"]
    assert (data["numTriggered"], data["numSuccess"], data["lastRunDurationMS"]) == (0, 0, 0)


def test_configuration_fixed_at_start_cannot_be_set(rg: redis.Redis) -> None:
    (reply,) = rg.execute_command("RG.CONFIGSET", "DependenciesSha256", "/")
    assert "(error)" in str(reply)
    assert rg.execute_command("RG.CONFIGSET", "MaxExecutions", "1000") == [b"OK"]


def test_pyprofile_reports_a_sessions_steps(rg: redis.Redis) -> None:
    assert rg.execute_command("RG.CONFIGSET", "ProfileExecutions", "1") == [b"OK"]
    try:
        code = "def map_func(r):\n    return r\nGB('CommandReader').map(map_func).register(trigger='profiled')"
        assert pyexecute(rg, code, "ID", "profiled-session") == b"OK"
        rg.execute_command("RG.TRIGGER", "profiled")
        assert b"map_func" in rg.execute_command("RG.PYPROFILE", "STATS", "profiled-session")
        assert b"map_func" in rg.execute_command("RG.PYPROFILE", "STATS", "profiled-session", "ncalls")
        assert rg.execute_command("RG.PYPROFILE", "RESET", "profiled-session") == b"OK"
        assert "no profile information" in error_of(rg, "RG.PYPROFILE", "STATS", "profiled-session")
    finally:
        rg.execute_command("RG.CONFIGSET", "ProfileExecutions", "0")


def test_a_keys_reader_hooks_the_commands_it_names(rg: redis.Redis) -> None:
    code = (
        "GB().foreach(lambda x: override_reply('key does not exists'))"
        ".register(eventTypes=['keymiss'], commands=['get', 'mget'], mode='sync')"
    )
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("GET", "missing-key") == b"key does not exists"
    rg.set("present", "v")
    assert rg.execute_command("GET", "present") == b"v"  # no keymiss: the command's own reply
    # Inside MULTI, as on RedisGears, the sync registration runs on its command's events (at EXEC here)
    # and its override takes that command's place in EXEC's reply.
    with rg.pipeline(transaction=True) as pipe:
        pipe.get("missing-key").set("later", "1").get("later").get("present").mget("missing-too", "present")
        assert pipe.execute() == [b"key does not exists", True, b"1", b"v", b"key does not exists"]
    with rg.pipeline(transaction=True) as pipe:  # a transaction that does not run runs no registration
        pipe.get("missing-key").execute_command("SET", "bad-arity")
        with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
            pipe.execute()
    assert "command type is not string" in error_of(rg, "RG.PYEXECUTE", "GB().register(commands=[1])")
    assert "not allowed inside a script" in error_of(rg, "RG.PYEXECUTE", "GB().register(commands=['multi'])")


def test_a_keys_reader_on_commands_reads_its_command_and_overrides_its_reply_once(rg: redis.Redis) -> None:
    """get_command() gives the command's arguments as strings; the command's one reply is shared by every
    execution it triggered (RedisGears' command context), so a second override_reply() fails."""
    code = (
        "def answer(x):\n"
        "    override_reply(' '.join(get_command()))\n"
        "    try:\n"
        "        override_reply('again')\n"
        "    except Exception as e:\n"
        "        execute('RPUSH', 'asked-errors', str(e))\n"
        "GB().foreach(answer).register(prefix='asked*', eventTypes=['keymiss'], commands=['get', 'mget'], mode='sync')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("GET", "asked-1") == b"GET asked-1"  # as the client sent it
    assert rg.lrange("asked-errors", 0, -1) == [b"Can only override reply once"]
    # Two missing keys: two executions, one command; the second one's first override is refused.
    assert rg.execute_command("MGET", "asked-2", "asked-3") == b"MGET asked-2 asked-3"
    assert rg.lrange("asked-errors", 0, -1) == [b"Can only override reply once"] * 2
    assert b"Can only override reply once" in registration(rg)["RegistrationData"]["lastError"]
    # Outside such an execution both say so in RedisGears' words, in a command hook too.
    for call in ("get_command()", "override_reply('x')"):
        results, errors = pyexecute(rg, f"GB('ShardsIDReader').map(lambda x: {call}).run()")
        assert results == [] and b"Can not get command ctx" in errors[0]
    code = "GB('CommandReader').map(lambda x: override_reply('x')).register(hook='hincrby', mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    assert "Can not get command ctx" in error_of(rg, "HINCRBY", "h-asked", "f", "1")


def test_inside_multi_a_hooking_registration_that_is_not_sync_runs_but_cannot_override(rg: redis.Redis) -> None:
    code = (
        "def seen(x):\n"
        "    execute('INCR', 'ran-not-sync')\n"
        "    override_reply('overridden')\n"
        "GB().foreach(seen).register(prefix='not-sync*', eventTypes=['keymiss'], commands=['get'], mode='async_local')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    with rg.pipeline(transaction=True) as pipe:
        pipe.get("not-sync-missing").get("elsewhere")
        assert pipe.execute() == [None, None]
    wait_for(lambda: rg.get("ran-not-sync") == b"1", what="the async_local registration's run after EXEC")
    assert rg.execute_command("GET", "not-sync-missing") == b"overridden"  # outside MULTI it may


def test_keys_only_reader_run_takes_scan_count_and_a_pattern_generator(rg: redis.Redis) -> None:
    rg.mset({"kor-a": "1", "kor-b": "1", "other": "1"})
    code = "GB('KeysOnlyReader').sort().run(patternGenerator=lambda: ['kor-a', 'oth*'])"
    assert pyexecute(rg, code) == [[b"kor-a", b"other"], []]
    assert pyexecute(rg, "GB('KeysOnlyReader').sort().run('kor-*', count=1)") == [[b"kor-a", b"kor-b"], []]
    # Bad values fail the execution with what went wrong (Redis' words for COUNT), not silently.
    assert b"value is not an integer" in pyexecute(rg, "GB('KeysOnlyReader').run(count='many')")[1][0]
    errors = pyexecute(rg, "GB('KeysOnlyReader').run(patternGenerator='kor-*')")[1]
    assert b"object is not callable" in errors[0] and b"concurrent" not in errors[0]


def test_syntax_errors_say_invalid_syntax_as_python_3_7_did(rg: redis.Redis) -> None:
    error = error_of(rg, "RG.PYEXECUTE", "1defs + GB().run()")
    assert "SyntaxError: invalid syntax (invalid decimal literal)" in error and "line 1" in error


def test_an_async_step_awaits_a_run_as_results_and_errors_and_can_override_a_reply(rg: redis.Redis) -> None:
    code = (
        "async def answer(r):\n"
        "    results, errors = await GB('ShardsIDReader').map(lambda x: 1 / 0 if x == 'never' else 'ok').run()\n"
        "    override_reply('%s: %s results, %s errors' % (get_command()[1], len(results), len(errors)))\n"
        "GB().foreach(answer).register(prefix='awaited*', eventTypes=['keymiss'], commands=['get'], mode='async')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("GET", "awaited-missing") == b"awaited-missing: 1 results, 0 errors"


def test_keys_reader_runs_do_not_read_the_runtimes_session_store(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB().register(prefix='never-written')", "ID", "stored-session") == b"OK"
    rg.set("gearcam:visible", "1")
    assert pyexecute(rg, "GB().map(lambda r: r['key']).run('gearcam:*')") == [[b"gearcam:visible"], []]
    assert pyexecute(rg, "GB('KeysOnlyReader').run('gearcam:*')") == [[b"gearcam:visible"], []]


def test_a_sync_stream_reader_has_run_when_the_xadd_answers(rg: redis.Redis) -> None:
    code = (
        "def count(r):\n"
        "    if execute('GET', 'sync-paused') == 'yes':\n"
        "        flat_error('PAUSE')\n"
        "    execute('INCR', 'sync-count:' + r['key'])\n"
        "GB('StreamReader').foreach(count).register(prefix='sync-s*', mode='sync')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    rg.xadd("sync-s1", {"f": "v"})
    rg.xadd("sync-s2", {"f": "v"})
    assert rg.mget("sync-count:sync-s1", "sync-count:sync-s2") == [b"1", b"1"]  # no wait: ran before the reply
    # A batch that pauses its registration answers the writer too; the entry runs after the unpause.
    rg.set("sync-paused", "yes")
    rg.xadd("sync-s1", {"f": "v"})
    assert rg.get("sync-count:sync-s1") == b"1"
    rg.set("sync-paused", "no")
    assert rg.execute_command("RG.UNPAUSEREGISTRATIONS", registration(rg)["id"]) == b"OK"
    wait_for(lambda: rg.get("sync-count:sync-s1") == b"2", what="the paused entry after the unpause")


def test_event_types_match_case_insensitively(rg: redis.Redis) -> None:
    code = "GB().foreach(lambda r: execute('SET', r['key'] + ':seen', '1')).register('upper*', eventTypes=['SET'], mode='sync')"
    assert pyexecute(rg, code) == b"OK"
    rg.set("upper1", "x")
    assert rg.get("upper1:seen") == b"1"


def test_an_await_inside_atomic_is_refused_and_releases_the_block(rg: redis.Redis) -> None:
    code = (
        "import asyncio\n"
        "async def hold(x):\n"
        "    with atomic():\n"
        "        await asyncio.sleep(1)\n"
        "GB('ShardsIDReader').map(hold).run()\n"
    )
    results, errors = pyexecute(rg, code)
    assert results == [] and b"await is not allow inside atomic block" in errors[0]
    fine = (
        "import asyncio\n"
        "async def between(x):\n"
        "    await asyncio.sleep(0.05)\n"
        "    with atomic():\n"
        "        execute('SET', 'atomic-after', '1')\n"
        "    await asyncio.sleep(0.05)\n"
        "    return 'fine'\n"
        "GB('ShardsIDReader').map(between).run()\n"
    )
    assert pyexecute(rg, fine) == [[b"fine"], []]
    assert rg.get("atomic-after") == b"1"


def test_a_keys_reader_cannot_hook_a_command_with_movable_keys(rg: redis.Redis) -> None:
    error = error_of(rg, "RG.PYEXECUTE", "GB().register(commands=['xread'])")
    assert "Can not hook a command with moveable keys by key prefix" in error
    assert rg.execute_command("RG.DUMPREGISTRATIONS") == []


def test_a_hook_reply_starting_with_a_sign_is_a_status_or_an_error_as_on_redisgears(rg: redis.Redis) -> None:
    code = "GB().foreach(lambda x: override_reply('-not allowed')).register(prefix='signed*', commands=['set'])"
    assert pyexecute(rg, code) == b"OK"
    assert error_of(rg, "SET", "signed1", "1") == "not allowed"
    assert pyexecute(rg, "GB('CommandReader').map(lambda x: '+fine').register(hook='hset', mode='sync')") == b"OK"
    assert rg.hset("signed-h", "a", "b") == b"fine"


def test_gears_code_cannot_call_a_command_an_async_hook_owns(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB('CommandReader').register(hook='append')") == b"OK"
    results, errors = pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('APPEND', 'hooked', '1')).run()")
    assert results == [] and b"blocking is not allowed" in errors[0]
    assert rg.get("hooked") is None
    # Other commands, and the command once the hook is gone, reach Redis as before.
    assert pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('SET', 'hooked', '1')).run()") == [[b"OK"], []]
    unregister_all(rg)
    wait_for(
        lambda: (
            pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('APPEND', 'hooked', '2')).run()") == [[b"2"], []]
        ),
        what="the hook's removal to reach the worker",
    )


def test_gears_code_calls_go_through_sync_hooks_as_redisgears_filters_its_own_calls(rg: redis.Redis) -> None:
    # RedisGears' CommandReader filter is registered without NOSELF: the module's own RM_Calls are hooked too.
    audit = (
        "def audit(x):\n"
        "    execute('INCR', 'audited')\n"
        "    return call_next(x[1], x[2].upper())\n"
        "GB('CommandReader').map(audit).register(hook='set', keyprefix='audit:', mode='sync')\n"
    )
    assert pyexecute(rg, audit, "ID", "code-hook") == b"OK"
    wait_for(
        lambda: (
            pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('SET', 'audit:1', 'a')).run()") == [[b"OK"], []]
        ),
        what="the hook to reach the worker",
    )
    assert rg.get("audit:1") == b"A" and rg.get("audited") == b"1"
    # Other keys than the prefix' reach Redis as before, from Gears code as from a client.
    assert pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('SET', 'plain:1', 'a')).run()") == [[b"OK"], []]
    assert rg.get("plain:1") == b"a" and rg.get("audited") == b"1"
    assert rg.set("audit:2", "b") and rg.get("audit:2") == b"B" and rg.get("audited") == b"2"
    # A registration's steps too: a trigger whose step writes through the hook, with the hook's reply.
    trigger = "GB('CommandReader').map(lambda x: execute('SET', 'audit:' + x[1], 'c')).register(trigger='audit-it')"
    assert pyexecute(rg, trigger, "ID", "code-trigger") == b"OK"
    assert rg.execute_command("RG.TRIGGER", "audit-it", "3") == [b"OK"]
    assert rg.get("audit:3") == b"C" and rg.get("audited") == b"3"
    # A hook's own reply, not Redis', is what the code gets; on RedisAI's commands too.
    replaced = "GB('CommandReader').map(lambda x: 'replaced').register(hook='AI.TENSORGET', mode='sync')"
    assert pyexecute(rg, replaced, "ID", "code-ai-hook") == b"OK"
    rg.execute_command("AI.TENSORSET", "code-t", "FLOAT", 1, "VALUES", 7)
    read = "GB('ShardsIDReader').map(lambda x: execute('AI.TENSORGET', 'code-t', 'VALUES')).run()"
    assert pyexecute(rg, read) == [[b"replaced"], []]
    unregister_all(rg)
    wait_for(
        lambda: (
            pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('SET', 'audit:4', 'd')).run()") == [[b"OK"], []]
            and rg.get("audit:4") == b"d"
        ),
        what="the hooks' removal to reach the worker",
    )
    assert pyexecute(rg, read) == [[b"['7']"], []]


def test_a_hook_that_executes_its_own_command_is_stopped_with_an_error_naming_call_next(rg: redis.Redis) -> None:
    # Inside Redis this recurses until the stack overflows; here the nesting is bounded and the error says why.
    looping = "GB('CommandReader').map(lambda x: execute('INCR', x[1])).register(hook='incr', mode='sync')"
    assert pyexecute(rg, looping, "ID", "looping-hook") == b"OK"
    message = error_of(rg, "INCR", "loops")
    assert "Gears executions nested more than 32 deep" in message and "call_next()" in message
    assert rg.get("loops") is None
    # The worker and the runtime go on serving.
    assert pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('SET', 'after-loop', '1')).run()") == [
        [b"OK"],
        [],
    ]
    unregister_all(rg)
    assert rg.incr("loops") == 1


def test_triggers_from_gears_code_nest_deeper_than_the_execution_threads(rg: redis.Redis) -> None:
    # RedisGears runs a sync trigger reached through RM_Call inline, on the calling thread; here its steps run on
    # threads of their own, so a chain deeper than ExecutionThreads (8 by default: each waiting step holds one)
    # finishes instead of waiting for a thread that never frees.
    chain = (
        "def down(x):\n"
        "    n = int(x[1])\n"
        "    return n if n == 0 else int(execute('RG.TRIGGER', 'down', str(n - 1))[0]) + n\n"
        "GB('CommandReader').map(down).register(trigger='down', mode='sync')\n"
    )
    assert pyexecute(rg, chain, "ID", "trigger-chain") == b"OK"
    assert rg.execute_command("RG.TRIGGER", "down", "12") == [b"78"]
    # One that triggers itself without end stops 32 deep with an error saying why (inside Redis it recurses
    # until the stack overflows); the RedisAI and RedisGears commands of Gears code run at any depth.
    forever = (
        "def again(x):\n"
        "    execute('AI.TENSORSET', 'deep-t', 'FLOAT', 1, 'VALUES', x[1])\n"
        "    return execute('RG.TRIGGER', 'again', str(int(x[1]) + 1))\n"
        "GB('CommandReader').map(again).register(trigger='again', mode='sync')\n"
    )
    assert pyexecute(rg, forever, "ID", "trigger-forever") == b"OK"
    assert "Gears executions nested more than 32 deep" in error_of(rg, "RG.TRIGGER", "again", "0")
    assert rg.execute_command("AI.TENSORGET", "deep-t", "VALUES") == [b"32"]  # it ran 33 times, 0 to 32
    assert rg.execute_command("RG.TRIGGER", "down", "3") == [b"6"]


def test_atomic_blocks_of_a_caller_and_of_what_its_call_runs_inside_it_do_not_wait_for_each_other(
    rg: redis.Redis,
) -> None:
    # RedisGears' atomic() holds Redis' lock, and a hook or trigger the enclosed call runs inline on the same thread
    # enters it too; here they run on threads of their own and share the caller's atomic() (before 2026-12-07 they
    # waited for it until the execution time limit).
    hook = (
        "def guarded(x):\n"
        "    with atomic():\n"
        "        execute('INCR', 'guarded-seen')\n"
        "        return call_next(*x[1:])\n"
        "GB('CommandReader').map(guarded).register(hook='set', keyprefix='guarded:', mode='sync')\n"
        "def inner(x):\n"
        "    with atomic():\n"
        "        return execute('INCR', 'guarded-inner')\n"
        "GB('CommandReader').map(inner).register(trigger='guarded-inner', mode='sync')\n"
    )
    assert pyexecute(rg, hook, "ID", "atomic-hooks") == b"OK"
    code = (
        "def outer(x):\n"
        "    with atomic():\n"
        "        execute('SET', 'guarded:1', 'v')\n"
        "        return execute('RG.TRIGGER', 'guarded-inner')\n"
        "GB('ShardsIDReader').map(outer).run()\n"
    )
    wait_for(lambda: pyexecute(rg, code)[1] == [] and rg.get("guarded-seen") == b"1", what="the hook in the worker")
    assert rg.get("guarded:1") == b"v" and int(rg.get("guarded-inner")) >= 1
    # Another execution's atomic() still waits for the one holding it.
    holder = (
        "import time\n"
        "def hold(x):\n"
        "    with atomic():\n"
        "        execute('SET', 'held', '1')\n"
        "        time.sleep(1)\n"
        "        execute('SET', 'held', '2')\n"
        "GB('ShardsIDReader').map(hold).run()\n"
    )
    started = pyexecute(rg, holder, "UNBLOCKING")
    wait_for(lambda: rg.get("held") == b"1", what="the holder in its atomic block")
    waiter = (
        "def wait(x):\n"
        "    with atomic():\n"
        "        return execute('GET', 'held')\n"
        "GB('ShardsIDReader').map(wait).run()\n"
    )
    assert started and pyexecute(rg, waiter) == [[b"2"], []]


def test_a_trigger_a_clients_hook_reaches_by_call_next_enters_the_hooks_atomic_block(rg: redis.Redis) -> None:
    # A client's RG.TRIGGER through a hook on it: the hook's call_next() runs the trigger inline in RedisGears, under
    # the Redis lock the hook's atomic() holds; here the trigger nests under the hook's execution and shares its
    # atomic() (before 2026-12-08 it started a chain of its own and waited for the hook until the time limit).
    code = (
        "def guard(x):\n"
        "    with atomic():\n"
        "        execute('INCR', 'trigger-guarded')\n"
        "        return call_next(*x[1:])\n"
        "GB('CommandReader').map(guard).register(hook='RG.TRIGGER', mode='sync')\n"
        "def inner(x):\n"
        "    with atomic():\n"
        "        return execute('INCR', 'trigger-inner')\n"
        "GB('CommandReader').map(inner).register(trigger='inner-guarded', mode='sync')\n"
    )
    assert pyexecute(rg, code, "ID", "trigger-hook") == b"OK"
    assert rg.execute_command("RG.TRIGGER", "inner-guarded") == b"['1']"  # the hook's result, as a string
    assert rg.get("trigger-guarded") == b"1" and rg.get("trigger-inner") == b"1"
    unregister_all(rg)


def test_gears_code_meets_a_non_sync_hook_by_key_prefix_with_redisgears_refusal(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB('CommandReader').register(hook='append', keyprefix='slow:')") == b"OK"
    wait_for(
        lambda: (
            b"blocking is not allowed"
            in pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('APPEND', 'slow:probe', 'a')).run()")[1][0]
        ),
        what="the hook to reach the worker",
    )
    refused = pyexecute(rg, "GB('ShardsIDReader').map(lambda x: execute('APPEND', 'slow:1', 'a')).run()")
    assert refused[0] == [] and b"can not run a non-sync execution inside a MULTI/LUA" in refused[1][0]
    assert rg.get("slow:1") is None
    done = "GB('ShardsIDReader').map(lambda x: execute('APPEND', 'fast:1', 'a')).run()"
    assert pyexecute(rg, done) == [[b"1"], []]


def test_requirement_installation_needed_marks_the_first_session_asking_for_a_requirement(rg: redis.Redis) -> None:
    def needed(session_id: str) -> Any:
        (entry,) = [e for e in rg.execute_command("RG.PYDUMPSESSIONS") if e[1] == session_id.encode()]
        return entry[entry.index(b"requirementInstallationNeeded") + 1]

    code = "GB('CommandReader').register(trigger='{}')"
    # numpy is in the Gears virtualenv already: nothing is installed, but this requirement is new to the runtime.
    first = pyexecute(rg, code.format("req-first"), "ID", "req-first", "REQUIREMENTS", "numpy>=1.0.1")
    assert first == b"OK"
    assert pyexecute(rg, code.format("req-second"), "ID", "req-second", "REQUIREMENTS", "numpy>=1.0.1") == b"OK"
    assert pyexecute(rg, code.format("req-none"), "ID", "req-none") == b"OK"
    assert (needed("req-first"), needed("req-second"), needed("req-none")) == (1, 0, 0)


def test_slow_gears_commands_appear_in_slowlog_with_the_backing_redis_entries(rg: redis.Redis) -> None:
    rg.execute_command("SLOWLOG", "RESET")
    nap = 'GB("ShardsIDReader").foreach(lambda x: __import__("time").sleep(0.1)).run()'
    assert pyexecute(rg, nap) == [[b"1"], []]
    code = "GB('CommandReader').foreach(lambda x: __import__('time').sleep(0.1)).register(trigger='slow-trigger')"
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("RG.TRIGGER", "slow-trigger") == [b"['slow-trigger']"]
    entries = rg.execute_command("SLOWLOG", "GET", "-1")
    assert entries[0][3] == [b"RG.TRIGGER", b"slow-trigger"] and entries[0][2] >= 100_000
    assert [b"RG.PYEXECUTE", nap.encode()] in [e[3] for e in entries]
    assert rg.execute_command("SLOWLOG", "LEN") == len(entries)
    assert rg.execute_command("SLOWLOG", "RESET") == b"OK"
    assert rg.execute_command("SLOWLOG", "LEN") == 0


def test_a_future_nobody_can_complete_fails_its_record(rg: redis.Redis) -> None:
    code = (
        "def dropped(r):\n    return gearsFuture()\nGB('CommandReader').map(dropped).register(trigger='dropped-future')"
    )
    assert pyexecute(rg, code) == b"OK"
    assert error_of(rg, "RG.TRIGGER", "dropped-future") == "Async record did not called continue"


def test_gears_code_does_not_see_the_runtimes_session_store_in_keys_or_scan(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB().register(prefix='never-written')", "ID", "keys-session") == b"OK"
    assert rg.exists("gearcam:gears:sessions") == 1
    code = "GB('ShardsIDReader').map(lambda x: [execute('KEYS', 'gearcam:*'), execute('SCAN', '0', 'MATCH', 'gearcam:*')[1]]).run()"
    assert pyexecute(rg, code) == [[b"[[], []]"], []]


def test_an_inorder_command_reader_runs_its_executions_in_trigger_order(rg: redis.Redis) -> None:
    code = (
        "import time\n"
        "def push(r):\n"
        "    if r[2] == 'first':\n"
        "        time.sleep(0.5)\n"
        "    return execute('RPUSH', r[1], r[2])\n"
        "GB('CommandReader').map(push).register(trigger='push-inorder', mode='async_local', inorder=True)\n"
        "GB('CommandReader').map(push).register(trigger='push-any', mode='async_local')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    for trigger, key in (("push-inorder", "order-kept"), ("push-any", "order-free")):
        first = threading.Thread(target=rg.execute_command, args=("RG.TRIGGER", trigger, key, "first"))
        first.start()
        wait_for(
            lambda: any(e[3] == b"running" for e in rg.execute_command("RG.DUMPEXECUTIONS")), what="the first trigger"
        )
        rg.execute_command("RG.TRIGGER", trigger, key, "second")
        first.join(10)
    assert rg.lrange("order-kept", 0, -1) == [b"first", b"second"]
    assert rg.lrange("order-free", 0, -1) == [b"second", b"first"]


def test_a_step_can_register_into_its_running_session(rg: redis.Redis) -> None:
    code = (
        "def add(r):\n"
        "    GB('CommandReader').map(lambda x: '+OK').register(trigger=r[1], mode='sync')\n"
        "GB('CommandReader').foreach(add).map(lambda x: '+OK').register(trigger='adder', mode='sync')\n"
    )
    assert pyexecute(rg, code, "ID", "growing") == b"OK"
    assert len(rg.execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "growing")[0][-1]) == 1
    assert rg.execute_command("RG.TRIGGER", "adder", "added") == [b"OK"]  # '+OK': a status reply
    assert len(rg.execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "growing")[0][-1]) == 2
    assert rg.execute_command("RG.TRIGGER", "added") == [b"OK"]
    assert "trigger already registered" in error_of(rg, "RG.TRIGGER", "adder", "added")
    # A script that registered nothing at load has no session to add to: a clear error.
    results, errors = pyexecute(rg, "GB('ShardsIDReader').foreach(lambda x: GB().register('never')).run()")
    assert results == [] and b"register() from a step needs a session" in errors[0]


def test_a_step_cannot_register_a_callback_that_does_not_serialize(rg: redis.Redis) -> None:
    """The same check as at load time: RedisGears pickles every registration's callbacks when it registers."""
    code = (
        "import threading\n"
        "def add(r):\n"
        "    lock = threading.Lock()  # made in the step: the script itself pickles\n"
        "    GB('CommandReader').map(lambda x: str(lock.locked())).register(trigger=r[1], mode='sync')\n"
        "    return '+OK'\n"
        "def fine(r):\n"
        "    GB('CommandReader').map(lambda x: execute('GET', 'k') or hashtag()).register(trigger=r[1], mode='sync')\n"
        "    return '+OK'\n"
        "GB('CommandReader').map(add).register(trigger='add-locked', mode='sync')\n"
        "GB('CommandReader').map(fine).register(trigger='add-fine', mode='sync')\n"
    )
    assert pyexecute(rg, code, "ID", "serializing") == b"OK"
    error = error_of(rg, "RG.TRIGGER", "add-locked", "locked")
    assert error.startswith("Error occured when serialized a python callback, callback=<lambda> error=TypeError")
    assert "_thread.lock" in error
    assert "subcommand not found" in error_of(rg, "RG.TRIGGER", "locked")  # nothing was registered
    assert len(rg.execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "serializing")[0][-1]) == 2
    # What the environment provides (execute, hashtag) pickles by name, as at load time.
    assert rg.execute_command("RG.TRIGGER", "add-fine", "fine") == [b"OK"]
    assert rg.execute_command("RG.TRIGGER", "fine") == [b"06S"]


def test_records_flow_through_the_steps_one_by_one_as_redisgears_pulls_them(rg: redis.Redis) -> None:
    # RedisGears pulls each record through every map/filter/foreach before the next one starts, so
    # side effects interleave per record, and errors come in record order.
    for key in ("o1", "o2", "o3"):
        rg.set(key, "1")
    code = (
        "seen = []\n"
        "def a(r):\n"
        "    seen.append('a' + r[1])\n"
        "    if r == 'o2': raise ValueError('a fails o2')\n"
        "    return r\n"
        "def b(r):\n"
        "    seen.append('b' + r[1])\n"
        "    if r == 'o1': raise ValueError('b fails o1')\n"
        "    return r\n"
        "GB('KeysOnlyReader').sort().map(a).map(b).collect().accumulate(lambda acc, r: ' '.join(seen)).run('o*')\n"
    )
    results, errors = pyexecute(rg, code)
    assert results == [b"a1 b1 a2 a3 b3"]
    assert [e.split(b"ValueError: ")[-1] for e in errors] == [b"b fails o1", b"a fails o2"]


def test_an_async_step_of_one_record_overlaps_the_next_records_steps(rg: redis.Redis) -> None:
    # The last record's plain step waits for the first record's coroutine: were the steps run one
    # after the other for the whole batch, no coroutine would have started yet (it fails after 3 s).
    for key in ("p1", "p2", "p3"):
        rg.set(key, "1")
    code = (
        "import threading\n"
        "first_done = threading.Event()\n"
        "def mark(r):\n"
        "    if r == 'p3' and not first_done.wait(3):\n"
        "        raise RuntimeError('p1 waited until p3 was read')\n"
        "    return r\n"
        "async def run_model(r):\n"
        "    if r == 'p1': first_done.set()\n"
        "    return r\n"
        "GB('KeysOnlyReader').sort().map(mark).map(run_model).map(lambda r: r.upper()).run('p*')\n"
    )
    results, errors = pyexecute(rg, code)
    assert errors == []
    # Outputs keep the records' order, whichever resolved first.
    assert results == [b"P1", b"P2", b"P3"]


def test_a_future_a_step_made_and_dropped_logs_no_error(rg: redis.Redis, runtime: Runtime) -> None:
    """The step returned something else: its record goes on, and the dropped future's failure is nobody's error."""
    code = (
        "def made(r):\n    gearsFuture()\n    return 'went on'\n"
        "GB('CommandReader').map(made).register(trigger='made-future')"
    )
    assert pyexecute(rg, code) == b"OK"
    logged = len(runtime.output())
    for _ in range(3):
        assert rg.execute_command("RG.TRIGGER", "made-future") == [b"went on"]
    # A line the same worker logs afterwards: once it is in the log, so is anything logged before it.
    pyexecute(rg, "GB('ShardsIDReader').foreach(lambda x: log('after-dropped-futures', level='warning')).run()")
    wait_for(lambda: "after-dropped-futures" in runtime.output()[logged:], "the worker's next log line")
    assert "was never retrieved" not in runtime.output()[logged:]


def test_keys_reader_registrations_do_not_run_on_ai_writes_as_redisai_causes_no_key_events(rg: redis.Redis) -> None:
    # RedisAI stores and deletes its objects through the module API (no keyspace event), so a KeysReader on
    # their keys runs only for what clients do to them with Redis' own commands (here SET and DEL).
    from tests.runtime.models import add_model

    flags = rg.config_get("notify-keyspace-events")["notify-keyspace-events"]
    rg.config_set("notify-keyspace-events", flags + "m")  # key misses too, as a Gears keymiss hook turns on
    try:
        pyexecute(rg, "GB('KeysReader').foreach(lambda x: execute('HINCRBY', 'hits', x['event'], 1))"
                      ".register(prefix='kr:*', mode='sync', readValue=False)")  # fmt: skip
        rg.execute_command("AI.TENSORSET", "kr:t", "FLOAT", 1, "VALUES", 1)  # a new key: the checked commit
        rg.execute_command("AI.TENSORSET", "kr:t", "FLOAT", 1, "VALUES", 2)  # over a tensor: a plain SET
        rg.execute_command("AI.MODELSTORE", "kr:m", "ONNX", "CPU", "BLOB", add_model())
        rg.execute_command("AI.MODELDEL", "kr:m")
        assert rg.execute_command("AI.TENSORGET", "kr:t", "VALUES") == [b"2"]
        with pytest.raises(redis.ResponseError, match="empty"):
            rg.execute_command("AI.TENSORGET", "kr:absent")  # a read of a missing key: one miss, as RedisAI's
        assert rg.type("kr:absent") == b"none"  # and TYPE's own, as Redis' TYPE
        rg.set("kr:s", "v")  # sync: when SET answers, its run and any for the events before it have run
        assert rg.hgetall("hits") == {b"keymiss": b"2", b"set": b"1"}
        rg.delete("kr:t")
        wait_for(lambda: rg.hgetall("hits") == {b"keymiss": b"2", b"set": b"1", b"del": b"1"}, what="the DEL's run")
    finally:
        rg.config_set("notify-keyspace-events", flags)


def test_a_keys_readers_executions_run_in_the_order_of_their_events(rg: redis.Redis) -> None:
    """RedisGears creates a KeysReader's execution inside the key event, and runs them one at a time: the
    runtime reads each event's key on its own (in parallel), and still triggers in the events' order."""
    code = "GB().foreach(lambda r: execute('RPUSH', 'event-order', r['key'])).register(prefix='ordered:*')"
    assert pyexecute(rg, code, "ID", "event-order") == b"OK"
    keys = [f"ordered:{n}".encode() for n in range(60)]
    pipe = rg.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, b"x" * (1 + 5000 * (int(key[8:]) % 3 == 0)))  # some values take longer to read
    pipe.execute()
    got = wait_for(lambda: len(g := rg.lrange("event-order", 0, -1)) == len(keys) and g, what="every execution")
    assert got == keys


def test_triggeronkey_is_rg_trigger_with_its_first_argument_a_key(rg: redis.Redis) -> None:
    # RedisGears' own example (docs/commands.md, RG.TRIGGERONKEY), and the same record RG.TRIGGER makes.
    code = (
        "GB('CommandReader').map(lambda x: execute('set', x[1], x[2])).register(trigger='on-key-set', mode='sync')\n"
        "GB('CommandReader').map(lambda x: str(x)).register(trigger='on-key-echo', mode='sync')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    assert rg.execute_command("RG.TRIGGERONKEY", "on-key-set", "on-key", "bar") == [b"OK"]
    assert rg.get("on-key") == b"bar"
    echoed = rg.execute_command("RG.TRIGGERONKEY", "on-key-echo", "k", "a", "1")
    assert echoed == [b"['on-key-echo', 'k', 'a', '1']"]
    assert rg.execute_command("RG.TRIGGER", "on-key-echo", "k", "a", "1") == echoed
    # From Gears code, as RM_Call reaches it inside Redis.
    nested = "GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGERONKEY', 'on-key-echo', 'k2')).run()"
    assert pyexecute(rg, nested) == [[b"[\"['on-key-echo', 'k2']\"]"], []]
    # No key: RedisGears runs it all the same (Redis finds no key and leaves the arity to the module).
    assert rg.execute_command("RG.TRIGGERONKEY", "on-key-echo") == [b"['on-key-echo']"]
    assert error_of(rg, "RG.TRIGGERONKEY") == "ERR wrong number of arguments for 'rg.triggeronkey' command"
    assert error_of(rg, "RG.TRIGGERONKEY", "no-such-trigger", "k") == "ERR subcommand not found"
    # Inside MULTI as RG.TRIGGER: at EXEC, sync registrations only.
    assert pyexecute(rg, "GB('CommandReader').map(lambda r: 'async').register(trigger='on-key-async')") == b"OK"
    with rg.pipeline(transaction=True) as pipe:
        pipe.execute_command("RG.TRIGGERONKEY", "on-key-set", "on-key", "in-multi")
        pipe.execute_command("RG.TRIGGERONKEY", "on-key-async", "k")
        replies = pipe.execute(raise_on_error=False)
    assert replies[0] == [b"OK"] and rg.get("on-key") == b"in-multi"
    assert "can not run a non-sync execution inside a MULTI/LUA" in str(replies[1])
    # From Gears code too (Redis denies blocking to RM_Call): a non-sync registration is refused there.
    results, errors = pyexecute(
        rg, "GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGERONKEY', 'on-key-async', 'k')).run()"
    )
    assert results == [] and b"can not run a non-sync execution inside a MULTI/LUA" in errors[0]


def test_the_python_plugins_retired_commands_say_so(rg: redis.Redis) -> None:
    # Still registered by RedisGears 1.2.7; each answers a bulk string (not an error) and does nothing.
    assert rg.execute_command("RG.PYEXECUTEREMOTE", "GB().run()") == b"Execute remote is not longer supported"
    assert rg.execute_command("RG.PYFREEINTERPRETER") == b"Free interpreter is not longer supported"
    assert pyexecute(rg, "GB('ShardsIDReader').map(lambda x: 'alive').run()") == [[b"alive"], []]


def test_command_hooks_hook_redisai_and_redisgears_commands_too(rg: redis.Redis) -> None:
    # RedisGears' command filter sees every command, a module's too, and call_next() is an RM_Call of it.
    counting = (
        "def count(x):\n"
        "    execute('INCR', 'hooked-sets')\n"
        "    return call_next(*x[1:])\n"
        "GB('CommandReader').map(count).register(hook='AI.TENSORSET', mode='sync')\n"
    )
    assert pyexecute(rg, counting, "ID", "ai-hook") == b"OK"
    assert rg.execute_command("AI.TENSORSET", "hooked-t", "FLOAT", 2, "VALUES", 1, 2) == b"OK"
    assert rg.get("hooked-sets") == b"1"
    assert rg.execute_command("AI.TENSORGET", "hooked-t", "VALUES") == [b"1", b"2"]
    assert rg.execute_command("TYPE", "hooked-t") == b"AI_TENSOR"
    # The command's errors reach the hook (and the client) as RedisAI's.
    assert error_of(rg, "AI.TENSORSET", "hooked-t", "FLOAT", 2, "VALUES", 1) == (
        "ERR wrong number of values was given in 'AI.TENSORSET' command"
    )
    assert rg.get("hooked-sets") == b"2"
    # By key prefix: AI.TENSORGET (readonly, key 1) of the prefix' keys only; a command that reports its keys
    # itself (AI.MODELEXECUTE, movablekeys) is refused one, as RedisGears refuses it.
    prefixed = "GB('CommandReader').map(lambda x: 'seen ' + x[1]).register(hook='AI.TENSORGET', keyprefix='seen:')"
    assert pyexecute(rg, prefixed, "ID", "ai-prefix-hook") == b"OK"
    rg.execute_command("AI.TENSORSET", "seen:t", "FLOAT", 1, "VALUES", 3)
    assert rg.execute_command("AI.TENSORGET", "seen:t", "VALUES") == b"seen seen:t"
    assert rg.execute_command("AI.TENSORGET", "hooked-t", "VALUES") == [b"1", b"2"]
    refused = "GB('CommandReader').register(hook='AI.MODELEXECUTE', keyprefix='m:')"
    assert "Can not override a command with moveable keys by key prefix" in error_of(rg, "RG.PYEXECUTE", refused)
    # KeysReader(commands=[...]) on a RedisAI command registers, and never runs: RedisAI's writes cause no key
    # events, here as inside Redis (docs/runtime.md).
    keyed = "GB().foreach(lambda x: execute('INCR', 'key-hooked')).register(commands=['AI.TENSORSET'], mode='sync')"
    assert pyexecute(rg, keyed, "ID", "ai-key-hook") == b"OK"
    assert "moveable keys" in error_of(rg, "RG.PYEXECUTE", "GB().register(commands=['AI.MODELEXECUTE'])")
    assert rg.execute_command("AI.TENSORSET", "key-hooked-t", "FLOAT", 1, "VALUES", 4) == b"OK"
    assert rg.get("key-hooked") is None
    # A blocking RedisGears command reached through call_next() answers as RM_Call gets it.
    blocked = "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='RG.PYEXECUTE', mode='sync')"
    assert pyexecute(rg, blocked, "ID", "rg-hook") == b"OK"
    assert "Can not run gears inside a multi exec" in error_of(rg, "RG.PYEXECUTE", "GB().run()")
    unregister_all(rg)
    assert rg.get("hooked-sets") == b"4"  # seen:t's and key-hooked-t's AI.TENSORSET went through the hook too
    assert rg.execute_command("AI.TENSORSET", "hooked-t", "FLOAT", 1, "VALUES", 5) == b"OK"
    assert rg.get("hooked-sets") == b"4"  # unregistered: the command is the module's alone again
