"""Fault suite (issue 14): kill -9 the runtime, its Gears worker and the backing Redis under a running pipeline
and a writer.

The backing Redis runs with `appendonly yes` and `appendfsync always`, so every write it
acknowledged is on disk before the reply. A writer thread sends each value once (no client
retries), counting what was acknowledged and what was in flight when a connection broke.
After the faults: every acknowledged write is there exactly once, an in-flight one at most
once, nothing else. Through the pipeline (camera stream, Gears registration, model, `all`,
`cats`) every frame in the camera stream reaches `all` and, if it is a cat, `cats`, at least
once: delivery is at-least-once across crashes (docs/gears.md, docs/runtime.md), so a frame
may appear twice, and the duplicates are counted and reported as test properties (in the
JUnit XML with `-o junit_family=legacy`).
No timing is asserted: waits are generous, the machine may be loaded.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gearcam.loader import load
from tests.conftest import data_file, wait_for
from tests.pipeline.conftest import pipeline_settings
from tests.runtime.conftest import Backing, Runtime, running_stack

pytestmark = pytest.mark.slow

CAT, OTHER = data_file("chelsea.jpg").read_bytes(), data_file("coffee.jpg").read_bytes()
PATIENCE = 90.0  # seconds to wait for a restarted stack on a loaded machine


@dataclass
class Writer:
    """Sends `count` writes through the runtime, each once, whatever fails; records their fate."""

    port: int
    count: int
    write: Callable[[redis.Redis, int], object]
    acked: dict[int, object] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def _client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=30, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))

    def _connected(self) -> redis.Redis:
        """A client that answered PING: a write sent on it reached the runtime (or its fate is unknown)."""
        while True:
            client = self._client()
            try:
                client.ping()
                return client
            except redis.RedisError:
                client.close()
                threading.Event().wait(0.05)

    def _run(self) -> None:
        try:
            client = self._connected()
            for i in range(self.count):
                try:
                    self.acked[i] = self.write(client, i)
                except (redis.ConnectionError, redis.TimeoutError):
                    self.in_flight.add(i)  # sent, answer lost: applied or not
                    client.close()
                    client = self._connected()
                except redis.ResponseError as exc:
                    if "backing Redis" not in str(exc):
                        raise
                    self.in_flight.add(i)
                    client.close()
                    client = self._connected()
            client.close()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        assert self.thread is not None
        self.thread.join(PATIENCE)
        assert not self.thread.is_alive(), f"the writer is stuck after {len(self.acked)} acknowledged writes"
        if self.error is not None:
            raise self.error


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Backing, Runtime]]:
    with running_stack(tmp_path, ["--appendonly", "yes", "--appendfsync", "always"]) as pair:
        yield pair


def kill_runtime(runtime: Runtime) -> None:
    assert runtime.proc is not None
    runtime.proc.kill()
    runtime.proc.wait(20)
    runtime.proc = None
    runtime.start()


def kill_redis(backing: Backing) -> None:
    assert backing.proc is not None
    backing.proc.kill()
    backing.proc.wait(20)
    backing.proc = None
    backing.start()  # same port and directory: it reloads its AOF


def kill_gears_workers(runtime: Runtime) -> None:
    """kill -9 the Gears worker (the OOM killer's way): the runtime starts another with the sessions."""
    killed = runtime.gears_workers()
    assert killed, "no Gears worker to kill"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def check_each_write_once(writer: Writer, found: Counter[int]) -> None:
    """Acknowledged writes exactly once, in-flight ones at most once, nothing that was not sent."""
    lost = [i for i in writer.acked if found[i] != 1]
    assert not lost, f"acknowledged writes missing or doubled: {lost} of {len(writer.acked)}"
    assert all(found[i] <= 1 for i in writer.in_flight), found
    assert set(found) <= set(writer.acked) | writer.in_flight


def test_acknowledged_writes_survive_kill_9_of_the_runtime_and_of_redis(
    stack: tuple[Backing, Runtime], request: pytest.FixtureRequest
) -> None:
    backing, runtime = stack

    def write(client: redis.Redis, i: int) -> object:
        if i % 2:
            return client.execute_command("AI.TENSORSET", f"t:{i}", "INT32", 1, "VALUES", i)
        return client.rpush("log", i)

    writer = Writer(runtime.port, 300, write)
    writer.start()
    wait_for(lambda: len(writer.acked) >= 50 or writer.error, "50 acknowledged writes", PATIENCE)
    kill_runtime(runtime)
    wait_for(lambda: len(writer.acked) >= 150 or writer.error, "writes after the runtime's restart", PATIENCE)
    kill_redis(backing)
    writer.finish()

    client = runtime.client()
    wait_for(lambda: answers(client), "the runtime serving after Redis' restart", PATIENCE)
    found: Counter[int] = Counter(int(v) for v in client.lrange("log", 0, -1))
    for key in client.scan_iter("t:*"):
        (value,) = client.execute_command("AI.TENSORGET", key, "VALUES")
        assert int(key.split(b":")[1]) == value
        found[value] += 1
    check_each_write_once(writer, found)
    assert len(writer.acked) >= 150
    request.node.user_properties += [
        ("writes_acknowledged", len(writer.acked)),
        ("writes_in_flight_at_a_kill", len(writer.in_flight)),
        ("in_flight_writes_applied", sum(found[i] for i in writer.in_flight)),
    ]


def test_writes_answered_behind_survive_kill_9_of_the_runtime(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Without an AOF the runtime answers a tensor write once it is in the kernel's buffer to Redis
    (docs/runtime.md): its own death must not lose it. Eight keys are written over and over, so
    most writes are plain overwrites answered behind; each key must end with its last acknowledged
    value or a later one that was in flight."""
    with running_stack(tmp_path) as (_, runtime):
        assert runtime.client().info("modules")["ai_write_ack"] == "sent"

        def write(client: redis.Redis, i: int) -> object:
            return client.execute_command("AI.TENSORSET", f"w:{i % 8}", "INT32", 1, "VALUES", i)

        writer = Writer(runtime.port, 3000, write)
        writer.start()
        for at in (600, 1500):
            wait_for(lambda at=at: len(writer.acked) >= at or writer.error, f"{at} acknowledged writes", PATIENCE)
            kill_runtime(runtime)
        writer.finish()

        client = runtime.client()
        for k in range(8):
            (value,) = client.execute_command("AI.TENSORGET", f"w:{k}", "VALUES")
            last = max(i for i in writer.acked if i % 8 == k)
            later_in_flight = {i for i in writer.in_flight if i % 8 == k and i > last}
            assert value == last or value in later_in_flight, (
                f"w:{k} holds {value}; its last acknowledged write was {last} (in flight after it: {later_in_flight})"
            )
        request.node.user_properties += [
            ("writes_acknowledged", len(writer.acked)),
            ("writes_in_flight_at_a_kill", len(writer.in_flight)),
        ]


def feed_camera(camera: str, gate: threading.Event) -> Callable[[redis.Redis, int], object]:
    """A camera at about 20 frames/s (a pace, not a check); from frame 10 on it waits for `gate`,
    so that the stack dies while frames keep coming."""

    def write(client: redis.Redis, i: int) -> object:
        threading.Event().wait(0.05)
        if i >= 10:
            gate.wait(PATIENCE)
        return client.xadd(camera, {"img": CAT if i % 3 == 0 else OTHER, "count": i, "ts": 0})

    return write


def check_pipeline(client: redis.Redis, camera: str, writer: Writer, first: int) -> dict[str, int]:
    """Frames from `first` on reached `all`, and `cats` if they show a cat; what happened to the others.

    The camera stream holds every acknowledged frame exactly once in any case."""
    entries = client.xrange(camera)
    check_each_write_once(writer, Counter(int(fields[b"count"]) for _, fields in entries))
    frames = {int(fields[b"count"]): entry.decode() for entry, fields in entries}
    cats = {entry for i, entry in frames.items() if i % 3 == 0}
    due = {entry for i, entry in frames.items() if i >= first}
    assert len(due) >= 10, f"only {len(due)} frames came after the restart"

    def refs(stream: str) -> Counter[str]:
        return Counter(
            fields[b"ref"].decode() for _, fields in client.xrange(stream) if fields[b"source"] == camera.encode()
        )

    wait_for(lambda: due <= set(refs("all")), "every frame in `all`", PATIENCE)
    wait_for(lambda: due & cats <= set(refs("cats")), "every cat frame in `cats`", PATIENCE)
    copied, hits = refs("all"), refs("cats")
    assert set(copied) <= set(frames.values()) and set(hits) <= cats, "only camera frames; only cats in `cats`"
    return {
        "frames": len(frames),
        "frames_acknowledged": len(writer.acked),
        "frames_in_flight_at_the_kill": len(writer.in_flight),
        "frames_missing_in_all": len(set(frames.values()) - set(copied)),
        "cat_frames_missing_in_cats": len(cats - set(hits)),
        "duplicates_in_all": sum(copied.values()) - len(copied),
        "duplicates_in_cats": sum(hits.values()) - len(hits),
    }


@pytest.fixture
def pipeline(stack: tuple[Backing, Runtime]) -> tuple[Backing, Runtime]:
    client = stack[1].client()
    load(client, pipeline_settings())
    client.hset("gearcam:config", mapping={"sample_every": 1, "target_classes": "281-285"})
    client.close()
    return stack


def where_the_pipeline_stands(client: redis.Redis, camera: str) -> str:
    """What a failed run leaves to read: the camera's consumer groups and the registrations' counters."""
    lines = ["--- where the pipeline stands ---"]
    for what, command in [
        ("consumer groups", ("XINFO", "GROUPS", camera)),
        ("registrations", ("RG.DUMPREGISTRATIONS",)),
        ("lengths of all, cats", ("EVAL", "return {redis.call('XLEN', 'all'), redis.call('XLEN', 'cats')}", 0)),
    ]:
        try:
            lines.append(f"{what}: {client.execute_command(*command)!r}"[:3000])
        except redis.RedisError as exc:
            lines.append(f"{what}: {exc}")
    return "\n".join(lines)


def run_pipeline_through(
    stack: tuple[Backing, Runtime], victim: str, request: pytest.FixtureRequest
) -> tuple[dict[str, int], int]:
    """Feed 40 frames, kill `victim` after the tenth; the numbers, and the first frame sent after the restart."""
    backing, runtime = stack
    camera = f"camera:fault-{victim}"
    gate = threading.Event()
    writer = Writer(runtime.port, 40, feed_camera(camera, gate))
    writer.start()
    client = runtime.client()
    wait_for(lambda: client.xlen("all") >= 3 or writer.error, "the pipeline copying frames", PATIENCE)
    gate.set()
    if victim == "runtime":
        kill_runtime(runtime)
    elif victim == "gears worker":
        kill_gears_workers(runtime)
    else:
        kill_redis(backing)
    restarted = len(writer.acked) + len(writer.in_flight) + 1  # the frame being sent then may have gone either way
    writer.finish()
    client = runtime.client()
    try:
        wait_for(lambda: answers(client), "the runtime serving after the kill", PATIENCE)
        first = restarted if victim == "redis" else 0
        numbers = check_pipeline(client, camera, writer, first)
    except AssertionError as exc:
        state = where_the_pipeline_stands(client, camera)
        raise AssertionError(f"{exc}\n{state}\n--- the runtime's log ---\n{runtime.output()[-6000:]}") from None
    request.node.user_properties += list(numbers.items())
    return numbers, restarted


def test_no_frame_is_lost_when_the_runtime_is_killed_under_the_pipeline(
    pipeline: tuple[Backing, Runtime], request: pytest.FixtureRequest
) -> None:
    """The Gears worker dies with the runtime, so its batch was never acknowledged: it runs again (duplicates)."""
    numbers, _ = run_pipeline_through(pipeline, "runtime", request)
    assert numbers["frames_missing_in_all"] == 0 and numbers["cat_frames_missing_in_cats"] == 0


def test_no_frame_is_lost_when_the_gears_worker_is_killed_under_the_pipeline(
    pipeline: tuple[Backing, Runtime], request: pytest.FixtureRequest
) -> None:
    """The batch running in the worker is aborted and stays unacknowledged: it runs again in the replacement
    (duplicates possible), and the camera's later batches follow."""
    numbers, _ = run_pipeline_through(pipeline, "gears worker", request)
    assert numbers["frames_missing_in_all"] == 0 and numbers["cat_frames_missing_in_cats"] == 0
    assert "Gears worker died: killed by signal SIGKILL" in pipeline[1].output()


def test_the_pipeline_goes_on_when_redis_is_killed_under_it(
    pipeline: tuple[Backing, Runtime], request: pytest.FixtureRequest
) -> None:
    """Acknowledged frames survive (AOF, fsync always) and every one reaches `all`, and `cats` if a cat.

    A batch whose Gears calls failed because Redis was down is not acknowledged: it runs again
    once Redis is back (docs/gears.md), so frames inside the steps at the kill are not lost.
    """
    numbers, _ = run_pipeline_through(pipeline, "redis", request)
    assert numbers["frames_missing_in_all"] == 0 and numbers["cat_frames_missing_in_cats"] == 0


def kill_redis_during_a_step(stack: tuple[Backing, Runtime], step: str) -> tuple[redis.Redis, str]:
    """Register `step` (code defining `step(r)`, which INCRs `started` first) on `lost:*`, add one entry,
    and keep Redis down from the step's start for 2 s; a client of the runtime once it serves again, and
    the entry's id."""
    backing, runtime = stack
    client = runtime.client()
    code = step + "GB('StreamReader').foreach(step).register(prefix='lost:*', batch=1)\n"
    assert client.execute_command("RG.PYEXECUTE", code) == b"OK"
    entry = client.xadd("lost:1", {"v": "1"}).decode()
    wait_for(lambda: client.get("started") == b"1", "the step starting", PATIENCE)
    assert backing.proc is not None
    backing.proc.kill()  # the step's call comes while Redis is down: it fails
    backing.proc.wait(20)
    backing.proc = None
    threading.Event().wait(2.0)
    backing.start()
    client = runtime.client()
    wait_for(lambda: answers(client), "the runtime serving after the restart", PATIENCE)
    return client, entry


def test_a_stream_batch_whose_calls_lost_redis_runs_again(stack: tuple[Backing, Runtime]) -> None:
    # The step marks that it started, then writes after a pause; Redis is down during that write. The
    # step catches the failure and goes on, as the pipeline's steps do, until Redis is back: the
    # execution ends without error and its XACK would succeed.
    step = (
        "import time\n"
        "def step(r):\n"
        "    execute('INCR', 'started')\n"
        "    time.sleep(1.0)\n"
        "    try:\n"
        "        execute('XADD', 'out', '*', 'ref', r['id'])\n"
        "    except Exception:\n"
        "        time.sleep(4.0)\n"
    )
    client, entry = kill_redis_during_a_step(stack, step)
    wait_for(lambda: client.exists("out") and client.xlen("out") >= 1, "the batch run again", PATIENCE)
    assert [fields[b"ref"].decode() for _, fields in client.xrange("out")] == [entry]
    assert int(client.get("started") or 0) >= 2  # the step ran again


def test_a_stream_batch_whose_model_run_lost_redis_runs_again(stack: tuple[Backing, Runtime]) -> None:
    # As above, but what fails is a redisAI model run: the runtime serves it, and it lost Redis (the
    # pipeline counts such a frame as a model error and goes on). Its batch must run again all the
    # same, or a cat seen at that moment never reaches `cats` (a CI run of the fault suite lost one).
    step = (
        "import time\n"
        "import redisAI\n"
        "def step(r):\n"
        "    execute('INCR', 'started')\n"
        "    time.sleep(1.0)\n"
        "    try:\n"
        "        redisAI.modelRunnerRun(redisAI.createModelRunner('no-such-model'))\n"
        "        error = 'none'\n"
        "    except Exception as exc:\n"
        "        error = str(exc)\n"
        "    time.sleep(4.0 if 'backing Redis' in error else 0.0)\n"
        "    execute('XADD', 'out', '*', 'error', error)\n"
    )
    client, _ = kill_redis_during_a_step(stack, step)
    wait_for(lambda: int(client.get("started") or 0) >= 2, "the batch run again", PATIENCE)
    wait_for(
        lambda: client.exists("out") and b"empty" in client.xrange("out")[-1][1][b"error"],
        "its rerun's reply",
        PATIENCE,
    )
    assert int(client.get("started") or 0) == 2  # once more, not again and again
