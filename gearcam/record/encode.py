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
    """JPEG frames (ms, bytes) to ``path``, at the rate their times give; written aside, then renamed.

    Frames are decoded and written one at a time, so memory stays at one decoded frame whatever the
    clip's length (decoding them all first took ~1 MiB a 640x480 frame: 500 MiB for a 40 s clip).
    The rate comes from the frames' times; a frame that does not decode is skipped.
    """
    span_s = (frames[-1][0] - frames[0][0]) / 1000 if frames else 0.0
    fps = (len(frames) - 1) / span_s if len(frames) > 1 and span_s > 0 else fps_hint
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}")
    writer: cv2.VideoWriter | None = None
    size_wh = (0, 0)
    written = 0
    try:
        for _, jpeg in frames:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            if writer is None:
                size_wh = (image.shape[1], image.shape[0])
                writer = cv2.VideoWriter(str(part), cv2.VideoWriter.fourcc(*codec), fps, size_wh)
                if not writer.isOpened():
                    raise EncodeError(f"OpenCV could not open {codec} for {part}")
            if (image.shape[1], image.shape[0]) != size_wh:
                image = cv2.resize(image, size_wh)
            writer.write(image)
            written += 1
    finally:
        if writer is not None:
            writer.release()
    if not written:
        part.unlink(missing_ok=True)
        raise EncodeError(f"none of the {len(frames)} frames decoded")
    try:
        size = part.stat().st_size
        if size == 0:
            raise EncodeError(f"{codec} wrote nothing to {part} (is the disk full?)")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return Clip(path, codec, written, fps, size)
