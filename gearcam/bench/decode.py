"""Decoding a camera frame: the pipeline's reduced-scale JPEG decode against a full one, per frame size.

Every sampled frame is decoded before the model sees it, on the Gears worker's threads (on a
Jetson Nano, four slow ARM cores). gearcam.models.preprocess, like the Gears script, asks the
JPEG decoder for a reduced scale (1/2 to 1/8, in the DCT) when a frame's shorter side is 1024
pixels or more (never under twice the resize's 256). This section measures what that saves for
the frame sizes cameras send, against a full decode of the same frame followed by the same
preprocessing, the two taking their windows in turns (measure_interleaved).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from PIL import Image

from gearcam.bench.measure import CallMeter, measure_interleaved
from gearcam.bench.pipeline import PICTURE
from gearcam.bench.plan import Plan
from gearcam.bench.stats import ratio
from gearcam.models.preprocess import decode, preprocess, preprocess_image

__all__ = ["full_preprocess", "run_decode", "scaled_frame"]

Tick = Callable[[str], None]


def scaled_frame(width: int, height: int, quality: int = 85) -> bytes:
    """The sample picture filling a width x height frame, as JPEG at the camera's default quality."""
    with Image.open(PICTURE) as image:
        out = io.BytesIO()
        image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR).save(out, "JPEG", quality=quality)
        return out.getvalue()


def full_preprocess(frame: bytes) -> Any:
    """The baseline: the whole frame decoded at its own size, then the same preprocessing."""
    with Image.open(io.BytesIO(frame)) as image:
        image.load()
        return preprocess_image(image)


def _meters(frame: bytes) -> dict[str, CallMeter]:
    def reduced() -> None:
        preprocess(frame)

    def full() -> None:
        full_preprocess(frame)

    return {"reduced": CallMeter([reduced]), "full": CallMeter([full])}


def run_decode(plan: Plan, tick: Tick) -> dict[str, Any]:
    """Frames/s of decode + preprocess, reduced and full, for each of the plan's frame sizes."""
    rows = []
    for width, height in plan.decode_sizes:
        frame = scaled_frame(width, height)
        measured = measure_interleaved(_meters(frame), 1, plan.window_s, plan.repeats, plan.warmup_s)
        figures = {name: m.to_dict() for name, m in measured.items()}
        tick(f"decode {width}x{height}")
        rows.append({
            "width": width, "height": height, "frame_bytes": len(frame), "decoded_at": list(decode(frame).size),
            **figures, "reduced_vs_full": ratio(figures["reduced"]["inferences_per_s"],
                                                figures["full"]["inferences_per_s"]),
        })  # fmt: skip
    return {"rows": rows}
