"""The camera producer: frames from a camera (or the bundled samples) into the stream ``camera:<n>``."""

from __future__ import annotations

from gearcam.camera.producer import Backoff, Producer, ProducerStats
from gearcam.camera.sources import SAMPLES_DIR, FrameSource, SourceError, SourceSpec, open_source, parse_source

__all__ = [
    "SAMPLES_DIR",
    "Backoff",
    "FrameSource",
    "Producer",
    "ProducerStats",
    "SourceError",
    "SourceSpec",
    "open_source",
    "parse_source",
]
