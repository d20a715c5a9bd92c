"""The recorder over a synthetic camera: real redis-server, real JPEGs, clips decoded back with OpenCV."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from gearcam.config import RecordSettings, load_settings
from gearcam.record import Recorder, find_clip
from gearcam.redis_server import EmbeddedRedis
from gearcam.status import status_report
from tests.conftest import ROOT, wait_for
from tests.record.conftest import FPS, add_event, add_frames, level

pytestmark = pytest.mark.slow


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def status_section(r: redis.Redis, title: str) -> str:
    report = status_report(r, load_settings(yaml_path=Path("/nonexistent.yaml"), environ={}))
    return report.split(f"\n\n{title}\n", 1)[1].split("\n\n", 1)[0]


def stats(r: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall("gearcam:stats:record").items()}  # type: ignore[union-attr]


@pytest.fixture
def recorder_process(server: EmbeddedRedis, r: redis.Redis, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """`python -m gearcam.record` on its own data folder; yields the folder and its log."""
    r.hset("gearcam:config", mapping={"pre_roll_s": 2, "post_roll_s": 1})
    log = tmp_path / "record.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GEARCAM_RECORD__MIN_FREE_BYTES": "0"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gearcam.record", "--redis-url", server.url, "--data",
                                 str(tmp_path / "data")], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(
            lambda: (
                proc.poll() is not None
                or (r.exists("events") and any(g["name"] == b"recorder" for g in r.xinfo_groups("events")))
            ),
            "the recorder's consumer group",
            timeout=30,
        )
        assert proc.poll() is None, log.read_text()
        yield tmp_path / "data", log
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_clip_runs_from_pre_roll_before_the_first_hit_to_post_roll_after_the_last(
    recorder_process: tuple[Path, Path], r: redis.Redis
) -> None:
    data, log = recorder_process
    t0 = int(time.time() * 1000) - 60_000
    add_frames(r, "camera:0", t0, 100)  # 10 s at 10 fps
    event_id = add_event(r, "camera:0", t0 + 4000, t0 + 6000, best_ms=t0 + 5000)  # hits from 4 s to 6 s

    clip = wait_for(lambda: find_clip(data, event_id), "the clip", timeout=60)
    assert clip.parent.parent.name == "camera-0" and clip.parent.name == time.strftime(
        "%Y-%m-%d", time.gmtime((t0 + 4040) / 1000)
    )
    frames, fps = decode(clip)
    expected = (7000 - 2000) // (1000 // FPS) + 1  # 2 s before 4 s to 1 s after 6 s: frames 20..70
    assert abs(len(frames) - expected) <= 1, log.read_text()
    assert abs(len(frames) / fps - 5.0) <= 0.2  # the time span, from the clip's own rate
    assert abs(float(frames[0].mean()) - level(20)) < 8  # the first frame is the one 2 s before the first hit
    assert abs(float(frames[-1].mean()) - level(70)) < 8
    snapshot = cv2.imread(str(clip.with_suffix(".jpg")))
    assert snapshot is not None and float(snapshot.mean()) < 20  # the best hit's frame (grey 5), not the first
    description = json.loads(clip.with_suffix(".json").read_text())
    assert description["first_frame_ms"] == t0 + 2000 and description["gaps"] == []
    wait_for(lambda: stats(r).get("clips") == "1", "the clips counter")
    assert int(stats(r)["bytes"]) == clip.stat().st_size
    assert stats(r)["codec"] in ("avc1", "vp09")
    assert r.xpending("events", "recorder")["pending"] == 0  # acknowledged
    shown = status_section(r, "Recorder (gearcam:stats:record)")  # what `invoke status` prints
    assert re.search(r"^clips +1$", shown, re.M) and re.search(rf"^bytes +{clip.stat().st_size}$", shown, re.M)
    assert re.search(r"^failures +0$", shown, re.M) and re.search(r"^deleted +0$", shown, re.M)


def test_a_gap_in_the_camera_stream_is_counted_and_logged_once(
    recorder_process: tuple[Path, Path], r: redis.Redis
) -> None:
    data, log = recorder_process
    t0 = int(time.time() * 1000) - 60_000
    add_frames(r, "camera:0", t0, 200, skip=range(0, 30))  # the first 3 s trimmed
    r.xdel("camera:0", *[f"{t0 + i * 100}-0" for i in range(50, 60)])  # and 1 s missing in the middle
    first = add_event(r, "camera:0", t0 + 4000, t0 + 6000)
    second = add_event(r, "camera:0", t0 + 14000, t0 + 15000)
    for event_id in (first, second):
        wait_for(lambda: find_clip(data, event_id), f"the clip of {event_id}", timeout=60)  # noqa: B023
    counters = stats(r)
    assert int(counters["gaps"]) >= 2 and int(counters["gap_ms"]) >= 2000
    assert "failures" not in counters
    frames, _ = decode(find_clip(data, first))  # type: ignore[arg-type]
    assert abs(len(frames) - (51 - 10 - 10)) <= 1  # frames 30..70 without 50..59
    assert log.read_text().count("are missing") == 1


def test_an_event_read_but_not_acknowledged_is_recorded_after_a_restart(r: redis.Redis, tmp_path: Path) -> None:
    settings = RecordSettings(pre_roll_s=1, post_roll_s=0, min_free_bytes=0)
    crashed = Recorder(r, settings, tmp_path)
    crashed.start()
    t0 = int(time.time() * 1000) - 60_000
    add_frames(r, "camera:1", t0, 40)
    event_id = add_event(r, "camera:1", t0 + 2000, t0 + 2500)
    assert len(crashed.consumer.read(100)) == 2  # read, then it dies before handling them
    assert r.xpending("events", "recorder")["pending"] == 2

    again = Recorder(r, settings, tmp_path)
    again.start()
    again.step()
    clip = find_clip(tmp_path, event_id)
    assert clip is not None and abs(len(decode(clip)[0]) - 16) <= 1  # 1 s before 2 s to 2.5 s
    assert r.xpending("events", "recorder")["pending"] == 0


def test_a_full_disk_skips_the_clip_counts_it_and_goes_on(r: redis.Redis, tmp_path: Path) -> None:
    recorder = Recorder(r, RecordSettings(pre_roll_s=1, post_roll_s=0, min_free_bytes=2**62), tmp_path)
    recorder.start()
    t0 = int(time.time() * 1000) - 60_000
    add_frames(r, "camera:0", t0, 40)
    add_event(r, "camera:0", t0 + 2000, t0 + 2500)
    add_event(r, "camera:0", t0 + 3000, t0 + 3500)
    recorder.step()
    assert stats(r)["skipped_disk_full"] == "2" and "clips" not in stats(r)
    assert r.xpending("events", "recorder")["pending"] == 0
