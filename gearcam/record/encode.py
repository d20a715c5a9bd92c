"""Frames to an MP4 file with OpenCV, in a codec Chromium plays.

The choice, measured here (docs/recording.md): OpenCV's wheels bring FFmpeg without an H.264
encoder (``avc1`` opens only a hardware encoder, absent here), and Chromium refuses MPEG-4
Part 2 (``mp4v``: "no supported streams"). VP9 in MP4 (``vp09``) is encoded by the wheels'
libvpx and plays in Chromium. So ``auto`` takes the first that opens of ``avc1``, ``vp09``,
``mp4v``; the last only with a warning that browsers will not play it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # the H.264 probe's failure is expected, not news
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2  # noqa: E402

__all__ = ["CODECS", "Clip", "pick_codec", "write_clip"]

logger = logging.getLogger(__name__)

CODECS = ("avc1", "vp09", "mp4v")  # best first
BROWSER_PLAYS = frozenset({"avc1", "vp09"})


class EncodeError(Exception):
    """The clip could not be written (the codec refused, or no frame decoded)."""


@dataclass(frozen=True)
class Clip:
    path: Path
    codec: str
    frames: int
    fps: float
    size: int


def _opens(codec: str, folder: Path) -> bool:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = str(Path(tmp) / "probe.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*codec), 5.0, (64, 48))
        try:
            if not writer.isOpened():
                return False
            for level in (0, 128):
                writer.write(np.full((48, 64, 3), level, np.uint8))
        finally:
            writer.release()
        return os.path.getsize(path) > 0


def pick_codec(wanted: str = "auto", folder: Path | None = None) -> str:
    """``wanted`` if it is a codec this OpenCV can encode; ``auto``: the best of CODECS that opens."""
    folder = folder or Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    for codec in CODECS if wanted == "auto" else (wanted,):
        if _opens(codec, folder):
            if codec not in BROWSER_PLAYS:
                logger.warning("clips are encoded as %s, which Chromium does not play; this OpenCV has no H.264 or "
                               "VP9 encoder", codec)  # fmt: skip
            return codec
    raise EncodeError(f"this OpenCV cannot encode {wanted} into MP4; set record.codec to one of {', '.join(CODECS)}")


def write_clip(frames: Sequence[tuple[int, bytes]], path: Path, codec: str, fps_hint: float) -> Clip:
    """JPEG frames (ms, bytes) to ``path``, at the rate their times give; written aside, then renamed."""
    decoded = ((t, cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)) for t, b in frames)
    images = [(t, img) for t, img in decoded if img is not None]
    if not images:
        raise EncodeError(f"none of the {len(frames)} frames decoded")
    span_s = (images[-1][0] - images[0][0]) / 1000
    fps = (len(images) - 1) / span_s if len(images) > 1 and span_s > 0 else fps_hint
    height, width = images[0][1].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}")
    writer = cv2.VideoWriter(str(part), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
    try:
        if not writer.isOpened():
            raise EncodeError(f"OpenCV could not open {codec} for {part}")
        for _, image in images:
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height))
            writer.write(image)
    finally:
        writer.release()
    try:
        size = part.stat().st_size
        if size == 0:
            raise EncodeError(f"{codec} wrote nothing to {part} (is the disk full?)")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return Clip(path, codec, len(images), fps, size)
