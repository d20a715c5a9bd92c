"""Adaptive sampling: the decision rule on its own, then through the real runtime and registration.

The live tests use a budget no model run can meet (1 ms) to force raises, and one every run
meets to force lowering: the direction is then certain, whatever the machine's speed.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from gearcam.config import CONFIG_KEY, STATS_PIPELINE_KEY
from gearcam.status import status_report
from tests.conftest import wait_for
from tests.pipeline.conftest import picture, pipeline_settings
from tests.pipeline.test_end_to_end import from_source

SCRIPT = Path(__file__).resolve().parents[2] / "gears" / "animal_recognition.py"


@pytest.fixture(scope="module")
def gears() -> ModuleType:
    spec = importlib.util.spec_from_file_location("animal_recognition_adaptive", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def params(gears: ModuleType, **fields: Any) -> dict[str, Any]:
    values = dict(gears.DEFAULTS)
    values.update({"latency_budget_ms": 200, "latency_window_s": 5.0, **fields})
    return values


NOW = 1_000_000


def runs(camera: str, count: int, latency: int, age_ms: int = 100) -> list[tuple[int, int, str]]:
    return [(NOW - age_ms, latency, camera)] * count


def test_over_budget_doubles_the_interval_of_the_busiest_cameras_only(gears: ModuleType) -> None:
    cameras = {c: params(gears) for c in ("camera:a", "camera:b", "camera:c")}
    samples = runs("camera:a", 30, 400) + runs("camera:b", 25, 90) + runs("camera:c", 5, 90)
    loads = {"camera:a": 40, "camera:b": 30, "camera:c": 5}  # frames sampled, finished or not
    decisions = gears.adapt_decisions(samples, cameras, {"camera:a": 1, "camera:b": 2, "camera:c": 1}, loads, NOW)
    assert [(c, i, d) for c, i, d, _ in decisions] == [("camera:a", 2, "raise"), ("camera:b", 4, "raise")]
    assert decisions[0][3] == "p99 400 ms on camera:a over its budget 200 ms; 40 of 75 sampled frames in the window"


def test_at_max_sample_every_an_over_budget_camera_is_counted_not_raised(gears: ModuleType) -> None:
    cameras = {"camera:a": params(gears, max_sample_every=8)}
    ((camera, interval, decision, reason),) = gears.adapt_decisions(runs("camera:a", 10, 500), cameras,
                                                                    {"camera:a": 8}, {"camera:a": 10}, NOW)  # fmt: skip
    assert (camera, interval, decision) == ("camera:a", 8, "max") and "already at max_sample_every=8" in reason


def test_headroom_halves_the_most_raised_camera_one_step_at_a_time(gears: ModuleType) -> None:
    cameras = {"camera:a": params(gears), "camera:b": params(gears, sample_every=3)}
    samples = runs("camera:a", 10, 20) + runs("camera:b", 10, 30)
    decisions = gears.adapt_decisions(samples, cameras, {"camera:a": 4, "camera:b": 24}, {}, NOW)
    assert decisions == [("camera:b", 12, "lower", "p99 30 ms, under half of every budget")]
    assert gears.adapt_decisions([], cameras, {"camera:a": 2, "camera:b": 3}, {}, NOW)[0][:3] == (
        "camera:a",
        1,
        "lower",
    )


def test_between_half_and_the_whole_budget_nothing_changes(gears: ModuleType) -> None:
    cameras = {"camera:a": params(gears)}
    assert gears.adapt_decisions(runs("camera:a", 10, 150), cameras, {"camera:a": 4}, {"camera:a": 10}, NOW) == []


def test_old_runs_and_too_few_runs_never_raise(gears: ModuleType) -> None:
    cameras = {"camera:a": params(gears, latency_window_s=1.0)}
    stale = runs("camera:a", 50, 900, age_ms=1500)
    loads = {"camera:a": 52}
    assert gears.adapt_decisions(stale + runs("camera:a", 2, 900), cameras, {"camera:a": 1}, loads, NOW) == []


def test_a_bad_budget_value_is_reported_and_falls_back_to_off(gears: ModuleType) -> None:
    values, problems = gears.parse_config({b"latency_budget_ms": b"fast", b"max_sample_every": b"0"})
    assert values["latency_budget_ms"] == 0 and values["max_sample_every"] == 64
    assert problems[0].startswith("latency_budget_ms=fast:") and len(problems) == 2


# -- through the runtime ---------------------------------------------------------------------------


def stats(r: redis.Redis, camera: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(f"gearcam:stats:{camera}").items()}


def feed_until(r: redis.Redis, camera: str, done: Any, what: str, every: float = 0.02, timeout: float = 40) -> None:
    """Feeds cat frames (waiting for each to be received) until ``done()`` holds."""
    cat = picture("chelsea.jpg")
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, (
            f"fed frames to {camera} for {timeout:g}s without {what}: {stats(r, camera)}"
        )
        fed = int(stats(r, camera).get("frames", 0)) + 1
        r.xadd(camera, {"img": cat, "count": fed, "ts": int(time.time() * 1000)})
        wait_for(lambda n=fed: int(stats(r, camera).get("frames", 0)) >= n, f"frame {fed} of {camera} received")
        time.sleep(every)


@pytest.mark.slow
def test_over_budget_the_interval_rises_to_the_ceiling_and_only_every_nth_frame_runs(
    r: redis.Redis, camera: str
) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", mapping={"latency_budget_ms": 1, "latency_window_s": 1.5, "max_sample_every": 4})
    feed_until(r, camera, lambda: stats(r, camera).get("adapt_max"), "reaching max_sample_every")
    now = stats(r, camera)
    assert now["interval"] == "4" and int(now["adapt_raise"]) == 2  # 1 -> 2 -> 4
    assert (
        "over its budget 1 ms" in now["interval_reason"] and "already at max_sample_every=4" in now["interval_reason"]
    )
    assert int(r.hget(STATS_PIPELINE_KEY, "adapt_raise") or 0) >= 2
    assert int(r.hget(STATS_PIPELINE_KEY, "latency_p99_ms") or 0) >= 1
    report = status_report(r, pipeline_settings())  # what `invoke status` prints
    shown = report.split("\n\nAdaptive sampling\n", 1)[1].split("\n\n", 1)[0]
    assert shown.startswith("decisions: raise ") and "last window p99 " in shown
    assert re.search(rf"^{re.escape(camera)} +4 +p99 \d+ ms on {re.escape(camera)} over its budget 1 ms", shown, re.M)

    first = int(now["frames"])
    block = 16 + (-(first + 16)) % 4  # ends on a multiple of 4, so its last frame runs
    cat = picture("chelsea.jpg")
    ids = [r.xadd(camera, {"img": cat, "count": first + i}).decode() for i in range(1, block + 1)]
    expected = {ids[i] for i in range(block) if (first + 1 + i) % 4 == 0}

    def block_hits() -> set[str]:
        return {f["ref"].decode() for _, f in from_source(r, "cats", camera)} & set(ids)

    # Awaited model runs finish in any order (a later frame's hit may come first), so wait for all of them
    wait_for(lambda: expected <= block_hits(), f"the block's sampled frames in cats: {stats(r, camera)}")
    assert block_hits() == expected  # 1 in 4


@pytest.mark.slow
def test_with_headroom_the_interval_comes_back_down_and_budget_zero_turns_it_off(r: redis.Redis, camera: str) -> None:
    key = f"{CONFIG_KEY}:{camera}"
    r.hset(key, mapping={"latency_budget_ms": 1, "latency_window_s": 1.5, "max_sample_every": 4})
    feed_until(r, camera, lambda: stats(r, camera).get("interval") == "4", "an interval of 4")
    r.hset(key, "latency_budget_ms", 600000)  # every run is far under half of it
    feed_until(r, camera, lambda: stats(r, camera).get("interval") == "1", "the interval back at sample_every")
    now = stats(r, camera)
    assert int(now["adapt_lower"]) == 2 and "under half of every budget" in now["interval_reason"]  # 4 -> 2 -> 1

    r.hset(key, "latency_budget_ms", 1)
    feed_until(r, camera, lambda: stats(r, camera).get("interval") == "2", "a raise again")
    r.hset(key, "latency_budget_ms", 0)
    feed_until(r, camera, lambda: stats(r, camera).get("interval") == "1", "the interval reset by budget 0")
    assert stats(r, camera)["interval_reason"] == "latency_budget_ms is 0: adaptive sampling off"
    assert not r.hexists("gearcam:adapt:interval", camera)


@pytest.mark.slow
def test_the_busiest_camera_is_raised_first(r: redis.Redis, camera: str) -> None:
    busy, quiet = camera, camera + "-quiet"
    for stream in (busy, quiet):
        r.hset(
            f"{CONFIG_KEY}:{stream}", mapping={"latency_budget_ms": 1, "latency_window_s": 0.5, "max_sample_every": 4}
        )
    cat = picture("chelsea.jpg")
    order: list[tuple[str, str]] = []

    def feed_round() -> bool:
        for stream in (busy, busy, busy, quiet):
            r.xadd(stream, {"img": cat})
        pair = (stats(r, busy).get("interval", "1"), stats(r, quiet).get("interval", "1"))
        if not order or order[-1] != pair:
            order.append(pair)
        return stats(r, busy).get("interval") == "4"

    deadline = time.monotonic() + 40
    while not feed_round():
        assert time.monotonic() < deadline, f"the busy camera never reached its ceiling: {order}"
        time.sleep(0.1)
    assert order[0] == ("1", "1") and order[1] == ("2", "1"), order  # the busy camera went first
    assert all(int(b) >= int(q) for b, q in order), order
