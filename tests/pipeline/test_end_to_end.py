"""Frames in camera:<n> → every frame in `all`, exactly the cat frames in `cats` (real runtime, real model)."""

from __future__ import annotations

import os

import pytest
import redis

from gearcam.config import STATS_ERRORS_KEY, STATS_PIPELINE_KEY
from gearcam.models import load_manifest, read_labels
from tests.conftest import wait_for
from tests.pipeline.conftest import MODEL, picture

pytestmark = pytest.mark.slow
CATS = set(range(281, 286))


def from_source(r: redis.Redis, stream: str, source: str) -> list[tuple[str, dict[str, bytes]]]:
    """Entries of ``stream`` copied from camera stream ``source``, oldest first."""
    found = []
    for entry_id, fields in r.xrange(stream):
        if fields.get(b"source") == source.encode():
            found.append((entry_id.decode(), {k.decode(): v for k, v in fields.items()}))
    return found


def feed(r: redis.Redis, camera: str, names: list[str | bytes]) -> list[str]:
    """XADD each picture (a file name, or raw bytes) to the camera stream; the entry ids, in order."""
    ids = []
    for count, item in enumerate(names, 1):
        img = picture(item) if isinstance(item, str) else item
        ids.append(r.xadd(camera, {"img": img, "count": count, "ts": 0}).decode())
    return ids


def settled(r: redis.Redis, camera: str, frames: int, sampled: int) -> bool:
    """Every frame was copied to `all` and ``sampled`` frames went through the model."""
    stats = {k.decode(): int(v) for k, v in r.hgetall(f"gearcam:stats:{camera}").items()}
    return stats.get("frames", 0) >= frames and stats.get("inferred", 0) >= sampled


def test_every_frame_reaches_all_and_exactly_the_cat_frames_reach_cats(r: redis.Redis, camera: str) -> None:
    names = ["chelsea.jpg", "coffee.jpg", "astronaut.jpg", "chelsea.jpg", "rocket.jpg", "coffee.jpg", "chelsea.jpg"]
    ids = feed(r, camera, list(names))
    cat_ids = [i for i, name in zip(ids, names, strict=True) if name == "chelsea.jpg"]

    wait_for(lambda: settled(r, camera, len(ids), len(ids)), "every frame copied and classified")
    wait_for(lambda: len(from_source(r, "cats", camera)) >= len(cat_ids), "the cat frames in `cats`")

    copied = from_source(r, "all", camera)
    assert [fields["ref"].decode() for _, fields in copied] == ids
    assert [fields["img"] for _, fields in copied] == [picture(n) for n in names]
    hits = from_source(r, "cats", camera)
    assert sorted(fields["ref"].decode() for _, fields in hits) == cat_ids
    labels = read_labels(load_manifest())
    for _, fields in hits:
        klass = int(fields["class"])
        assert klass in CATS
        assert fields["label"].decode() == labels[klass]
        assert 0.25 <= float(fields["score"]) <= 1.0
        assert float(fields["ms"]) > 0
        assert fields["img"] == picture("chelsea.jpg")


def test_the_classes_and_scores_match_the_manifests_measurement(r: redis.Redis, camera: str) -> None:
    (entry,) = feed(r, camera, ["chelsea.jpg"])
    ((_, hit),) = wait_for(lambda: from_source(r, "cats", camera), "the cat frame in `cats`")
    best, score = load_manifest().get(MODEL).measured["chelsea.jpg"]["top5"][0]
    assert int(hit["class"]) == best
    assert float(hit["score"]) == pytest.approx(score, abs=0.01)


def test_at_sample_rate_n_only_every_nth_frame_is_classified(r: redis.Redis, camera: str) -> None:
    r.hset("gearcam:config", "sample_every", 3)
    names = ["chelsea.jpg", "chelsea.jpg", "coffee.jpg", "chelsea.jpg", "rocket.jpg", "chelsea.jpg",
             "chelsea.jpg", "coffee.jpg", "chelsea.jpg"]  # fmt: skip
    ids = feed(r, camera, list(names))
    wait_for(lambda: settled(r, camera, len(ids), 3), "9 frames copied and 3 classified")
    wait_for(lambda: len(from_source(r, "cats", camera)) >= 2, "the sampled cat frames in `cats`")

    assert len(from_source(r, "all", camera)) == len(ids)
    assert int(r.hget(f"gearcam:stats:{camera}", "sampled") or 0) == 3  # frames 3, 6 and 9
    hits = sorted(fields["ref"].decode() for _, fields in from_source(r, "cats", camera))
    assert hits == [ids[5], ids[8]]  # 3 is coffee; the other cats were not sampled


def test_bad_frames_are_counted_and_skipped_and_the_good_ones_around_them_arrive(r: redis.Redis, camera: str) -> None:
    cat = picture("chelsea.jpg")
    errors_before = {k.decode(): int(v) for k, v in r.hgetall(STATS_ERRORS_KEY).items()}
    frames: list[str | bytes] = [
        "chelsea.jpg",
        cat[: len(cat) // 2],  # truncated JPEG
        b"",  # zero bytes
        b"this is text, not a picture",
        b"\xff\xd8\xff" + os.urandom(20 * 1024 * 1024),  # a 20 MB blob
        "chelsea.jpg",
    ]
    ids = feed(r, camera, frames)
    no_img = r.xadd(camera, {"count": 99}).decode()  # no img field at all
    (last,) = feed(r, camera, ["chelsea.jpg"])

    wait_for(lambda: len(from_source(r, "cats", camera)) >= 3, "the three good cat frames in `cats`")

    def grown() -> dict[str, int]:
        now = {k.decode(): int(v) for k, v in r.hgetall(STATS_ERRORS_KEY).items()}
        return {k: now.get(k, 0) - errors_before.get(k, 0) for k in now if now.get(k, 0) != errors_before.get(k, 0)}

    wait_for(lambda: sum(grown().values()) >= 5, "five errors counted")
    assert grown() == {"decode": 1, "empty": 1, "not_image": 1, "too_large": 1, "no_image": 1}
    assert sorted(fields["ref"].decode() for _, fields in from_source(r, "cats", camera)) == [ids[0], ids[5], last]
    refs_in_all = [fields["ref"].decode() for _, fields in from_source(r, "all", camera)]
    assert ids[0] in refs_in_all and ids[5] in refs_in_all and last in refs_in_all
    assert not {ids[2], ids[3], ids[4], no_img} & set(refs_in_all)  # refused before the copy
    assert r.hget(STATS_PIPELINE_KEY, "last_error")


def test_a_bad_config_value_is_reported_once_with_the_value_used_and_drops_nothing(r: redis.Redis, camera: str) -> None:
    before = int(r.hget(STATS_ERRORS_KEY, "config") or 0)
    r.hset("gearcam:config", "sample_every", "every other one")
    entries = feed(r, camera, ["chelsea.jpg", "chelsea.jpg", "chelsea.jpg"])
    wait_for(lambda: len(from_source(r, "cats", camera)) == 3, "all three frames, classified with the default rate")
    # Frames that arrive together are classified side by side: their hits may come in another order.
    assert sorted(f["ref"].decode() for _, f in from_source(r, "cats", camera)) == sorted(entries)
    assert int(r.hget(STATS_ERRORS_KEY, "config") or 0) == before + 1  # once per change, not per frame
    reported = (r.hget(STATS_PIPELINE_KEY, "config_error") or b"").decode()
    assert "sample_every=every other one: invalid literal" in reported and "using 1 (the default)" in reported
    r.hset("gearcam:config", "sample_every", "1")
    feed(r, camera, ["coffee.jpg"])
    wait_for(lambda: not r.hexists(STATS_PIPELINE_KEY, "config_error"), "the config problem to be cleared")
