"""Where clips live: ``<data>/clips/<camera>/<date>/<event id>.mp4``, ``.jpg`` and ``.json`` beside it.

``<camera>`` is the camera stream's name made safe for any file system (``camera:0`` becomes
``camera-0``) and ``<date>`` the UTC date of the event's start (``2026-12-01``). Files being
written start with a dot and are ignored by everything that lists clips.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClipFile", "camera_dir", "clip_path", "clips_root", "find_clip", "iter_clips"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_ENTRY_ID = re.compile(r"^[0-9]+-[0-9]+$")


def clips_root(data_dir: Path) -> Path:
    return data_dir / "clips"


def camera_dir(data_dir: Path, camera: str) -> Path:
    return clips_root(data_dir) / (_UNSAFE.sub("-", camera).lstrip(".") or "-")


def clip_path(data_dir: Path, camera: str, start_ms: int, event_id: str) -> Path:
    """The clip of an event; ``with_suffix('.jpg')`` is its snapshot, ``.json`` its description."""
    if not _ENTRY_ID.match(event_id):
        raise ValueError(f"event id {event_id!r} is not a stream entry id (<ms>-<seq>)")
    date = time.strftime("%Y-%m-%d", time.gmtime(start_ms / 1000))
    return camera_dir(data_dir, camera) / date / f"{event_id}.mp4"


def find_clip(data_dir: Path, event_id: str) -> Path | None:
    """The clip of an event id on any camera and date, or None (an id that is no entry id finds nothing)."""
    if not _ENTRY_ID.match(event_id):
        return None
    for path in clips_root(data_dir).glob(f"*/*/{event_id}.mp4"):
        return path
    return None


@dataclass(frozen=True)
class ClipFile:
    """One clip on disk, with the files beside it (snapshot, description)."""

    path: Path
    camera_dir: str
    size: int  # bytes of the clip and the files beside it

    @property
    def event_id(self) -> str:
        return self.path.stem

    @property
    def start_ms(self) -> int:
        """The time of the event's first hit (its id is that hit's entry id): retention's order."""
        return int(self.event_id.split("-", 1)[0])

    def files(self) -> list[Path]:
        return [self.path, *(p for p in (self.path.with_suffix(".jpg"), self.path.with_suffix(".json")) if p.exists())]


def iter_clips(data_dir: Path) -> Iterator[ClipFile]:
    """Every finished clip under ``data_dir`` (files still being written excluded)."""
    for path in clips_root(data_dir).glob("*/*/*.mp4"):
        if path.name.startswith(".") or not _ENTRY_ID.match(path.stem):
            continue
        try:
            size = sum(p.stat().st_size for p in (path, path.with_suffix(".jpg"), path.with_suffix(".json"))
                       if p.exists())  # fmt: skip
            yield ClipFile(path, path.parent.parent.name, size)
        except FileNotFoundError:  # deleted meanwhile (retention in another process)
            continue
