"""RG.PYEXECUTE with run(): the reference's examples, every operation and reader, and the reply shapes."""

from __future__ import annotations

import time

import redis

from tests.runtime.conftest import error_of
from tests.runtime.gears_helpers import pyexecute, rg, wait_for

__all__ = ["rg"]


def test_word_count_over_keys(rg: redis.Redis) -> None:
    rg.set("doc:1", "the cat sat")
    rg.set("doc:2", "the cat ran")
    rg.hset("not-a-string", "f", "v")
    results, errors = pyexecute(
        rg, "GB().filter(lambda r: r['type'] == 'string').flatmap(lambda r: r['value'].split()).countby().run('doc:*')"
    )
    assert errors == []
    counted = {eval(x)["key"]: eval(x)["value"] for x in results}
    assert counted == {"the": 2, "cat": 2, "sat": 1, "ran": 1}


def test_keys_reader_records_have_the_reference_shape(rg: redis.Redis) -> None:
    rg.set("k", "v")
    rg.hset("h", mapping={"a": "1"})
    rg.rpush("l", "x")
    results, errors = pyexecute(
        rg,
        "GB().map(lambda r: repr(sorted(r.items()))).run()",
    )
    records = sorted(eval(x.decode()) for x in results)
    assert errors == []
    assert [("event", None), ("key", "h"), ("type", "hash"), ("value", {"a": "1"})] in records
    assert [("event", None), ("key", "k"), ("type", "string"), ("value", "v")] in records
    assert [("event", None), ("key", "l"), ("type", "list"), ("value", ["x"])] in records  # lists are read too


def test_run_without_results_answers_two_empty_arrays(rg: redis.Redis) -> None:
    assert pyexecute(rg, "GB().run()") == [[], []]


def test_a_script_without_run_answers_ok(rg: redis.Redis) -> None:
    assert pyexecute(rg, "x = 1") == b"OK"


def test_operations_give_redisgears_results(rg: redis.Redis) -> None:
    rg.mset({f"n:{i}": str(i) for i in range(1, 7)})
    base = "GB().map(lambda r: int(r['value']))"
    assert pyexecute(rg, base + ".count().run('n:*')") == [[b"6"], []]
    assert pyexecute(rg, base + ".avg().run('n:*')") == [[b"3.5"], []]
    # As on RedisGears: sort()'s flatmap pops the sorted list from its end, so the default comes out ascending.
    assert pyexecute(rg, base + ".sort().run('n:*')")[0] == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert pyexecute(rg, base + ".sort(reverse=False).limit(2, 1).run('n:*')")[0] == [b"5", b"4"]
    assert sorted(pyexecute(rg, base + ".map(lambda x: x % 2).distinct().run('n:*')")[0]) == [b"0", b"1"]
    assert pyexecute(rg, base + ".aggregate(0, lambda a, r: a + r, lambda a, r: a + r).run('n:*')") == [[b"21"], []]
    assert pyexecute(rg, base + ".accumulate(lambda a, r: (a or 0) + r).run('n:*')") == [[b"21"], []]
    by_parity = pyexecute(rg, base + ".groupby(lambda x: x % 2, lambda k, a, r: (a or 0) + r).run('n:*')")[0]
    # Group keys are strings, as RedisGears makes them (the extractor's str, or else its repr).
    assert sorted(by_parity) == [b"{'key': '0', 'value': 12}", b"{'key': '1', 'value': 9}"]
    batched = pyexecute(rg, base + ".batchgroupby(lambda x: x % 2, lambda k, rs: sorted(rs)).run('n:*')")[0]
    assert sorted(batched) == [b"{'key': '0', 'value': [2, 4, 6]}", b"{'key': '1', 'value': [1, 3, 5]}"]
    summed = pyexecute(rg, base + ".aggregateby(lambda x: x % 3, 0, lambda k, a, r: a + r, lambda k, a, r: a + r)"
                           ".map(lambda r: (r['key'], r['value'])).run('n:*')")[0]  # fmt: skip
    assert sorted(summed) == [b"('0', 9)", b"('1', 5)", b"('2', 7)"]
    local = pyexecute(rg, base + ".localgroupby(lambda x: 'all', lambda k, a, r: (a or 0) + 1).run('n:*')")[0]
    assert local == [b"{'key': 'all', 'value': 6}"]
    kept = pyexecute(rg, base + ".filter(lambda x: x > 4).foreach(lambda x: x * 100).repartition(lambda x: x)"
                         ".collect().run('n:*')")[0]  # fmt: skip
    assert sorted(kept) == [b"5", b"6"]


def test_convert_to_str_false_returns_typed_records(rg: redis.Redis) -> None:
    rg.set("n:1", "41")
    assert pyexecute(rg, "GB().map(lambda r: int(r['value']) + 1).run('n:*', convertToStr=False)") == [[42], []]


def test_other_readers_in_batch_mode(rg: redis.Redis) -> None:
    rg.set("a:1", "x")
    rg.set("a:2", "y")
    assert sorted(pyexecute(rg, "GB('KeysOnlyReader').run('a:*')")[0]) == [b"a:1", b"a:2"]
    # '1', as RedisGears' GearsBuilder reads it outside a cluster (gears-cli's own test expects it), not the node id.
    assert pyexecute(rg, "GB('ShardsIDReader').run()") == [[b"1"], []]
    code = "def gen():\n    yield 1\n    yield 2\nGB('PythonReader').map(lambda x: x * 10).run(gen)"
    assert pyexecute(rg, code) == [[b"10", b"20"], []]
    first = rg.xadd("s", {"f": "1"})
    rg.xadd("s", {"f": "2"})
    records = pyexecute(rg, "GB('StreamReader').map(lambda r: (r['key'], r['value']['f'])).run('s')")[0]
    assert records == [b"('s', '1')", b"('s', '2')"]
    assert pyexecute(rg, f"GB('StreamReader').map(lambda r: r['value']['f']).run('s', fromId='{first.decode()}')") == [
        [b"2"],
        [],
    ]


def test_a_step_that_raises_on_one_record_counts_an_error_and_keeps_the_others(rg: redis.Redis) -> None:
    rg.mset({"n:1": "1", "n:0": "0", "n:2": "2"})
    results, errors = pyexecute(rg, "GB().map(lambda r: 10 // int(r['value'])).run('n:*')")
    assert sorted(results) == [b"10", b"5"]
    assert len(errors) == 1 and b"ZeroDivisionError" in errors[0]


def test_unblocking_returns_an_execution_id_and_the_execution_commands_work(rg: redis.Redis) -> None:
    rg.set("x", "1")
    execution_id = pyexecute(rg, "GB().map(lambda r: r['key']).run()", "UNBLOCKING")
    assert execution_id.startswith(b"0" * 40 + b"-")
    assert rg.execute_command("RG.GETRESULTSBLOCKING", execution_id) == [[b"x"], []]
    assert rg.execute_command("RG.GETRESULTS", execution_id) == [[b"x"], []]
    dumped = [e for e in rg.execute_command("RG.DUMPEXECUTIONS") if e[1] == execution_id]
    assert dumped == [[b"executionId", execution_id, b"status", b"done", b"registered", 0]]
    (shard,) = rg.execute_command("RG.GETEXECUTION", execution_id)
    assert shard[:3] == [b"shard_id", b"0" * 40, b"execution_plan"]
    plan = dict(zip(shard[3][::2], shard[3][1::2], strict=True))
    assert plan[b"status"] == b"done" and plan[b"results"] == 1 and plan[b"errors"] == []
    assert [step[1] for step in plan[b"steps"]][-1] == b"map"
    assert rg.execute_command("RG.DROPEXECUTION", execution_id) == b"OK"
    assert error_of(rg, "RG.GETRESULTS", execution_id) == "execution plan does not exist"
    assert error_of(rg, "RG.GETEXECUTION", execution_id) == "execution plan does not exist"
    assert error_of(rg, "RG.DROPEXECUTION", execution_id) == "execution plan does not exist"
    assert error_of(rg, "RG.GETEXECUTION", b"0" * 40 + b"-999999", "CLUSTER") == "execution plan does not exist"


def test_a_long_execution_can_be_aborted(rg: redis.Redis) -> None:
    code = "import asyncio\nasync def slow(x):\n    await asyncio.sleep(60)\n    return x\nGB('ShardsIDReader').map(slow).run()"
    execution_id = pyexecute(rg, code, "UNBLOCKING")
    assert error_of(rg, "RG.GETRESULTS", execution_id) == "execution is still running"
    assert (
        error_of(rg, "RG.DROPEXECUTION", execution_id) == "can not drop a not yet finished execution, abort it first."
    )
    assert rg.execute_command("RG.ABORTEXECUTION", execution_id) == b"OK"
    wait_for(
        lambda: [e for e in rg.execute_command("RG.DUMPEXECUTIONS") if e[1] == execution_id and e[3] == b"aborted"]
    )
    assert error_of(rg, "RG.ABORTEXECUTION", "nope") == "execution does not exist"


def test_script_errors_are_clear_error_replies(rg: redis.Redis) -> None:
    syntax = error_of(rg, "RG.PYEXECUTE", "GB().map(lambda x: ).run()")
    assert "SyntaxError" in syntax and "line 1" in syntax
    raised = error_of(rg, "RG.PYEXECUTE", "raise ValueError('bad config value 7')")
    assert "ValueError: bad config value 7" in raised and 'File "<string>", line 1' in raised
    assert (
        error_of(rg, "RG.PYEXECUTE", "GB().run()\nGB().run()")
        == "Can not run more then 1 executions in a single script"
    )
    assert "given reader does not exists" in error_of(rg, "RG.PYEXECUTE", "GB('NoSuchReader').run()")
    assert error_of(rg, "RG.PYEXECUTE", "GB('CommandReader').run()") == "Given reader do not support run or not exists"
    assert error_of(rg, "RG.PYEXECUTE", "GB()", "BOGUS") == "Unknown arguments were given: BOGUS"
    assert error_of(rg, "RG.PYEXECUTE", "GB()", "ID") == "ID is missing"
    assert error_of(rg, "RG.PYEXECUTE", "GB()", "ID", "bad id!") == (
        "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"
    )
    assert error_of(rg, "RG.PYEXECUTE") == "ERR wrong number of arguments for 'rg.pyexecute' command"
    assert rg.ping()


def test_execute_returns_redisgears_types_and_raises_on_error_replies(rg: redis.Redis) -> None:
    rg.set("jpeg", b"\xff\xd8\xff\xe0binary")
    rg.set("text", "plain")
    code = (
        "def probe(_):\n"
        "    out = [type(execute('GET', 'jpeg')).__name__, execute('GET', 'text'), execute('INCR', 'counter'),\n"
        "           execute('GET', 'missing'), execute('SET', 'copy', execute('GET', 'jpeg'))]\n"
        "    try:\n"
        "        execute('HGET', 'text', 'f')\n"
        "    except Exception as e:\n"
        "        out.append(type(e).__name__ + ': ' + str(e)[:9])\n"
        "    return out\n"
        "GB('ShardsIDReader').map(probe).run()"
    )
    (result,), errors = pyexecute(rg, code)
    assert errors == []
    assert eval(result) == ["bytearray", "plain", 1, None, "OK", "GearsError: WRONGTYPE"]
    assert rg.get("copy") == b"\xff\xd8\xff\xe0binary"


def test_execute_refuses_what_would_leave_the_connection_dirty(rg: redis.Redis) -> None:
    code = (
        "def step(_):\n"
        "    out = []\n"
        "    for command in (('MULTI',), ('SELECT', '9'), ('WATCH', 'k'), ('SUBSCRIBE', 'c')):\n"
        "        try:\n"
        "            execute(*command)\n"
        "        except GearsError as e:\n"
        "            out.append(str(e).split(' ')[0])\n"
        "    execute('SET', 'clean-after', 'yes')\n"
        "    return out\n"
        "GB('ShardsIDReader').map(step).run()"
    )
    (result,), errors = pyexecute(rg, code)
    assert errors == []
    assert eval(result) == ["MULTI", "SELECT", "WATCH", "SUBSCRIBE"]
    # The write after them landed in DB 0 at once, not queued in a transaction or in DB 9.
    assert rg.get("clean-after") == b"yes"


def test_blocking_commands_return_at_once_from_gears_code(rg: redis.Redis) -> None:
    rg.delete("gears-empty-list")
    rg.rpush("gears-full-list", "a")
    code = (
        "def step(_):\n"
        "    return [execute('BLPOP', 'gears-empty-list', '0'), execute('BLPOP', 'gears-full-list', '0'),\n"
        "            execute('XREAD', 'BLOCK', '0', 'STREAMS', 'gears-no-stream', '$')]\n"
        "GB('ShardsIDReader').map(step).run()"
    )
    started = time.monotonic()
    (result,), errors = pyexecute(rg, code)
    assert errors == []
    assert eval(result) == [None, ["gears-full-list", "a"], None]
    assert time.monotonic() - started < 20  # BLPOP ... 0 would block forever on Redis itself
