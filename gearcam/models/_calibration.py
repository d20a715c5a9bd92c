"""Calibration frames for the int8 exports, made offline from scikit-image's bundled pictures.

Static int8 quantization needs representative activations. No data set can be
downloaded here, and the four test pictures in ``shared/data`` must stay unseen by
the quantizer, or "int8 keeps the top class" would be measured on its own training
set. scikit-image's wheel ships a handful of natural and scientific pictures;
chelsea, coffee, astronaut and rocket (the test pictures) are left out, and each
remaining one gives a few deterministic crops and flips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from gearcam.models.preprocess import preprocess_image

__all__ = ["CALIBRATION_IMAGES", "calibration_frames", "describe"]

# Files inside skimage/data/ (all shipped in the wheel, none fetched).
CALIBRATION_IMAGES = (
    "brick.png",
    "camera.png",
    "cell.png",
    "clock_motion.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "text.png",
)
SEED = 20240
CROPS_PER_IMAGE = 4


def _data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _crops(image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """The whole picture, its mirror, and two random squares of 50-90 % of the shorter side."""
    out = [image, ImageOps.mirror(image)]
    short = min(image.size)
    for _ in range(CROPS_PER_IMAGE - 2):
        side = int(short * rng.uniform(0.5, 0.9))
        left = int(rng.integers(0, image.width - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        out.append(image.crop((left, top, left + side, top + side)))
    return out


def calibration_frames() -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    """Preprocessed ``[1, 224, 224, 3]`` frames, the same list on every call."""
    rng = np.random.default_rng(SEED)
    frames: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    for name in CALIBRATION_IMAGES:
        with Image.open(_data_dir() / name) as image:
            rgb = image.convert("RGB")
        frames.extend(preprocess_image(crop) for crop in _crops(rgb, rng))
    return frames


def describe() -> dict[str, Any]:
    import skimage

    return {
        "source": f"scikit-image=={skimage.__version__} bundled pictures (skimage/data), test pictures excluded",
        "images": list(CALIBRATION_IMAGES),
        "frames": len(CALIBRATION_IMAGES) * CROPS_PER_IMAGE,
        "crops": f"whole, mirrored, 2 random squares of 50-90 % of the shorter side (seed {SEED})",
    }
