"""Events through the real runtime and registration: consecutive hits form one event, new → update → end."""

from __future__ import annotations

import io
import time

import pytest
import redis
from PIL import Image, ImageFilter

from gearcam.config import CONFIG_KEY
from tests.conftest import wait_for
from tests.pipeline.conftest import picture
from tests.pipeline.test_end_to_end import from_source

pytestmark = pytest.mark.slow


def events_of(r: redis.Redis, camera: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in r.xrange("events")
            if f.get(b"camera") == camera.encode()]  # fmt: skip


def closer_cat() -> bytes:
    """chelsea.jpg's right part, softened: the same label (Egyptian cat), 0.90 against the whole picture's 0.40."""
    image = Image.open(io.BytesIO(picture("chelsea.jpg"))).filter(ImageFilter.GaussianBlur(2)).crop((150, 0, 451, 300))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_consecutive_hits_form_one_event_updated_by_a_better_score_and_ended_after_the_gap(
    r: redis.Redis, camera: str
) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", "event_gap_s", 1.5)
    for img in (picture("chelsea.jpg"), picture("chelsea.jpg"), closer_cat(), closer_cat()):
        r.xadd(camera, {"img": img})
        time.sleep(0.1)
    hits = wait_for(lambda: len(from_source(r, "cats", camera)) >= 4 and from_source(r, "cats", camera), "4 hits")
    changes = wait_for(lambda: len(events_of(r, camera)) >= 2 and events_of(r, camera), "new and update")
    assert [e["type"] for e in changes] == ["new", "update"]
    new, update = changes
    assert new["id"] == update["id"] == hits[0][0] and new["snapshot"] == hits[0][0]
    assert update["snapshot"] == hits[2][0] and float(update["score"]) > float(new["score"])
    assert new["label"] == update["label"] and 281 <= int(new["class"]) <= 285 and new["stream"] == "cats"
    assert new["end"] == ""
    for _ in range(30):  # frames without a cat keep coming; one of them ends the event
        r.xadd(camera, {"img": picture("coffee.jpg")})
        if len(events_of(r, camera)) >= 3:
            break
        time.sleep(0.2)
    *_, end = events_of(r, camera)
    assert end["type"] == "end" and end["id"] == new["id"] and end["snapshot"] == hits[2][0]
    assert int(new["start"]) <= int(end["end"]) and int(end["end"]) - int(new["start"]) < 1500
    assert not r.hget("gearcam:events:open", new["id"])


def test_the_same_picture_again_does_not_update_its_event(r: redis.Redis, camera: str) -> None:
    # Updates compare the scores as the event stores them (4 decimals): the same frame scoring the
    # same is no better, whichever way its score rounds.
    from gearcam.bench.pipeline import camera_frame

    r.hset(f"{CONFIG_KEY}:{camera}", "event_gap_s", 30)
    for img in (camera_frame(), camera_frame(), picture("chelsea.jpg"), picture("chelsea.jpg")):
        r.xadd(camera, {"img": img})
    wait_for(lambda: len(from_source(r, "cats", camera)) >= 4, "4 hits")
    kinds = [e["type"] for e in events_of(r, camera)]
    scores = [float(fields[b"score"]) for _, fields in r.xrange("cats") if fields[b"source"] == camera.encode()]
    assert kinds == ["new"] + ["update"] * (max(scores) > scores[0]), (kinds, scores)


def test_a_camera_that_stops_has_its_event_ended_by_another_cameras_frames(r: redis.Redis, camera: str) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", "event_gap_s", 0.5)
    r.xadd(camera, {"img": picture("chelsea.jpg")})
    (new,) = wait_for(lambda: events_of(r, camera), "the new event")
    other = camera + "-other"
    for _ in range(20):
        r.xadd(other, {"img": picture("coffee.jpg")})
        if len(events_of(r, camera)) >= 2:
            break
        time.sleep(0.2)
    assert [e["type"] for e in events_of(r, camera)] == ["new", "end"]
    assert events_of(r, camera)[1]["id"] == new["id"]


def test_a_hit_after_the_gap_starts_a_new_event(r: redis.Redis, camera: str) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", "event_gap_s", 0.3)
    r.xadd(camera, {"img": picture("chelsea.jpg")})
    wait_for(lambda: events_of(r, camera), "the first event")
    time.sleep(0.6)
    r.xadd(camera, {"img": picture("chelsea.jpg")})
    changes = wait_for(lambda: len(events_of(r, camera)) >= 3 and events_of(r, camera), "end and new")
    assert [e["type"] for e in changes] == ["new", "end", "new"]
    assert changes[0]["id"] == changes[1]["id"] != changes[2]["id"]
