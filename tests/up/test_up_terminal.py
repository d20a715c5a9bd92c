"""A real `invoke up` in a temporary state folder on free ports: what the terminal shows, and the exit status.

Each test is one case of issue 15 ("every failure says what happened and what to do"). One
`invoke up` (the module fixture) serves the cases that need a running gearcam; the last test
stops it with `invoke down`, restarts it and stops it with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from gearcam.up.plan import find_mosquitto
from tests.conftest import free_port, free_ports, wait_for
from tests.web.conftest import http_get

ROOT = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")
pytestmark = pytest.mark.slow


def environment(state: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no gearcam variables of the caller, this test's state folder and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARCAM_") and k not in ("REDIS_URL", "PORT")}
    runtime, backing, web, hits, broker = free_ports(5)
    env.update({"GEARCAM_UP__STATE_DIR": str(state), "GEARCAM_RUNTIME__PORT": str(runtime),
                "GEARCAM_RUNTIME__BACKING_PORT": str(backing), "GEARCAM_WEB__PORT": str(web),
                "GEARCAM_WEB__HITS_PORT": str(hits), "GEARCAM_EVENTS__BROKER_PORT": str(broker),
                "GEARCAM_CAMERA__FPS": "4", "PYTHONUNBUFFERED": "1",
                **extra})  # fmt: skip
    return env


def invoke(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INVOKE, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)  # fmt: skip


@dataclass
class Up:
    """`invoke up` in the background, its terminal output in a file."""

    env: dict[str, str]
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    def start(self, name: str = "up") -> Up:
        self.log = Path(self.env["GEARCAM_UP__STATE_DIR"]) / f"{name}.terminal"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:  # its own session: a signal reaches only invoke, as Ctrl-C would
            self.proc = subprocess.Popen([INVOKE, "up", *self.args], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        return self

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 180) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"invoke up exited:\n{self.output}"
            return "gearcam is up." in self.output

        wait_for(ready, "`invoke up` to say it is up", timeout=timeout, every=0.2)

    def wait_exit(self, timeout: float = 90) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.env['GEARCAM_RUNTIME__PORT']}"

    def page(self, which: str, path: str = "/") -> str:
        port = self.env["GEARCAM_WEB__PORT" if which == "all" else "GEARCAM_WEB__HITS_PORT"]
        return f"http://127.0.0.1:{port}{path}"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = Up(environment(tmp_path_factory.mktemp("up"))).start()
    try:
        up.wait_up()
        r = redis.Redis.from_url(up.url)
        wait_for(lambda: int(r.hget("gearcam:stats:pipeline", "inferred") or 0) >= 2, "the first classified frames",
                 timeout=120)  # fmt: skip
        yield up
    finally:
        up.kill()


def _count(r: redis.Redis, key: str, field: str) -> int:
    return int(r.hget(key, field) or 0)


# -- failures before or at start ------------------------------------------------------------------------


def test_1_a_missing_source_file_stops_up_at_once_with_the_reason(tmp_path: Path) -> None:
    started = time.monotonic()
    done = invoke(environment(tmp_path), "up", "--source", "/nonexistent.mp4")
    assert done.returncode == 1 and time.monotonic() - started < 30
    assert "camera source '/nonexistent.mp4' is none of" in done.stdout and "nothing was started" in done.stdout
    assert not (tmp_path / "logs").exists()


def test_2_a_taken_web_port_is_named_with_the_setting_that_moves_the_page(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = env["GEARCAM_WEB__HITS_PORT"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(port)))
        taken.listen()
        done = invoke(env, "up")
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1, for the page of the hits, is taken" in done.stdout
    assert f"`ss -ltnp 'sport = :{port}'`" in done.stdout and "GEARCAM_WEB__HITS_PORT=<free port>" in done.stdout
    assert "{port}" not in done.stdout and "redis-server service" not in done.stdout


def test_4_a_camera_that_cannot_open_its_source_stops_up_with_its_log_and_the_fix(tmp_path: Path) -> None:
    env = environment(tmp_path)
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    done = invoke(env, "up", "--source", url, timeout=240)
    assert done.returncode == 1, done.stdout
    assert "camera exited with status 1; the last lines of" in done.stdout
    assert re.search(rf"  \| error: camera {re.escape(url)} \(url\) could not be opened", done.stdout)
    assert "likely fix:" in done.stdout and "--wait-for-camera" in done.stdout
    assert "stopping the rest" in done.stdout
    assert not (tmp_path / "run" / "up.json").exists()  # everything it started is stopped
    wait_for(lambda: not _listening(int(env["GEARCAM_RUNTIME__PORT"])), "the runtime to be gone", timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- a running gearcam ------------------------------------------------------------------------------------


def test_9_the_terminal_shows_no_colour_codes_and_no_command_lines(running: Up) -> None:
    out = running.output
    assert "\x1b" not in out
    assert "-m gearcam.runtime" not in out and "-m gearcam.camera" not in out
    assert f"all frames: http://localhost:{running.env['GEARCAM_WEB__PORT']}/" in out


def test_10_both_pages_on_their_configured_ports_have_an_icon(running: Up) -> None:
    for which in ("all", "hits"):
        status, kind, _ = http_get(running.page(which, "/favicon.ico"))
        assert status == 200 and kind == "image/svg+xml", which


def test_11_the_notifier_is_online_on_the_loopback_mosquitto_up_started(running: Up) -> None:
    if find_mosquitto() is None:
        pytest.skip("no mosquitto here (scripts/bootstrap installs it): `invoke up` starts no broker and no notifier")
    port = running.env["GEARCAM_EVENTS__BROKER_PORT"]
    assert f"events to MQTT mqtt://127.0.0.1:{port} (the loopback mosquitto" in running.output
    seen: list[bytes] = []
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, message: seen.append(bytes(message.payload))
    client.connect("127.0.0.1", int(port))
    client.subscribe("gearcam/availability", qos=1)
    client.loop_start()
    try:
        wait_for(lambda: b"online" in seen, "the notifier's retained availability", timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_12_client_list_names_each_service_of_up(running: Up) -> None:
    """An operator's `redis-cli CLIENT LIST` tells the camera, the pages and the recorder apart."""
    r = redis.Redis.from_url(running.url)
    wanted = {"gearcam-camera:0", "gearcam-web:all", "gearcam-web:cats", "gearcam-record"}
    if find_mosquitto() is not None:
        wanted.add("gearcam-notify")
    names = lambda: {client["name"] for client in r.client_list()}  # noqa: E731
    wait_for(lambda: wanted <= names(), f"{sorted(wanted)} in CLIENT LIST", timeout=30)


def test_3_status_and_cli_find_the_running_up_without_its_environment(running: Up) -> None:
    env = {k: v for k, v in running.env.items() if k != "GEARCAM_RUNTIME__PORT"}
    done = invoke(env, "status")
    assert done.returncode == 0, done.stdout
    pid = running.proc.pid if running.proc else 0
    assert f"reading {running.url} (the running `invoke up`, pid {pid})" in done.stdout
    assert "StreamReader" in done.stdout and "camera:0 connected (samples)" in done.stdout
    pong = invoke(env, "cli", "--", "PING")
    assert pong.returncode == 0 and "PONG" in pong.stdout


def test_4_a_camera_that_waits_for_its_source_shows_retrying_in_status_and_healthz(running: Up) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    command = [sys.executable, "-m", "gearcam.camera", "--url", running.url, "--source", url, "--stream", "camera:1",
               "--wait-for-camera"]  # fmt: skip
    camera = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis.from_url(running.url)
    try:
        wait_for(lambda: r.hget("gearcam:stats:camera:1", "connected") == b"0", "the camera's retrying state")
        done = invoke(running.env, "status")
        assert re.search(r"camera:1 RETRYING since \d\d:\d\d:\d\d \(\d+ s\): camera rtsp://.* could not be opened",
                         done.stdout), done.stdout  # fmt: skip

        def health() -> dict[str, object]:
            cameras: dict[str, dict[str, object]] = json.loads(http_get(running.page("all", "/healthz"))[2])["cameras"]
            return cameras.get("camera:1", {})

        state = wait_for(health, "camera:1 in /healthz")
        assert state["connected"] is False and state["retrying_since"]
    finally:
        camera.terminate()
        camera.wait(20)
        r.delete("gearcam:stats:camera:1")


def test_6_a_bad_config_value_is_reported_once_with_the_value_used(running: Up) -> None:
    r = redis.Redis.from_url(running.url)
    before = _count(r, "gearcam:stats:errors", "config")
    assert invoke(running.env, "cli", "--", "HSET", "gearcam:config", "sample_every", "0").returncode == 0
    try:
        wait_for(lambda: _count(r, "gearcam:stats:errors", "config") == before + 1, "the config problem")
        seen = _count(r, "gearcam:stats:pipeline", "seen")
        wait_for(lambda: _count(r, "gearcam:stats:pipeline", "seen") >= seen + 6, "more frames")
        assert _count(r, "gearcam:stats:errors", "config") == before + 1  # once per change, not per frame
        done = invoke(running.env, "status")
        assert ("config problem: bad value in gearcam:config: sample_every=0: 0 is outside 1..inf; using 1 "
                "(the default) until it is fixed") in done.stdout  # fmt: skip
        log = (Path(running.env["GEARCAM_UP__STATE_DIR"]) / "logs" / "runtime.log").read_text()
        assert log.count("sample_every=0") == 1 and "frame dropped, config" not in log
    finally:
        r.hset("gearcam:config", "sample_every", "1")


def test_7_a_deleted_model_says_invoke_upload_and_invoke_upload_fixes_it(running: Up) -> None:
    r = redis.Redis.from_url(running.url)
    errors = _count(r, "gearcam:stats:errors", "model")
    assert invoke(running.env, "cli", "--", "DEL", "models:classifier").returncode == 0
    wait_for(lambda: _count(r, "gearcam:stats:errors", "model") >= errors + 4, "frames failing without the model")
    done = invoke(running.env, "status")
    assert "store the model with `invoke upload`" in done.stdout
    log = (Path(running.env["GEARCAM_UP__STATE_DIR"]) / "logs" / "runtime.log").read_text()
    assert log.count("store the model with `invoke upload`") <= 2  # logged once a minute, not per frame
    upload = invoke({k: v for k, v in running.env.items() if k != "GEARCAM_RUNTIME__PORT"}, "upload")
    assert upload.returncode == 0, upload.stdout
    inferred = _count(r, "gearcam:stats:pipeline", "inferred")
    wait_for(lambda: _count(r, "gearcam:stats:pipeline", "inferred") > inferred + 2, "frames classified again")


def test_5_8_a_restart_keeps_the_config_and_down_and_ctrl_c_read_as_stops(running: Up) -> None:
    r = redis.Redis.from_url(running.url)
    r.hset("gearcam:config", "sample_every", "5")
    down = invoke(running.env, "down")
    assert down.returncode == 0 and re.search(r"gearcam \(pid \d+\) stopped", down.stdout), down.stdout
    assert running.wait_exit() == 0
    first = running.output
    assert "stopping gearcam (`invoke down`)" in first and "gearcam stopped; data kept in" in first
    assert "exited" not in first

    again = Up(running.env, ("--verbose",)).start("again")
    try:
        again.wait_up()
        assert redis.Redis.from_url(again.url).hget("gearcam:config", "sample_every") == b"5"
        assert "kept sample_every=5 as set there" in again.output
        assert re.search(r"^\+ .*-m gearcam\.runtime --embedded", again.output, re.M)  # --verbose shows them
        assert "\x1b" not in again.output
        assert again.proc is not None
        again.proc.send_signal(signal.SIGINT)
        assert again.wait_exit() == 0
    finally:
        again.kill()
    assert "stopping gearcam (Ctrl-C)" in again.output and "exited" not in again.output

    # SHUTDOWN, as an operator stops a Redis: the runtime stops with its Redis, then the rest; the data is saved.
    third = Up(running.env).start("third")
    try:
        third.wait_up()
        redis.Redis.from_url(third.url).hset("gearcam:config", "sample_every", "7")
        invoke(running.env, "cli", "--", "SHUTDOWN")
        assert third.wait_exit() == 0, third.output
    finally:
        third.kill()
    assert "stopping gearcam (the runtime stopped with its Redis (SHUTDOWN))" in third.output, third.output
    assert "gearcam stopped; data kept in" in third.output and "exited" not in third.output
    data = Path(running.env["GEARCAM_UP__STATE_DIR"]) / "data"
    port = free_port()
    saved = subprocess.Popen(["redis-server", "--port", str(port), "--dir", str(data), "--save", "", "--bind",
                              "127.0.0.1"], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        reader = redis.Redis(port=port)
        wait_for(lambda: _pings(reader), "a redis-server on the saved data")
        assert reader.hget("gearcam:config", "sample_every") == b"7"
    finally:
        saved.terminate()
        saved.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
