"""Frame sources: each one hands out JPEG frames of the requested size, one at a time.

A source string picks the kind (``parse_source``):

    samples                  the pictures bundled in gearcam/camera/samples/ (looping)
    0, /dev/video0           a V4L2 camera (OpenCV)
    csi, csi:1               a Jetson CSI camera: nvarguscamerasrc through GStreamer (OpenCV)
    rtsp://…, http://…       a network stream (OpenCV/FFmpeg)
    clip.mp4                 a video file (OpenCV; loops at the end)
    frames/, 'shots/*.jpg'   an image folder or glob (Pillow; looping)

Pictures (samples, folders, globs) need only Pillow; devices, URLs and videos need
OpenCV (``opencv-python-headless``), imported when such a source opens; a CSI camera
needs an OpenCV built with GStreamer (the Jetson's own, not a PyPI wheel). A source
never queues frames: ``read()`` returns the newest one it can get (a live camera keeps
a one-frame buffer), so a slow consumer sees fewer frames, not older ones.
"""

from __future__ import annotations

import glob as globbing
import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image

from gearcam.errors import CallerError, OperatorError

__all__ = [
    "SAMPLES_DIR",
    "FrameSource",
    "ImageFiles",
    "SourceError",
    "SourceSpec",
    "VideoCapture",
    "csi_pipeline",
    "open_source",
    "parse_source",
]

logger = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
Kind = Literal["images", "v4l2", "csi", "url", "video"]


class SourceError(OperatorError):
    """The camera could not be opened or stopped giving frames (the producer reconnects)."""


class FrameSource(Protocol):
    """What the producer needs from a source."""

    name: str

    def read(self) -> bytes:
        """The next frame as JPEG bytes; SourceError when the camera is gone."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    kind: Kind
    target: str  # a path, a glob, a URL, a device path or a pipeline
    name: str  # for logs: never contains a password


def _safe_url(url: str) -> str:
    from gearcam.config import redact_url

    return redact_url(url)


def csi_pipeline(sensor: int, width: int, height: int, fps: float) -> str:
    """The GStreamer pipeline for a Jetson CSI camera, ending in an appsink that keeps one frame."""
    rate = max(1, round(fps))
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={rate}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def parse_source(text: str, width: int = 640, height: int = 480, fps: float = 5.0) -> SourceSpec:
    """What kind of source ``text`` names; an unknown one lists the forms there are."""
    value = text.strip()
    if value == "samples":
        return SourceSpec("images", str(SAMPLES_DIR), "samples")
    if value.isdigit():
        return SourceSpec("v4l2", value, f"/dev/video{value}")
    if value.startswith("/dev/video"):
        return SourceSpec("v4l2", value, value)
    if value == "csi" or value.startswith("csi:"):
        sensor = value.partition(":")[2] or "0"
        if not sensor.isdigit():
            raise CallerError(f"camera source {text!r}: the CSI sensor must be a number, e.g. csi:0")
        return SourceSpec("csi", csi_pipeline(int(sensor), width, height, fps), f"csi:{sensor}")
    if value.lower().startswith(URL_SCHEMES):
        return SourceSpec("url", value, _safe_url(value))
    path = Path(value).expanduser()
    if path.is_dir():
        return SourceSpec("images", str(path), str(path))
    if any(ch in value for ch in "*?["):
        return SourceSpec("images", value, value)
    if path.is_file():
        kind: Kind = "images" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
        return SourceSpec(kind, str(path), str(path))
    raise CallerError(
        f"camera source {text!r} is none of: samples, a V4L2 index or /dev/videoN, csi[:N], an rtsp/http URL, "
        "a video file, an image folder or a glob (is the path right?)"
    )


def encode_jpeg(image: Image.Image, width: int, height: int, quality: int) -> bytes:
    """``image`` fitted to width x height (aspect kept, letterboxed on black) as JPEG.

    A JPEG not loaded yet is decoded at 1/2 to 1/8 scale when it is that much larger than twice
    the frame (Pillow's draft mode, the gap its thumbnail() keeps): a 12-megapixel photo in a
    picture folder costs a third of a full decode (34 against 106 ms here).
    """
    if image.size != (width, height):
        image.draft("RGB", (2 * width, 2 * height))  # a no-op for other formats and loaded images
    rgb = image.convert("RGB")
    if rgb.size != (width, height):
        rgb.thumbnail((width, height), Image.Resampling.BILINEAR)
        if rgb.size != (width, height):
            canvas = Image.new("RGB", (width, height))
            canvas.paste(rgb, ((width - rgb.width) // 2, (height - rgb.height) // 2))
            rgb = canvas
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class ImageFiles:
    """Pictures from a folder or a glob, in name order, looping; the list is re-read each round."""

    def __init__(self, spec: SourceSpec, width: int, height: int, quality: int) -> None:
        self.name = spec.name
        self._target = spec.target
        self._size = (width, height)
        self._quality = quality
        self._round: Iterator[Path] = iter(())
        self._files()  # fail now if there is nothing to show

    def _files(self) -> list[Path]:
        path = Path(self._target)
        candidates = sorted(path.iterdir()) if path.is_dir() else sorted(Path(p) for p in globbing.glob(self._target))
        files = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise SourceError(f"camera {self.name}: no pictures ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
        return files

    def read(self) -> bytes:
        for _ in range(2):  # the current round, then a fresh one
            for path in self._round:
                try:
                    with Image.open(path) as image:
                        return encode_jpeg(image, *self._size, self._quality)
                except OSError as exc:  # removed meanwhile, or not a picture: skip it, say so
                    logger.warning("camera %s: skipping %s (%s)", self.name, path, exc)
            self._round = iter(self._files())
        raise SourceError(f"camera {self.name}: none of the pictures could be read")

    def close(self) -> None:
        self._round = iter(())


def has_gstreamer(cv2: Any) -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    return bool(re.search(r"GStreamer:\s+YES", str(cv2.getBuildInformation())))


class VideoCapture:
    """An OpenCV capture: V4L2 device, CSI pipeline, URL or video file (which loops)."""

    def __init__(self, spec: SourceSpec, width: int, height: int, quality: int, timeout: float = 8.0) -> None:
        # OpenCV's warnings and FFmpeg's own log would repeat on every reconnection attempt: the
        # producer logs each failure once, with the fix. (Read by OpenCV when it loads.)
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        try:
            import cv2
        except ImportError as exc:
            raise OperatorError(
                f"camera {spec.name} needs OpenCV; pip install opencv-python-headless (in requirements.txt)"
            ) from exc
        self._cv2: Any = cv2
        if spec.kind == "csi" and not has_gstreamer(cv2):
            raise OperatorError(
                f"camera {spec.name} needs OpenCV built with GStreamer (nvarguscamerasrc), and this one is not "
                "(the PyPI wheels never are); use the Jetson's own python3-opencv, as docker/Dockerfile.app does"
            )
        self.name = spec.name
        self._spec = spec
        self._size = (width, height)
        self._params = [int(cv2.IMWRITE_JPEG_QUALITY), quality]
        backend = {"v4l2": cv2.CAP_V4L2, "csi": cv2.CAP_GSTREAMER, "url": cv2.CAP_FFMPEG}.get(spec.kind, cv2.CAP_ANY)
        target: str | int = int(spec.target) if spec.target.isdigit() else spec.target
        params: list[int] = []
        if spec.kind == "url":  # a silent host would otherwise hold the open for FFmpeg's 30 s
            ms = int(timeout * 1000)
            params = [int(cv2.CAP_PROP_OPEN_TIMEOUT_MSEC), ms, int(cv2.CAP_PROP_READ_TIMEOUT_MSEC), ms]
        self._cap = cv2.VideoCapture(target, backend, params)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"camera {spec.name} ({spec.kind}) could not be opened" + _WHY.get(spec.kind, ""))
        if spec.kind == "v4l2":
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the newest frame only (where the backend allows)

    def read(self) -> bytes:
        cv2 = self._cv2
        ok, frame = self._cap.read()
        if not ok and self._spec.kind == "video":  # end of the file: start again
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError(f"camera {self.name} gave no frame (unplugged, stream ended or file unreadable)")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", frame, self._params)
        if not ok:
            raise SourceError(f"camera {self.name}: JPEG encoding failed")
        return bytes(data)

    def close(self) -> None:
        self._cap.release()


_WHY = {
    "url": " (refused, unknown host, wrong path or no answer in time; `ffprobe URL` shows why)",
    "v4l2": " (no such device, or another program holds it; `v4l2-ctl --list-devices` lists them)",
    "video": " (not a video OpenCV can read)",
}


def open_source(spec: SourceSpec, width: int, height: int, quality: int, timeout: float = 8.0) -> FrameSource:
    """Open the camera ``spec`` names; SourceError when it is not there (yet)."""
    if spec.kind == "images":
        return ImageFiles(spec, width, height, quality)
    return VideoCapture(spec, width, height, quality, timeout)
