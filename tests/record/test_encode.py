"""write_clip's memory does not grow with the clip's length: frames are decoded and written one at a time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Writes a clip of N moving-square 640x480 frames in a fresh interpreter and prints its peak RSS (MiB).
_PROBE = """
import io, resource, sys, tempfile
from pathlib import Path
from PIL import Image, ImageDraw
from gearcam.record.encode import pick_codec, write_clip

def jpeg(i):
    image = Image.new("RGB", (640, 480), (120, 130, 140))
    ImageDraw.Draw(image).rectangle([i * 5 % 580, 200, i * 5 % 580 + 60, 260], fill=(10, 10, 10))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()

frames = [(i * 100, jpeg(i)) for i in range(int(sys.argv[1]))]
with tempfile.TemporaryDirectory() as folder:
    clip = write_clip(frames, Path(folder) / "x.mp4", pick_codec("auto", Path(folder)), 10.0)
    assert clip.frames == len(frames), clip
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mib(frames: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _PROBE, str(frames)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.slow
def test_a_clip_eight_times_longer_needs_about_the_same_memory() -> None:
    short, long = peak_mib(50), peak_mib(400)
    # Decoding every frame first took ~0.9 MiB a frame: 320 MiB more for the long clip.
    assert long - short < 60, (short, long)
