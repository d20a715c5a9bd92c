"""What the runtime does at start with a backing Redis that does not serve yet, or that it cannot front.

A Redis restarted with a large dataset answers LOADING until it has read it (minutes for
gigabytes of camera frames); a runtime started beside it (a k3s pod, a supervisor) used to
exit with a traceback and be restarted in a loop. A Redis in cluster mode crashed it the
same way, with CLUSTERDOWN, where the operator needs to be told what to point it at.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port, wait_for
from tests.runtime.conftest import ROOT, Backing, Runtime

KEYS = 2000


def _fill(port: int) -> None:
    client = redis.Redis(port=port)
    with client.pipeline(transaction=False) as pipe:
        for i in range(KEYS):
            pipe.set(f"k{i}", "v")
        pipe.execute()
    client.close()


def _loading(tmp_path: Path, first: Backing | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server (re)started on an RDB of KEYS keys, which it reads for about two seconds."""
    if first is None:
        first = Backing(free_port(), tmp_path)
        first.start()
        _fill(first.port)
    first.save()
    first.stop()
    command = ["redis-server", "--port", str(first.port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
               "--save", "", "--appendonly", "no", "--key-load-delay", "1000",
               "--loading-process-events-interval-bytes", "1024"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:  # until it answers, LOADING
        try:
            redis.Redis(port=first.port, socket_timeout=1, retry=None).ping()
        except redis.BusyLoadingError:
            return proc, first.port
        except redis.ConnectionError:
            pass
        assert time.monotonic() < deadline, "redis-server did not start loading"
        assert proc.poll() is None, "redis-server exited"
        time.sleep(0.02)


def test_a_runtime_started_while_redis_loads_waits_and_then_serves(tmp_path: Path) -> None:
    proc, port = _loading(tmp_path)
    runtime = Runtime(free_port(), f"redis://127.0.0.1:{port}")
    try:
        runtime.start()  # answers once Redis has loaded: within wait_ready's 15 s
        client = runtime.client()
        assert client.dbsize() == KEYS
        client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
        assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [b"1"]
        client.close()
    finally:
        runtime.stop()
        proc.terminate()
        proc.wait(10)
    assert "does not serve yet (LOADING" in runtime.output()
    assert "Traceback" not in runtime.output()


def _refused(url: str, *args: str) -> str:
    """What the runtime logged when it refused to start in front of `url` (it must exit 1, no traceback)."""
    done = subprocess.run(
        [sys.executable, "-m", "gearcam.runtime", "--redis-url", url, "--port", str(free_port()), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr


def _last_error(logged: str) -> str:
    errors = [line for line in logged.splitlines() if " ERROR " in line]
    assert errors, logged[-2000:]
    return errors[-1]


def _start_error(url: str, *args: str) -> str:
    """The runtime's last ERROR line when it refuses to start in front of `url`."""
    return _last_error(_refused(url, *args))


def test_a_runtime_started_before_its_redis_listens_waits_for_it(tmp_path: Path) -> None:
    """A k3s pod starts its containers together: the runtime's may come up before Redis opens its port."""
    backing = Backing(free_port(), tmp_path)
    runtime = Runtime(free_port(), backing.url)

    def start_redis_once_the_runtime_waits() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if "waiting up to" in runtime.output():
                    backing.start()
                    return
            time.sleep(0.05)

    starter = threading.Thread(target=start_redis_once_the_runtime_waits)
    starter.start()
    try:
        runtime.start()
        starter.join()
        client = runtime.client()
        client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 2)
        assert redis.Redis(port=backing.port).type("t") == b"string"  # stored in the Redis it waited for
        client.close()
    finally:
        starter.join()
        runtime.stop()
        backing.stop()
    assert f"cannot reach the backing Redis at 127.0.0.1:{backing.port}" in runtime.output()
    assert "Traceback" not in runtime.output()


@pytest.mark.parametrize("wait", ["1", "0"])
def test_a_redis_that_never_listens_stops_the_runtime_once_the_wait_is_over(wait: str) -> None:
    port = free_port()
    logged = _refused(f"redis://127.0.0.1:{port}", "--start-wait", wait)
    error = _last_error(logged)
    assert f"cannot reach the backing Redis at 127.0.0.1:{port}" in error and "is redis-server running?" in error
    if wait == "0":
        assert "waiting up to" not in logged and "start_wait" not in error
    else:  # it said it was waiting, and the error says for how long and which setting to raise
        assert "(waiting up to 1 s more: runtime.start_wait)" in logged and "waited 1 s: runtime.start_wait" in error


@pytest.mark.parametrize(
    ("login", "said"),
    [("", "wants a password (NOAUTH"), (":wrong@", "refused the runtime's login or database (WRONGPASS"),
     (":pw@", "refused the runtime's login or database (ERR DB index is out of range")],
)  # fmt: skip
def test_a_login_the_backing_redis_refuses_stops_the_runtime_with_the_url_to_fix(
    tmp_path: Path, login: str, said: str
) -> None:
    backing = Backing(free_port(), tmp_path, extra=["--requirepass", "pw"])
    backing.start_with_password("pw")
    database = "/99" if login == ":pw@" else ""
    try:
        error = _start_error(f"redis://{login}127.0.0.1:{backing.port}{database}")
    finally:
        backing.stop()
    assert said in error and "GEARCAM_RUNTIME__BACKING_URL" in error and "redis://" in error


def test_a_backing_redis_in_cluster_mode_is_refused_with_what_to_point_at(tmp_path: Path) -> None:
    port = free_port()
    while port + 10000 > 65535:  # a cluster node also listens on its port + 10000 (the cluster bus)
        port = free_port()
    backing = Backing(port, tmp_path, extra=["--cluster-enabled", "yes",
                                                    "--cluster-config-file", str(tmp_path / "nodes.conf")])  # fmt: skip
    backing.start()
    try:
        error = _start_error(backing.url)
    finally:
        backing.stop()
    assert "cluster mode" in error and "cluster-enabled no" in error


def test_a_stream_reader_waits_out_a_redis_restart_that_loads_without_a_traceback_a_second(tmp_path: Path) -> None:
    backing = Backing(free_port(), tmp_path)
    backing.start()
    _fill(backing.port)
    runtime = Runtime(free_port(), backing.url)
    proc = None
    try:
        runtime.start()
        client = runtime.client()
        code = "GB('StreamReader').foreach(lambda x: execute('INCR', 'seen')).register('s*')"
        assert client.execute_command("RG.PYEXECUTE", code) == b"OK"
        client.xadd("s1", {"n": 1})
        wait_for(lambda: client.get("seen") == b"1", "the first entry")
        proc, _ = _loading(tmp_path, backing)
        wait_for(lambda: _answers(client), "the runtime to serve after Redis loaded", timeout=30)
        assert client.exists(*(f"k{i}" for i in range(KEYS)), "s1", "seen") == KEYS + 2  # all were loaded
        client.xadd("s1", {"n": 2})
        wait_for(lambda: client.get("seen") == b"2", "the entry added after the restart")
        client.close()
    finally:
        runtime.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    assert "reads b's1' again once the backing Redis serves" in runtime.output()
    assert "Traceback" not in runtime.output()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:  # LOADING relayed, or the link being reopened
        return False


def _launched(args: list[str], tmp_path: Path, shown: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m gearcam.runtime ARGS`, returned once its log shows `shown`."""
    log = tmp_path / "runtime.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gearcam.runtime", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    wait_for(lambda: shown in log.read_text(), f"the runtime to log {shown!r}", timeout=60)
    return proc, log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_runtime_waits_for_its_redis_ends_it_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C printed a KeyboardInterrupt traceback during the start; a SIGTERM killed the process on the spot."""
    proc, log = _launched(["--redis-url", f"redis://127.0.0.1:{free_port()}", "--port", str(free_port())], tmp_path,
                          "waiting up to")  # fmt: skip
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    assert "stopped before it was ready" in log.read_text() and "Traceback" not in log.read_text()


def _signal_mask(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    return 0


def _lets_sigint_go(pid: int) -> bool:
    """Whether Python started in `pid` (it ignores SIGPIPE from its first step) and SIGINT is neither caught nor ignored."""
    ignored, caught = _signal_mask(pid, "SigIgn"), _signal_mask(pid, "SigCgt")
    return bool(ignored >> (signal.SIGPIPE - 1) & 1) and not (caught | ignored) >> (signal.SIGINT - 1) & 1


def test_a_ctrl_c_while_the_runtime_loads_its_modules_prints_no_traceback(tmp_path: Path) -> None:
    # Python catches SIGINT from its start (a KeyboardInterrupt that printed a traceback from an import); the
    # runtime lets it go while its modules load. The signal is sent once it has (before the change that never
    # happened: the wait below ran out).
    log = tmp_path / "runtime.log"
    with log.open("wb") as out:
        # SIGINT as a terminal gives it: a shell running these tests in the background ignores it, and Python keeps that.
        proc = subprocess.Popen([sys.executable, "-m", "gearcam.runtime", "--redis-url", f"redis://127.0.0.1:{free_port()}",
                                 "--port", str(free_port())], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        # Twice in a row: Python ignores SIGPIPE a few instructions before it catches SIGINT.
        seen: list[bool] = []
        wait_for(lambda: seen.append(_lets_sigint_go(proc.pid)) or seen[-2:] == [True, True],
                 "the runtime to let SIGINT go while it loads", timeout=20, every=0.01)  # fmt: skip
        proc.send_signal(signal.SIGINT)
        # Killed by it; or, on a machine slow enough that the runtime's own handler was in place, stopped cleanly.
        assert proc.wait(30) in (-signal.SIGINT, 0), log.read_text()
    finally:
        proc.kill()
        proc.wait(10)
    assert "Traceback" not in log.read_text()
