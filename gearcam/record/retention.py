"""Retention: clips older than ``retain_days``, and the oldest beyond ``max_bytes_per_camera``, are deleted.

Oldest first means by the event's start (its id), per camera. ``make_room`` deletes the oldest
clips of any camera until the disk has ``min_free_bytes`` free; the recorder calls it before
each clip and skips (and counts) the clip when there is still no room, so a full disk costs
recordings, never the pipeline.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gearcam.record.layout import ClipFile, clips_root, iter_clips

__all__ = ["Deleted", "enforce", "free_bytes", "make_room"]

logger = logging.getLogger(__name__)


@dataclass
class Deleted:
    clips: int = 0
    bytes: int = 0

    def add(self, other: Deleted) -> None:
        self.clips += other.clips
        self.bytes += other.bytes


def _delete(clip: ClipFile, why: str) -> Deleted:
    for path in clip.files():
        path.unlink(missing_ok=True)
    folder = clip.path.parent
    if folder.exists() and not any(folder.iterdir()):
        folder.rmdir()
    logger.info("deleted clip %s of %s (%s)", clip.event_id, clip.camera_dir, why)
    return Deleted(1, clip.size)


def enforce(data_dir: Path, retain_days: float, max_bytes_per_camera: int, now_ms: int) -> Deleted:
    """Apply both limits (0 turns one off); what was deleted."""
    deleted = Deleted()
    by_camera: dict[str, list[ClipFile]] = defaultdict(list)
    for clip in iter_clips(data_dir):
        by_camera[clip.camera_dir].append(clip)
    oldest_kept = now_ms - int(retain_days * 86_400_000)
    for clips in by_camera.values():
        clips.sort(key=lambda c: c.start_ms)
        kept = []
        for clip in clips:
            if retain_days and clip.start_ms < oldest_kept:
                deleted.add(_delete(clip, f"older than {retain_days:g} days"))
            else:
                kept.append(clip)
        total = sum(c.size for c in kept)
        for clip in kept:
            if not max_bytes_per_camera or total <= max_bytes_per_camera:
                break
            deleted.add(_delete(clip, f"camera over {max_bytes_per_camera} bytes"))
            total -= clip.size
    return deleted


def free_bytes(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(data_dir).free


def make_room(data_dir: Path, min_free_bytes: int, keep: int = 1) -> Deleted:
    """Delete the oldest clips (any camera, never the newest ``keep``) until ``min_free_bytes`` are free."""
    deleted = Deleted()
    if not min_free_bytes or free_bytes(data_dir) >= min_free_bytes:
        return deleted
    clips = sorted(iter_clips(data_dir), key=lambda c: c.start_ms)
    for clip in clips[: max(0, len(clips) - keep)]:
        deleted.add(_delete(clip, f"disk has less than {min_free_bytes} bytes free"))
        if free_bytes(data_dir) >= min_free_bytes:
            break
    if deleted.clips:
        logger.warning("disk under %s: %d old clips deleted to make room", clips_root(data_dir), deleted.clips)
    return deleted
