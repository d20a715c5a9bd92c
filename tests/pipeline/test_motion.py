"""Motion gating through the real runtime and registration: still frames skip the model, motion and the floor do not.

The frames are synthetic JPEGs (a grey scene with a dark square), fed one at a time; each test
waits until its camera's counters account for every frame (inferred + still = frames) before
the next one, so each frame's decision is known.
"""

from __future__ import annotations

import io
import time

import pytest
import redis
from PIL import Image, ImageDraw

from gearcam.config import CONFIG_KEY
from tests.conftest import wait_for
from tests.pipeline.test_end_to_end import from_source

pytestmark = pytest.mark.slow


def scene(x: int) -> bytes:
    """A 640x480 grey scene with a 60x60 dark square at (x, 200)."""
    image = Image.new("RGB", (640, 480), (120, 130, 140))
    ImageDraw.Draw(image).rectangle([x, 200, x + 60, 260], fill=(10, 10, 10))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def counters(r: redis.Redis, camera: str) -> dict[str, int]:
    stats = r.hgetall(f"gearcam:stats:{camera}")
    return {k.decode(): int(v) for k, v in stats.items() if v.lstrip(b"-").isdigit()}


class Camera:
    """Feeds frames one at a time and tells, per frame, whether it went to the model."""

    def __init__(self, r: redis.Redis, stream: str) -> None:
        self.r, self.stream, self.fed = r, stream, 0

    def feed(self, img: bytes) -> bool:
        before = counters(self.r, self.stream).get("inferred", 0)
        self.r.xadd(self.stream, {"img": img, "count": self.fed, "ts": int(time.time() * 1000)})
        self.fed += 1

        def decided() -> dict[str, int] | None:
            c = counters(self.r, self.stream)
            return c if c.get("inferred", 0) + c.get("still", 0) >= self.fed else None

        return wait_for(decided, f"frame {self.fed} of {self.stream} decided")["inferred"] > before


def test_still_frames_skip_the_model_and_a_moving_object_triggers_it(r: redis.Redis, camera: str) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", mapping={"motion": 1, "min_area": 500, "infer_every_s": 0})
    cam = Camera(r, camera)
    assert cam.feed(scene(100))  # no background yet: motion
    assert [cam.feed(scene(100)) for _ in range(6)] == [False] * 6
    assert cam.feed(scene(300))  # the square moved
    settling = [cam.feed(scene(300)) for _ in range(12)]  # the background catches up within a few frames
    assert settling[-6:] == [False] * 6, settling
    stats = counters(r, camera)
    assert stats["frames"] == cam.fed == len(from_source(r, "all", camera))  # every frame still reaches `all`
    assert stats["still"] >= 12 and stats["motion"] >= 2
    assert stats["inferred"] + stats["still"] == cam.fed


def test_the_floor_runs_the_model_on_a_still_scene_every_t_seconds(r: redis.Redis, camera: str) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", mapping={"motion": 1, "infer_every_s": 1})
    cam = Camera(r, camera)
    began = time.monotonic()
    decisions = []
    while time.monotonic() - began < 3.3:
        decisions.append(cam.feed(scene(100)))
        time.sleep(0.1)
    stats = counters(r, camera)
    assert decisions[0] and decisions.count(False) >= 5
    assert 2 <= stats.get("floor", 0) <= 4, stats  # about one a second after the first frame
    assert stats["inferred"] == 1 + stats["floor"]


def test_motion_inside_a_mask_polygon_is_ignored(r: redis.Redis, camera: str) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", mapping={"motion": 1, "infer_every_s": 0,
                                              "motion_mask": "0,150 640,150 640,320 0,320"})  # fmt: skip
    cam = Camera(r, camera)
    assert cam.feed(scene(100))
    assert [cam.feed(scene(x)) for x in (200, 300, 400, 500)] == [False] * 4
    r.hset(f"{CONFIG_KEY}:{camera}", "motion_mask", "")
    assert cam.feed(scene(100))


def test_a_camera_hash_overrides_the_global_one_and_its_bad_value_falls_back(r: redis.Redis, camera: str) -> None:
    other = camera + "-other"
    r.hset(f"{CONFIG_KEY}:{camera}", mapping={"motion": 1, "infer_every_s": 0, "min_area": "lots"})
    gated, plain = Camera(r, camera), Camera(r, other)
    assert [gated.feed(scene(100)) for _ in range(3)] == [True, False, False]
    assert [plain.feed(scene(100)) for _ in range(3)] == [True, True, True]  # global hash: gating off
    error = wait_for(lambda: r.hget(f"gearcam:stats:{camera}", "config_error"), "the camera's config error")
    assert b"gearcam:config:" + camera.encode() in error and b"min_area=lots" in error
    assert b"500 (the global value)" in error
