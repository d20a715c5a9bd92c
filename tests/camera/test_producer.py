"""The producer against a real redis-server: frames in camera:<n>, and reconnection to Redis and camera."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from gearcam.camera.producer import Backoff, Producer
from gearcam.camera.sources import SAMPLES_DIR, parse_source
from gearcam.config import CameraSettings
from tests.allocation import need_glibc
from tests.conftest import free_port, wait_for
from tests.runtime.conftest import Backing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backing(tmp_path: Path) -> Iterator[Backing]:
    server = Backing(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


class Running:
    """A producer in a thread, stopped at the end of the test."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.thread = threading.Thread(target=producer.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.producer.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive()


def settings(**changes: Any) -> CameraSettings:
    base: dict[str, Any] = {"stream": "camera:7", "fps": 20, "width": 160, "height": 120, "backoff_max": 0.5}
    return CameraSettings(**{**base, **changes})


def test_frames_go_to_the_stream_with_count_and_time(backing: Backing) -> None:
    stats = Producer(parse_source("samples"), settings(maxlen=100), backing.url).run(max_frames=5)
    r = redis.Redis.from_url(backing.url)
    entries = r.xrange("camera:7")
    assert stats.produced == 5 and len(entries) == 5
    assert [int(f[b"count"]) for _, f in entries] == [1, 2, 3, 4, 5]
    assert all(f[b"img"][:3] == b"\xff\xd8\xff" and int(f[b"ts"]) > 0 for _, f in entries)
    assert int(r.hget("gearcam:stats:camera:7", "produced") or 0) == 5


def test_the_stream_is_capped_at_maxlen(backing: Backing) -> None:
    Producer(parse_source("samples"), settings(fps=100, maxlen=10), backing.url).run(max_frames=300)
    assert redis.Redis.from_url(backing.url).xlen("camera:7") < 300  # MAXLEN ~ trims whole nodes


def test_a_redis_restart_drops_frames_meanwhile_and_the_producer_reconnects(
    backing: Backing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gearcam.camera")
    running = Running(Producer(parse_source("samples"), settings(fps=10), backing.url))
    try:
        wait_for(lambda: running.producer.stats.produced >= 3, "the first frames")
        backing.stop()
        wait_for(lambda: running.producer.stats.dropped >= 3, "frames dropped while Redis is down")
        backing.start()  # same port, empty (no persistence)
        wait_for(lambda: running.producer.stats.redis_reconnects >= 1, "the producer to reconnect")
        wait_for(lambda: redis.Redis.from_url(backing.url).xlen("camera:7") >= 2, "frames after the restart")
    finally:
        running.stop()
    assert "unreachable" in caplog.text and "is back after" in caplog.text
    r = redis.Redis.from_url(backing.url)
    # Nothing was queued during the outage: the stream holds only frames read after the restart.
    assert r.xlen("camera:7") <= running.producer.stats.produced - 3
    assert int(r.hget("gearcam:stats:camera:7", "dropped") or 0) == running.producer.stats.dropped


def test_a_lost_camera_is_reopened_with_backoff(
    backing: Backing, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gearcam.camera")
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(SAMPLES_DIR / "chelsea.jpg", folder / "1.jpg")
    running = Running(Producer(parse_source(str(folder)), settings(fps=10), backing.url))
    try:
        wait_for(lambda: running.producer.stats.produced >= 2, "the first frames")
        (folder / "1.jpg").unlink()
        wait_for(lambda: "retrying every" in caplog.text, "the camera to be noticed lost")
        r = redis.Redis.from_url(backing.url, decode_responses=True)
        lost = wait_for(lambda: (s := r.hgetall("gearcam:stats:camera:7")).get("connected") == "0" and s,
                        "the lost state in Redis")  # fmt: skip
        assert lost["source"] == str(folder) and "no pictures" in lost["source_error"]
        assert int(lost["retrying_since"]) > 0
        before = running.producer.stats.produced
        shutil.copy(SAMPLES_DIR / "coffee.jpg", folder / "2.jpg")
        wait_for(lambda: running.producer.stats.camera_reconnects >= 1, "the camera to be reopened")
        wait_for(lambda: running.producer.stats.produced > before, "frames from the reopened camera")
    finally:
        running.stop()
    assert "no pictures" in caplog.text and "is back" in caplog.text
    back = r.hgetall("gearcam:stats:camera:7")
    assert back["connected"] == "1" and "retrying_since" not in back


def test_a_source_that_cannot_be_opened_at_start_stops_the_camera_with_the_fix(backing: Backing) -> None:
    env = {**os.environ, "REDIS_URL": backing.url}
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    command = [sys.executable, "-m", "gearcam.camera", "--source", url, "--stream", "camera:bad"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"camera {url} (url) could not be opened" in done.stderr and "--wait-for-camera" in done.stderr
    assert "WARN" not in done.stderr and "Connection refused" not in done.stderr  # no OpenCV/FFmpeg noise


def test_with_wait_for_camera_it_retries_and_says_so_in_redis(backing: Backing) -> None:
    env = {**os.environ, "REDIS_URL": backing.url, "GEARCAM_CAMERA__BACKOFF_MAX": "0.5"}
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    command = [sys.executable, "-m", "gearcam.camera", "--source", url, "--stream", "camera:wait", "--wait-for-camera"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        r = redis.Redis.from_url(backing.url, decode_responses=True)
        state = wait_for(lambda: r.hgetall("gearcam:stats:camera:wait"), "the camera's state", timeout=30)
        assert state["connected"] == "0" and "could not be opened" in state["source_error"]
        assert proc.poll() is None  # still retrying
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err.count("not available yet") == 1  # said once, not per attempt


def test_backoff_doubles_up_to_its_limit_and_resets() -> None:
    backoff = Backoff(limit=1.0, first=0.2)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.2


def test_the_command_line_adds_frames_and_refuses_an_unknown_source(backing: Backing, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": backing.url}
    command = [sys.executable, "-m", "gearcam.camera", "--source", "samples", "--stream", "camera:cli",
               "--fps", "20", "--size", "64x48", "--frames", "3"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entries = redis.Redis.from_url(backing.url).xrange("camera:cli")
    assert len(entries) == 3
    with Image.open(io.BytesIO(entries[0][1][b"img"])) as image:
        assert image.size == (64, 48)
    bad = subprocess.run([*command[:4], str(tmp_path / "nope")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "is none of: samples" in bad.stderr


def _camera_faults(backing: Backing, frames: int, env: dict[str, str]) -> int:
    """Page faults of a camera process that adds `frames` 640x480 frames as fast as it may (120 a second)."""
    command = [sys.executable, "-m", "gearcam.camera", "--source", "samples", "--stream", "camera:faults",
               "--fps", "120", "--frames", str(frames)]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    errors = proc.stderr.read()  # until it ends and closes it
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own figures (RUSAGE_CHILDREN sums every child reaped)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    assert proc.returncode == 0, errors
    return usage.ru_minflt


def test_the_camera_keeps_its_frames_buffers_in_its_heap(backing: Backing) -> None:
    """On glibc's own thresholds every frame it decodes, resizes and encodes faults in 560-620 fresh pages
    (gearcam/allocator.py); the difference between a long and a short run is what the frames cost."""
    need_glibc()
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {"REDIS_URL": backing.url}
    per_frame = (_camera_faults(backing, 45, env) - _camera_faults(backing, 5, env)) / 40
    assert per_frame < 50, per_frame
