"""Retention on real files: by age and by size per camera, oldest first, the newest kept."""

from __future__ import annotations

import time
from pathlib import Path

from gearcam.record.layout import clip_path, iter_clips
from gearcam.record.retention import enforce, make_room

DAY_MS = 86_400_000


def make_clip(data: Path, camera: str, start_ms: int, size: int = 1000) -> Path:
    path = clip_path(data, camera, start_ms, f"{start_ms}-0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    path.with_suffix(".jpg").write_bytes(b"\xff\xd8" + b"\0" * 98)
    return path


def test_clips_older_than_retain_days_are_deleted_with_their_snapshots(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    old = make_clip(tmp_path, "camera:0", now - 9 * DAY_MS)
    recent = make_clip(tmp_path, "camera:0", now - 2 * DAY_MS)
    deleted = enforce(tmp_path, retain_days=7, max_bytes_per_camera=0, now_ms=now)
    assert (deleted.clips, deleted.bytes) == (1, 1100)
    assert not old.exists() and not old.with_suffix(".jpg").exists() and not old.parent.exists()
    assert recent.exists()


def test_a_camera_over_its_size_loses_its_oldest_clips_and_keeps_the_newest(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    clips = [make_clip(tmp_path, "camera:0", now - minutes * 60_000) for minutes in (50, 40, 30, 20, 10)]
    other = make_clip(tmp_path, "camera:1", now - 90 * 60_000)  # older, but another camera's budget
    deleted = enforce(tmp_path, retain_days=7, max_bytes_per_camera=2500, now_ms=now)
    assert deleted.clips == 3
    assert [c.exists() for c in clips] == [False, False, False, True, True]
    assert other.exists()


def test_making_room_deletes_the_oldest_of_any_camera_but_never_the_newest(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    make_clip(tmp_path, "camera:0", now - 3000)
    make_clip(tmp_path, "camera:1", now - 2000)
    newest = make_clip(tmp_path, "camera:0", now - 1000)
    deleted = make_room(tmp_path, min_free_bytes=2**62)  # never enough: all but the newest go
    assert deleted.clips == 2
    assert [c.path for c in iter_clips(tmp_path)] == [newest]
