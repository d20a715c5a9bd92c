"""Executions as RedisGears 1.2 keeps them: ExecutionThreads, `created` and abort, MaxExecutions, unregister."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.runtime.conftest import running_stack
from tests.runtime.gears_helpers import pairs, pyexecute, registration, rg, wait_for

__all__ = ["rg"]

# A step that loops in Python, so an abort can stop it; it counts itself in `spinning` once inside.
SPIN = "import time\ndef spin(r):\n    execute('INCR', 'spinning')\n    while True:\n        time.sleep(0.05)\n"


@pytest.fixture
def one_thread(tmp_path: Path) -> Iterator[redis.Redis]:
    """A stack whose Gears worker has one ExecutionThread, as RedisGears' `ExecutionThreads 1`.

    Its abort grace is long: these tests check how an abort ends an execution, and a worker replaced
    because a busy machine let 2 s pass before the stopped step was reported would end it `aborted`.
    """
    yield from _threads(tmp_path, 1)


@pytest.fixture
def two_threads(tmp_path: Path) -> Iterator[redis.Redis]:
    """As `one_thread`, with two ExecutionThreads."""
    yield from _threads(tmp_path, 2)


def _threads(tmp_path: Path, threads: int) -> Iterator[redis.Redis]:
    env = {"GEARCAM_RUNTIME__GEARS_EXECUTION_THREADS": str(threads), "GEARCAM_RUNTIME__GEARS_ABORT_GRACE": "30"}
    with running_stack(tmp_path, env=env) as (_, runtime):
        yield redis.Redis(port=runtime.port, protocol=2, socket_timeout=60)


def _status(client: redis.Redis, execution_id: bytes) -> Any:
    (shard,) = client.execute_command("RG.GETEXECUTION", execution_id)
    return pairs(pairs(shard)["execution_plan"])["status"]


def _errors(client: redis.Redis, execution_id: bytes) -> list[bytes]:
    (shard,) = client.execute_command("RG.GETEXECUTION", execution_id)
    errors: list[bytes] = pairs(pairs(shard)["execution_plan"])["errors"]
    return errors


def _statuses(client: redis.Redis) -> list[bytes]:
    return [entry[3] for entry in client.execute_command("RG.DUMPEXECUTIONS")]


def test_an_execution_waits_created_for_a_thread_and_abort_treats_each_state_as_redisgears(
    one_thread: redis.Redis,
) -> None:
    client = one_thread
    first = pyexecute(client, SPIN + "GB('ShardsIDReader').map(spin).run()", "UNBLOCKING")
    second = pyexecute(client, SPIN + "GB('ShardsIDReader').map(spin).run()", "UNBLOCKING")
    wait_for(lambda: _status(client, first) == b"running", what="the first execution to take the thread")
    wait_for(lambda: client.get("spinning") == b"1", what="the first execution to enter its step")
    assert _status(client, second) == b"created"
    # Not started: aborted. In a step: the step fails, and the execution is done with that one error.
    assert client.execute_command("RG.ABORTEXECUTION", second) == b"OK"
    assert _status(client, second) == b"aborted"
    assert client.execute_command("RG.ABORTEXECUTION", first) == b"OK"
    # (Seen once in a whole CI run with a 2 s grace: `aborted`. Its errors say which way it ended: a replaced
    # worker names the abort grace, a stop outside a step has none.)
    assert _status(client, first) == b"done", _errors(client, first)
    assert len(_errors(client, first)) == 1
    assert client.execute_command("RG.DROPEXECUTION", first) == b"OK"
    assert client.execute_command("RG.DROPEXECUTION", second) == b"OK"


def test_an_abort_that_reaches_the_worker_before_the_execution_has_begun_there_aborts_it(
    two_threads: redis.Redis,
) -> None:
    """Found in CI: the abort of a `created` execution arrived in its worker before the execution itself had
    begun there (its request waiting for the worker's loop), found nothing to stop, and the runtime waited
    out the abort grace and replaced the worker; the execution then ended `done` with the worker's error."""
    client = two_threads
    first = pyexecute(client, SPIN + "GB('ShardsIDReader').map(spin).run()", "UNBLOCKING")
    wait_for(lambda: client.get("spinning") == b"1", what="the first execution to take a thread")
    # An async step that holds the worker's loop for a while (blocking it, as no step should), then goes on
    # holding the other thread: the next execution's request waits for the loop, and then for a thread.
    blocker = (
        SPIN + "import time\n"
        "async def hold_the_loop(r):\n"
        "    execute('SET', 'holding', '1')\n"
        "    time.sleep(4)\n"
        "    return r\n"
        "GB('ShardsIDReader').map(hold_the_loop).map(spin).run()"
    )
    holding = pyexecute(client, blocker, "UNBLOCKING")
    wait_for(lambda: client.get("holding") == b"1", what="the async step to hold the loop")
    second = pyexecute(client, SPIN + "GB('ShardsIDReader').map(spin).run()", "UNBLOCKING")
    time.sleep(0.5)  # the runtime sends it to the worker, whose loop is still held
    assert _status(client, second) == b"created"
    assert client.execute_command("RG.ABORTEXECUTION", second) == b"OK"
    assert _status(client, second) == b"aborted", _errors(client, second)
    assert _errors(client, second) == []
    for running in (first, holding):
        wait_for(lambda r=running: _status(client, r) == b"running", what="the others to go on running")
        assert client.execute_command("RG.ABORTEXECUTION", running) == b"OK"
        assert _status(client, running) == b"done"


def test_an_execution_awaiting_an_async_step_gives_its_thread_to_another(one_thread: redis.Redis) -> None:
    client = one_thread
    slow = "import asyncio\nasync def nap(r):\n    await asyncio.sleep(60)\n    return r\n"
    waiting = pyexecute(client, slow + "GB('ShardsIDReader').map(nap).run()", "UNBLOCKING")
    wait_for(lambda: _status(client, waiting) == b"running", what="the async execution to start")
    assert pyexecute(client, "GB('ShardsIDReader').map(lambda r: 'meanwhile').run()") == [[b"meanwhile"], []]
    # Awaiting, it is not in a step: an abort ends it `aborted`, as RedisGears aborts a paused execution.
    assert client.execute_command("RG.ABORTEXECUTION", waiting) == b"OK"
    assert _status(client, waiting) == b"aborted"


def test_execution_ids_count_apart_from_registration_ids_and_max_executions_keeps_the_newest(
    rg: redis.Redis,
) -> None:
    rg.execute_command("RG.CONFIGSET", "MaxExecutions", "3")
    try:
        before = {e[1] for e in rg.execute_command("RG.DUMPEXECUTIONS")}
        assert pyexecute(rg, "GB().map(lambda r: str(r)).register('maxexec')") == b"OK"
        for value in range(4):
            rg.set("maxexec", value)
        wait_for(lambda: registration(rg)["RegistrationData"]["numSuccess"] == 4, what="four executions")
        wait_for(lambda: len(rg.execute_command("RG.DUMPEXECUTIONS")) == 3, what="trimming to MaxExecutions")
        ids = [int(e[1].rsplit(b"-", 1)[1]) for e in rg.execute_command("RG.DUMPEXECUTIONS")]
        assert ids == sorted(ids) and ids[1:] == [ids[0] + 1, ids[0] + 2]
        assert not before & {e[1] for e in rg.execute_command("RG.DUMPEXECUTIONS")}
    finally:
        rg.execute_command("RG.CONFIGSET", "MaxExecutions", "1000")


def test_max_executions_per_registration_drops_executions_once_they_finished(rg: redis.Redis) -> None:
    rg.execute_command("RG.CONFIGSET", "MaxExecutionsPerRegistration", "1")
    try:
        assert pyexecute(rg, "GB().register('perreg*')") == b"OK"
        for n in range(20):
            rg.set(f"perreg{n}", "1")
        wait_for(lambda: registration(rg)["RegistrationData"]["numSuccess"] == 20, what="twenty executions")
        wait_for(lambda: len(_statuses(rg)) == 1, what="one execution kept")
    finally:
        rg.execute_command("RG.CONFIGSET", "MaxExecutionsPerRegistration", "100")


def test_unregister_abortpending_aborts_queued_executions_and_drops_the_registrations_executions(
    one_thread: redis.Redis,
) -> None:
    client = one_thread
    code = (
        "calls = 0\n"
        "def third_spins(r):\n"
        "    import time\n"
        "    global calls\n"
        "    calls += 1\n"
        "    while calls == 3:\n"
        "        time.sleep(0.05)\n"
        "    return r\n"
        "GB().map(third_spins).register('unreg*', mode='async_local')\n"
    )
    assert pyexecute(client, code) == b"OK"
    for key in ("unreg1", "unreg2", "unreg3", "unreg4"):
        client.set(key, "1")
    wait_for(lambda: sorted(_statuses(client)) == [b"created", b"done", b"done", b"running"], what="one queued")
    run_id = pyexecute(client, "GB('KeysOnlyReader').run()", "UNBLOCKING")
    assert client.execute_command("RG.UNREGISTER", registration(client)["id"], "ABORTPENDING") == b"OK"
    # The queued ones are aborted and dropped with the finished ones; the running one goes once it ends.
    running = [e[1] for e in client.execute_command("RG.DUMPEXECUTIONS") if e[3] == b"running"]
    assert sorted(e[1] for e in client.execute_command("RG.DUMPEXECUTIONS")) == sorted([*running, run_id])
    for execution_id in running:
        assert client.execute_command("RG.ABORTEXECUTION", execution_id) == b"OK"
    wait_for(lambda: [e[1] for e in client.execute_command("RG.DUMPEXECUTIONS")] == [run_id], what="the run only")
    wait_for(lambda: _status(client, run_id) == b"done", what="the queued run() to run")


def test_aborting_an_awaiting_execution_does_not_wait_for_a_thread(one_thread: redis.Redis) -> None:
    client = one_thread
    slow = "import asyncio\nasync def nap(r):\n    await asyncio.sleep(60)\n    return r\n"
    waiting = pyexecute(client, slow + "GB('ShardsIDReader').map(nap).run()", "UNBLOCKING")
    wait_for(lambda: _status(client, waiting) == b"running", what="the async execution to start")
    spinning = pyexecute(client, SPIN + "GB('ShardsIDReader').map(spin).run()", "UNBLOCKING")
    wait_for(lambda: _status(client, spinning) == b"running", what="the spinning execution to hold the thread")
    wait_for(lambda: client.get("spinning") == b"1", what="the spinning execution to enter its step")
    assert client.execute_command("RG.ABORTEXECUTION", waiting) == b"OK"
    assert _status(client, waiting) == b"aborted"
    # The worker was not replaced for it: the spinning step is still the one running, and stops on abort.
    assert _status(client, spinning) == b"running"
    assert client.execute_command("RG.ABORTEXECUTION", spinning) == b"OK"
    assert _status(client, spinning) == b"done"


def test_a_registrations_executions_run_one_at_a_time_unless_one_awaits(rg: redis.Redis) -> None:
    """RedisGears runs a KeysReader's (and StreamReader's) executions on the registration's own worker, one
    after the other, while other registrations and run() calls use the other ExecutionThreads; one
    awaiting an async step lets the next run meanwhile."""
    code = (
        "import time\n"
        "def busy(r):\n"
        "    execute('RPUSH', 'seen', execute('INCR', 'inside'))\n"
        "    time.sleep(0.2)\n"
        "    execute('DECR', 'inside')\n"
        "GB().foreach(busy).register(prefix='one:*')\n"
        "async def waits(r):\n"
        "    execute('RPUSH', 'seen2', execute('INCR', 'inside2'))\n"
        "    await asyncio.sleep(0.3)\n"
        "    execute('DECR', 'inside2')\n"
        "import asyncio\n"
        "GB().foreach(waits).register(prefix='two:*')\n"
    )
    assert pyexecute(rg, code) == b"OK"
    for n in range(3):
        rg.set(f"one:{n}", "x")
        rg.set(f"two:{n}", "x")
    wait_for(lambda: b"created" in _statuses(rg), what="an execution waiting for the registration's turn")
    wait_for(lambda: rg.llen("seen") == 3 and rg.llen("seen2") == 3, what="every execution")
    assert rg.lrange("seen", 0, -1) == [b"1", b"1", b"1"]  # never two of them at once
    assert b"2" in rg.lrange("seen2", 0, -1)  # an awaiting one gave its turn to the next


def test_a_pause_aborts_the_stream_executions_still_waiting_and_counts_them_before_its_reply(
    rg: redis.Redis,
) -> None:
    code = "import time\nGB('StreamReader').foreach(lambda r: time.sleep(0.3)).foreach(lambda r: execute('RPUSH', 'done', r['key'])).register(prefix='pz:*', mode='async_local')"
    assert pyexecute(rg, code) == b"OK"
    reg_id = registration(rg)["id"]
    for n in range(6):
        rg.xadd(f"pz:{n}", {"v": "1"})
    wait_for(lambda: rg.llen("done") >= 1, what="a first batch")
    assert rg.execute_command("RG.PAUSEREGISTRATIONS", reg_id) == b"OK"
    data = registration(rg)["RegistrationData"]
    assert data["status"] == b"PAUSED" and data["numAborted"] >= 1
    wait_for(lambda: (lambda d: d["numSuccess"] + d["numFailures"] + d["numAborted"] == d["numTriggered"])(
        registration(rg)["RegistrationData"]), what="the batch in flight to end")  # fmt: skip
    assert rg.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == b"OK"
    wait_for(lambda: sorted(rg.lrange("done", 0, -1)) == [f"pz:{n}".encode() for n in range(6)],
             what="every entry once, the aborted ones after the resume", timeout=30)  # fmt: skip


def test_the_trigger_of_an_xadd_shows_in_dumps_answered_after_it(rg: redis.Redis) -> None:
    """In RedisGears an XADD creates the StreamReader's execution before its reply; here the key event comes
    after it, so the dumps wait until what the client's writes triggered exists."""
    assert (
        pyexecute(rg, "import time\nGB('StreamReader').foreach(lambda r: time.sleep(0.05)).register(prefix='tr:*')")
        == b"OK"
    )
    seen = 0
    for n in range(8):
        rg.xadd(f"tr:{n}", {"v": "1"})
        triggered = registration(rg)["RegistrationData"]["numTriggered"]
        assert triggered > seen
        seen = triggered
        assert len(rg.execute_command("RG.DUMPEXECUTIONS")) >= n + 1


def test_a_failed_batch_stops_the_registration_before_its_next_execution_starts(rg: redis.Redis) -> None:
    """RedisGears deals with an execution's end before the registration's queue takes the next one: a batch
    failing under onFailedPolicy 'retry' leaves every other execution `created`, aborted and counted, and its
    error shown. Here the worker keeps the queue until the runtime has halted the registration; before,
    the next batch started at once, succeeded and cleared lastError."""
    code = (
        "import time\nfailed = True\ndef once(r):\n    global failed\n    if failed:\n        time.sleep(0.5)\n"
        "        failed = False\n        raise Exception('first batch')\n"
        "GB('StreamReader').foreach(once).foreach(lambda r: execute('RPUSH', 'done', r['key'])).register("
        "prefix='rf:*', onFailedPolicy='retry', onFailedRetryInterval=2, mode='async_local')"
    )
    assert pyexecute(rg, code) == b"OK"
    for n in range(20):
        rg.xadd(f"rf:{n}", {"v": "1"})
    wait_for(lambda: registration(rg)["RegistrationData"]["lastError"] is not None, what="the failure")
    data = registration(rg)["RegistrationData"]
    assert b"first batch" in data["lastError"]
    assert data["status"] == b"WAITING_FOR_RETRY_ON_FAILURE"
    assert data["numFailures"] == 1 and data["numAborted"] >= 1  # (successes: fresh streams' empty first runs)
    assert data["numSuccess"] + data["numFailures"] + data["numAborted"] == data["numTriggered"]
    wait_for(lambda: rg.llen("done") == 20, what="every entry after the retry", timeout=30)
    assert sorted(rg.lrange("done", 0, -1)) == sorted(f"rf:{n}".encode() for n in range(20))  # each once


def test_pauses_racing_the_executions_taking_their_thread_lose_and_repeat_no_entry(rg: redis.Redis) -> None:
    """A pause drops only what no thread took up yet: the worker decides, since its news that a thread
    took one may still be on its way. Counted as dropped while its step ran, an execution was stopped
    part-way and its entry acknowledged unprocessed (lost), or left pending and run again (twice)."""
    code = "import time\nGB('StreamReader').foreach(lambda r: time.sleep(0.005)).foreach(lambda r: execute('RPUSH', 'done', r['id'])).register(prefix='race:*', mode='async_local')"
    assert pyexecute(rg, code) == b"OK"
    reg_id = registration(rg)["id"]
    ids = []
    for n in range(160):
        ids.append(rg.xadd(f"race:{n % 8}", {"v": "1"}))
        if n % 2:
            assert rg.execute_command("RG.PAUSEREGISTRATIONS", reg_id) == b"OK"
            assert rg.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == b"OK"
    wait_for(lambda: rg.llen("done") >= len(ids), what="every entry processed", timeout=30)
    wait_for(lambda: (lambda d: d["numSuccess"] + d["numFailures"] + d["numAborted"] == d["numTriggered"])(
        registration(rg)["RegistrationData"]), what="every execution to end")  # fmt: skip
    assert sorted(rg.lrange("done", 0, -1)) == sorted(ids)  # each once
    assert registration(rg)["RegistrationData"]["numFailures"] == 0  # none stopped part-way


def test_the_trigger_of_a_write_to_a_key_shows_in_dumps_answered_after_it(rg: redis.Redis) -> None:
    """The same for a KeysReader: its execution exists (triggered) before RG.DUMPREGISTRATIONS answers."""
    assert pyexecute(rg, "import time\nGB().foreach(lambda r: time.sleep(0.05)).register(prefix='kt:*')") == b"OK"
    for n in range(8):
        rg.set(f"kt:{n}", "x")
        assert registration(rg)["RegistrationData"]["numTriggered"] == n + 1
        assert len(rg.execute_command("RG.DUMPEXECUTIONS")) >= n + 1


def test_registration_callbacks_run_while_the_step_that_asked_holds_the_only_thread(
    one_thread: redis.Redis,
) -> None:
    """onRegistered of a registration a step makes (and onUnregistered of one a step removes) ran on the
    worker's ExecutionThreads: with one, held by that step, register() waited for itself for ever."""
    code = (
        "def add(r):\n"
        "    GB('CommandReader').register(trigger='made-in-step',\n"
        "                                 onRegistered=lambda: execute('SET', 'on-registered', '1'))\n"
        "    return 'added'\n"
        "GB('CommandReader').map(add).register(trigger='add')\n"
    )
    assert pyexecute(one_thread, code) == b"OK"
    assert one_thread.execute_command("RG.TRIGGER", "add") == [b"added"]
    assert one_thread.get("on-registered") == b"1"
    made = next(r for r in one_thread.execute_command("RG.DUMPREGISTRATIONS") if b"made-in-step" in str(r).encode())
    code = "GB('CommandReader').map(lambda r: execute('RG.UNREGISTER', r[1])).register(trigger='drop')\n"
    assert pyexecute(one_thread, code) == b"OK"
    assert one_thread.execute_command("RG.TRIGGER", "drop", made[1]) == [b"OK"]


def test_an_async_step_aborts_and_drops_executions_of_its_own_worker(rg: redis.Redis) -> None:
    """An `async def` step holds its worker's loop while it waits for the runtime, and the execution it
    aborts awaits on that loop: RedisGears aborts inline, so the call answers at once. Before, the abort
    waited for the loop it held until the worker was replaced, ending both executions."""
    client = rg
    slow = "import asyncio\nasync def nap(r):\n    await asyncio.sleep(60)\n    return r\n"
    waiting = pyexecute(client, slow + "GB('ShardsIDReader').map(nap).run()", "UNBLOCKING")
    wait_for(lambda: _status(client, waiting) == b"running", what="the async execution to start")
    target = repr(waiting.decode())
    killer = (
        "async def kill(r):\n"
        f"    done = [str(execute('RG.ABORTEXECUTION', {target}))]\n"
        f"    done.append(str(execute('RG.DROPEXECUTION', {target})))\n"
        "    return ' '.join(done)\n"
        "GB('ShardsIDReader').map(kill).run()\n"
    )
    started = time.monotonic()
    result = pyexecute(client, killer)
    assert result == [[b"OK OK"], []], result
    assert time.monotonic() - started < 5
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):  # dropped once it ended
        _status(client, waiting)
