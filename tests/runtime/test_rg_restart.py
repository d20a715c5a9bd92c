"""Restart survival: sessions and registrations come back, StreamReaders resume with no entry skipped or repeated."""

from __future__ import annotations

import redis

from tests.runtime.conftest import Backing, Runtime
from tests.runtime.gears_helpers import pairs, pyexecute, registrations, wait_for
from tests.runtime.models import linear_model

FORWARD = (
    "GB('StreamReader').foreach(lambda r: execute('RPUSH', 'out', r['value']['v'])).register(prefix='cam:*')\n"
    "GB().foreach(lambda r: execute('INCR', 'sets')).register(prefix='k:*', eventTypes=['set'])\n"
    "GB('CommandReader').map(lambda a: 'alive').register(trigger='health')\n"
)


def test_registrations_and_sessions_survive_a_runtime_restart(stack: tuple[Backing, Runtime]) -> None:
    _, runtime = stack
    client = runtime.client()
    pyexecute(client, FORWARD, "ID", "app", "DESCRIPTION", "the app")
    before = registrations(client)
    client.close()
    runtime.stop()
    runtime.start()
    client = runtime.client()
    after = registrations(client)
    assert [(r["id"], r["reader"], r["PD"]) for r in after] == [(r["id"], r["reader"], r["PD"]) for r in before]
    (session,) = client.execute_command("RG.PYDUMPSESSIONS")
    assert pairs(session)["sessionDescription"] == b"the app"
    assert client.execute_command("RG.TRIGGER", "health") == [b"alive"]
    client.set("k:1", "x")
    wait_for(lambda: client.get("sets") == b"1", what="the restored KeysReader")
    assert "restored Gears session app" in runtime.output()
    # New ids never collide with restored ones.
    pyexecute(client, "GB('CommandReader').register(trigger='other')")
    assert len({r["id"] for r in registrations(client)}) == 4


def test_registrations_outlive_a_flushall_and_a_restart_after_it(stack: tuple[Backing, Runtime]) -> None:
    """RedisGears' sessions are no keys: FLUSHALL leaves them, and a restart after it finds them. Here the
    runtime keeps them in a hash that FLUSHALL took with the data, so a restart found none (rgsync's tests
    FLUSHALL before every case); the runtime writes them again once a FLUSHALL or FLUSHDB went by."""
    _, runtime = stack
    client = runtime.client()
    pyexecute(client, FORWARD, "ID", "app")
    pyexecute(client, "GB('CommandReader').register(trigger='gone')", "ID", "gone")
    before = registrations(client)
    for flush in (client.flushall, client.flushdb, lambda: client.eval("return redis.call('FLUSHALL')", 0)):
        flush()
        wait_for(lambda: client.hlen("gearcam:gears:sessions") == 2, what="the sessions written again")
    # A session unregistered just after is not brought back by the write (save_sessions_again).
    client.execute_command("RG.UNREGISTER", before[-1]["id"])  # session 'gone', registered last
    wait_for(lambda: client.hkeys("gearcam:gears:sessions") == [b"app"], what="the session written again")
    client.close()
    runtime.stop()
    runtime.start()
    client = runtime.client()
    assert [r["id"] for r in registrations(client)] == [r["id"] for r in before][:3]
    assert client.execute_command("RG.TRIGGER", "health") == [b"alive"]


def test_stream_positions_survive_a_runtime_restart(stack: tuple[Backing, Runtime]) -> None:
    backing, runtime = stack
    client = runtime.client()
    pyexecute(client, FORWARD, "ID", "app")
    for i in range(5):
        client.xadd("cam:0", {"v": str(i)})
    wait_for(lambda: client.llen("out") == 5, what="five entries before the restart")
    client.close()
    runtime.stop()
    direct = redis.Redis(port=backing.port)
    for i in range(5, 12):
        direct.xadd("cam:0", {"v": str(i)})  # written while the runtime is down
    runtime.start()
    client = runtime.client()
    wait_for(lambda: client.llen("out") == 12, what="the entries written while down")
    client.xadd("cam:0", {"v": "12"})
    wait_for(lambda: client.llen("out") == 13, what="a new entry after the restart")
    assert client.lrange("out", 0, -1) == [str(i).encode() for i in range(13)]


def test_registrations_survive_a_restart_of_both_redis_and_the_runtime(stack: tuple[Backing, Runtime]) -> None:
    backing, runtime = stack
    client = runtime.client()
    pyexecute(client, FORWARD, "ID", "app")
    client.xadd("cam:0", {"v": "a"})
    wait_for(lambda: client.llen("out") == 1)
    client.close()
    runtime.stop()
    backing.stop()  # SIGTERM: redis-server saves its RDB/AOF
    backing.start()
    runtime.start()
    client = runtime.client()
    assert len(registrations(client)) == 3
    client.xadd("cam:0", {"v": "b"})
    wait_for(lambda: client.lrange("out", 0, -1) == [b"a", b"b"], what="processing after both restarts")


def test_registrations_keep_working_after_the_backing_redis_restarts(stack: tuple[Backing, Runtime]) -> None:
    backing, runtime = stack
    client = runtime.client()
    blob, _, _ = linear_model()
    client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob)
    code = (
        "import redisAI\n"
        "async def run(r):\n"
        "    runner = redisAI.createModelRunner('m')\n"
        "    redisAI.modelRunnerAddInput(runner, 'x', redisAI.createTensorFromValues('FLOAT', [1, 4], [1, 2, 3, 4]))\n"
        "    redisAI.modelRunnerAddOutput(runner, 'y')\n"
        "    (y,) = await redisAI.modelRunnerRunAsync(runner)\n"
        "    execute('RPUSH', 'out', r['value']['v'] + ':' + str(len(redisAI.tensorToFlatList(y))))\n"
        "GB('StreamReader').foreach(run).register(prefix='cam:*')\n"
    )
    pyexecute(client, code, "ID", "app")
    client.xadd("cam:0", {"v": "a"})
    wait_for(lambda: client.llen("out") == 1)
    client.close()
    backing.save()
    backing.stop()
    backing.start()
    client = runtime.client()
    wait_for(lambda: _answers(client), what="the runtime serving again")
    client.xadd("cam:0", {"v": "b"})
    wait_for(lambda: client.lrange("out", 0, -1) == [b"a:3", b"b:3"], what="processing after the Redis restart")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
