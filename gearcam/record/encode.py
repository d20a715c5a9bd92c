"""Frames to an MP4 file with PyAV (FFmpeg's libraries), in a codec every browser plays.

H.264 (libx264, ``preset veryfast``, CRF 23) where the FFmpeg build has it, as PyAV's wheels
do; else VP9 (libvpx in its realtime mode); else MPEG-4 Part 2 with a warning that browsers will
not play it. The setting keeps the MP4 codec tags as names (``avc1``, ``vp09``, ``mp4v``).

Until 2026-12-05 the clips were written with OpenCV's VideoWriter, which can set neither an
encoder's speed nor its quality: its wheel has no H.264 encoder and its VP9 ran libvpx at its
slowest settings and a bit rate scaled to the frame (measured here on moving 640x480 frames:
147 ms of CPU and 22 KB a frame; H.264 here 4.3 ms and 2 KB, VP9 realtime 4.8 ms and 1.5 KB;
docs/recording.md).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

__all__ = ["CODECS", "Clip", "EncodeError", "pick_codec", "write_clip"]

logger = logging.getLogger(__name__)

# The setting's name -> (FFmpeg encoder, its options): best first. CRF keeps the quality constant
# whatever the frame size, where a fixed bit rate would starve 1080p or waste bytes on a still scene.
ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    "avc1": ("libx264", {"preset": "veryfast", "crf": "23"}),
    "vp09": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1"}),
    "mp4v": ("mpeg4", {"qscale": "5"}),
}
CODECS = tuple(ENCODERS)
BROWSER_PLAYS = frozenset({"avc1", "vp09"})
_PIXELS = "yuv420p"  # what browsers decode; its chroma is halved, so a frame's sides are made even


class EncodeError(Exception):
    """The clip could not be written (no encoder opened, or no frame decoded)."""


@dataclass(frozen=True)
class Clip:
    path: Path
    codec: str
    frames: int
    fps: float
    size: int


class _Writer:
    """One MP4 file being written, one frame at a time."""

    def __init__(self, path: Path, codec: str, fps: float, size: tuple[int, int]) -> None:
        encoder, options = ENCODERS[codec]
        try:
            self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as exc:
            raise EncodeError(f"cannot create {path}: {exc}") from exc
        try:
            stream = self.container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001),
                                               options=dict(options))  # fmt: skip
            if not isinstance(stream, av.VideoStream):
                raise ValueError(f"{encoder} is not a video encoder")
            self.stream = stream
            self.stream.width, self.stream.height = size
            self.stream.pix_fmt = _PIXELS
        except (av.FFmpegError, ValueError) as exc:
            self.container.close()
            raise EncodeError(f"this FFmpeg cannot encode {codec} ({encoder}): {exc}") from exc

    def write(self, rgb: np.ndarray) -> None:
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))  # what the encoder still holds
        finally:
            self.container.close()


def _even(width: int, height: int) -> tuple[int, int]:
    return max(2, width - width % 2), max(2, height - height % 2)


def _opens(codec: str, folder: Path) -> bool:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "probe.mp4"
        try:
            writer = _Writer(path, codec, 5.0, (64, 48))
            try:
                for level in (0, 128):
                    writer.write(np.full((48, 64, 3), level, np.uint8))
            finally:
                writer.close()
        except (EncodeError, av.FFmpegError):
            return False
        return path.stat().st_size > 0


def pick_codec(wanted: str = "auto", folder: Path | None = None) -> str:
    """``wanted`` if this FFmpeg can encode it; ``auto``: the best of CODECS that does."""
    folder = folder or Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    for codec in CODECS if wanted == "auto" else (wanted,):
        if codec in ENCODERS and _opens(codec, folder):
            if codec not in BROWSER_PLAYS:
                logger.warning("clips are encoded as %s, which browsers do not play; this FFmpeg has no H.264 or "
                               "VP9 encoder", codec)  # fmt: skip
            return codec
    raise EncodeError(f"this FFmpeg cannot encode {wanted} into MP4; set record.codec to one of {', '.join(CODECS)}")


def _decode(jpeg: bytes, size: tuple[int, int] | None) -> np.ndarray | None:
    """One frame as RGB pixels, at ``size`` when given; None when it does not decode."""
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    size = size or _even(*rgb.size)
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def write_clip(frames: Sequence[tuple[int, bytes]], path: Path, codec: str, fps_hint: float) -> Clip:
    """JPEG frames (ms, bytes) to ``path``, at the rate their times give; written aside, then renamed.

    Frames are decoded and written one at a time, so memory stays at one decoded frame whatever the
    clip's length (decoding them all first took ~1 MiB a 640x480 frame: 500 MiB for a 40 s clip).
    The rate comes from the frames' times; a frame that does not decode is skipped. The first frame
    sets the clip's size (its sides made even); a frame of another size is resized to it.
    """
    span_s = (frames[-1][0] - frames[0][0]) / 1000 if frames else 0.0
    fps = (len(frames) - 1) / span_s if len(frames) > 1 and span_s > 0 else fps_hint
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}")
    writer: _Writer | None = None
    size: tuple[int, int] | None = None
    written = 0
    try:
        try:
            for _, jpeg in frames:
                rgb = _decode(jpeg, size)
                if rgb is None:
                    continue
                if writer is None:
                    size = (rgb.shape[1], rgb.shape[0])
                    writer = _Writer(part, codec, fps, size)
                writer.write(rgb)
                written += 1
        finally:
            if writer is not None:
                writer.close()
    except av.FFmpegError as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk keeps its errno: the recorder counts it apart
            raise
        raise EncodeError(f"{codec} could not write {part}: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if not written:
        part.unlink(missing_ok=True)
        raise EncodeError(f"none of the {len(frames)} frames decoded")
    try:
        size_bytes = part.stat().st_size
        if size_bytes == 0:
            raise EncodeError(f"{codec} wrote nothing to {part} (is the disk full?)")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return Clip(path, codec, written, fps, size_bytes)
