"""``python -m gearcam.camera``: add camera frames to ``camera:<n>`` until stopped (Ctrl-C or SIGTERM).

Defaults come from the ``camera`` section of gearcam/config.py (and invoke.yaml, and
``GEARCAM_CAMERA__<KEY>``); the flags below override them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from gearcam.allocator import keep_frame_buffers
from gearcam.camera.producer import Producer
from gearcam.camera.sources import parse_source
from gearcam.config import load_settings
from gearcam.errors import GearcamError, exit_with
from gearcam.logs import add_log_level, setup_logging
from gearcam.signals import stop_on_signals

logger = logging.getLogger("gearcam.camera")

_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--source", str, "samples, 0 or /dev/video0, csi[:N], rtsp://… or http://…, a video file, a folder or a glob"),
    ("--stream", str, "stream to add frames to (camera:<n>)"),
    ("--fps", float, "frames per second"),
    ("--width", int, "frame width"),
    ("--height", int, "frame height"),
    ("--quality", int, "JPEG quality (1-100)"),
    ("--maxlen", int, "MAXLEN ~ of the stream"),
)


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    return int(width), int(height)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gearcam.camera", description=__doc__.split("\n\n")[0])
    for flag, kind, text in _FLAGS:
        parser.add_argument(flag, type=kind, help=f"{text} (default: configuration)")
    parser.add_argument("--size", type=_size, help="frame size as WIDTHxHEIGHT, e.g. 640x480 (sets both)")
    parser.add_argument("--url", help="Redis to write to (default: REDIS_URL or the configuration)")
    parser.add_argument("--frames", type=int, help="stop after this many frames (default: run until stopped)")
    parser.add_argument(
        "--wait-for-camera", action="store_true", help="keep retrying a source that cannot be opened at start"
    )
    add_log_level(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    keep_frame_buffers()  # every frame is decoded, resized and encoded anew (gearcam/allocator.py)
    camera: dict[str, Any] = {}
    for flag, _, _ in _FLAGS:
        value = getattr(args, flag[2:])
        if value is not None:
            camera[flag[2:]] = value
    if args.size:
        camera["width"], camera["height"] = args.size
    if args.wait_for_camera:
        camera["wait_for_source"] = True
    overrides: dict[str, Any] = {"camera": camera}
    if args.url:
        overrides["redis_url"] = args.url
    stop = stop_on_signals(logger)
    try:
        settings = load_settings(**overrides)
        cam = settings.camera
        spec = parse_source(cam.source, cam.width, cam.height, cam.fps)
        stats = Producer(spec, cam, settings.redis_url, stop).run(args.frames)
    except GearcamError as exc:
        return exit_with(exc)
    logger.info("stopped: %d frame(s) added, %d dropped", stats.produced, stats.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
