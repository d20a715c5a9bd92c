"""gears/animal_recognition.py's pure parts, imported as a plain module (no RedisGears needed)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from gearcam.bench.decode import scaled_frame
from gearcam.config import PipelineSettings
from gearcam.loader import config_fields
from gearcam.models import load_manifest, verify_artifact
from gearcam.models.check import CAT_CLASSES
from gearcam.models.engines import load_runner
from gearcam.models.preprocess import decode, preprocess_image
from gearcam.models.preprocess import preprocess as reference_preprocess
from tests.pipeline.conftest import picture

SCRIPT = Path(__file__).resolve().parents[2] / "gears" / "animal_recognition.py"


@pytest.fixture(scope="module")
def gears() -> ModuleType:
    spec = importlib.util.spec_from_file_location("animal_recognition", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # no GB in its globals: nothing is registered
    return module


@pytest.mark.parametrize("name", ["chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg"])
def test_the_script_preprocesses_exactly_like_the_reference(gears: ModuleType, name: str) -> None:
    tensor = gears.preprocess(picture(name))
    assert tensor.shape == (1, 224, 224, 3) and tensor.dtype == np.float32
    assert np.array_equal(tensor, reference_preprocess(picture(name)))


@pytest.mark.parametrize(
    ("size", "decoded"),
    [((640, 480), (640, 480)), ((1280, 720), (1280, 720)), ((1920, 1080), (960, 540)), ((2592, 1944), (1296, 972)),
     ((3840, 2160), (960, 540)), ((2048, 1024), (1024, 512)), ((1000, 4000), (1000, 4000)), ((1024, 4000), (512, 2000)), ((300, 2000), (300, 2000))],
)  # fmt: skip
def test_a_large_frame_is_decoded_at_the_least_scale_the_model_allows(
    gears: ModuleType, size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    frame = scaled_frame(*size)
    assert decode(frame).size == decoded
    assert min(decoded) >= 512 or decoded == size  # never below twice the resize's 256
    assert np.array_equal(gears.preprocess(frame), reference_preprocess(frame))


def test_a_reduced_decode_keeps_the_full_decodes_tensor_and_class(gears: ModuleType) -> None:
    frame = scaled_frame(1920, 1080)
    with Image.open(io.BytesIO(frame)) as image:
        image.load()
        full = preprocess_image(image)  # the same frame decoded at 1920x1080
    reduced = gears.preprocess(frame)
    assert not np.array_equal(reduced, full)  # decoded at 960x540: not the same pixels...
    assert float(np.abs(reduced - full).mean()) < 1 / 128  # ...but within a grey level
    artifact = load_manifest().get("lite0-onnx")
    run = load_runner(artifact, verify_artifact(artifact))
    assert int(run(reduced)[0].argmax()) == int(run(full)[0].argmax()) in CAT_CLASSES


@pytest.mark.parametrize("size", [(640, 480), (451, 300), (1280, 720), (300, 400), (200, 150), (256, 300)])
def test_resizing_only_the_crops_region_matches_resizing_the_whole_frame(size: tuple[int, int]) -> None:
    with Image.open(io.BytesIO(scaled_frame(*size))) as image:
        image.load()
        width, height = image.size
        whole = (256, height * 256 // width) if width <= height else (width * 256 // height, 256)
        left, top = round((whole[0] - 224) / 2), round((whole[1] - 224) / 2)
        expected = image.resize(whole, Image.Resampling.BILINEAR).crop((left, top, left + 224, top + 224))
        got = preprocess_image(image)[0] * 128 + 127  # back to grey levels
    difference = np.abs(got - np.asarray(expected, dtype=np.float32))
    assert difference.max() <= 1 and difference.mean() < 0.2  # a grey level at most, in a few pixels


def test_a_truncated_large_jpeg_fails_to_decode_with_reason_decode(gears: ModuleType) -> None:
    frame = scaled_frame(1920, 1080)
    with pytest.raises(gears.FrameError) as caught:
        gears.preprocess(frame[: len(frame) // 2])
    assert caught.value.reason == "decode"


def test_target_classes_are_indices_and_ranges_never_label_text(gears: ModuleType) -> None:
    assert gears.parse_classes("281-285") == frozenset({281, 282, 283, 284, 285})
    assert gears.parse_classes(" 281, 285 ,967") == frozenset({281, 285, 967})
    for bad in ("cat", "1000", "5-3", ""):
        with pytest.raises(ValueError):
            gears.parse_classes(bad)


def test_the_config_the_loader_writes_parses_without_problems(gears: ModuleType) -> None:
    artifact = load_manifest().get("lite0-tflite")
    fields = config_fields(PipelineSettings(sample_every=4, threshold=0.5), "models:x", artifact)
    params, problems = gears.parse_config([x for kv in fields.items() for x in kv])
    assert problems == []
    assert params["sample_every"] == 4 and params["threshold"] == 0.5 and params["model_key"] == "models:x"
    assert params["model_output"] == "Identity" and params["target_classes"] == frozenset(range(281, 286))


def test_a_bad_config_value_keeps_its_default_and_is_reported(gears: ModuleType) -> None:
    params, problems = gears.parse_config({b"sample_every": b"0", b"threshold": b"high", b"other": b"x"})
    assert params["sample_every"] == 1 and params["threshold"] == gears.DEFAULTS["threshold"]
    assert len(problems) == 2
    assert problems[0] == "sample_every=0: 0 is outside 1..inf; using 1 (the default) until it is fixed"


@pytest.mark.parametrize(
    ("img", "reason"),
    [
        (None, "no_image"),
        ("text", "not_image"),
        (b"", "empty"),
        ("", "empty"),
        (b"\xff\xd8\xff" + b"0" * 2000, "too_large"),
        (b"GIF9 not really", "not_image"),
    ],  # fmt: skip
)
def test_frames_that_cannot_be_pictures_are_refused_with_their_reason(
    gears: ModuleType, img: bytes | str | None, reason: str
) -> None:
    with pytest.raises(gears.FrameError) as caught:
        gears.check_frame(img, 1000)
    assert caught.value.reason == reason


def test_a_truncated_jpeg_fails_to_decode_with_reason_decode(gears: ModuleType) -> None:
    cat = picture("chelsea.jpg")
    gears.check_frame(cat[: len(cat) // 2], 1 << 20)  # looks like a JPEG...
    with pytest.raises(gears.FrameError) as caught:
        gears.preprocess(cat[: len(cat) // 2])  # ...but does not decode
    assert caught.value.reason == "decode"


def test_top_class_is_the_softmax_argmax(gears: ModuleType) -> None:
    logits = np.zeros(1000, dtype=np.float32)
    logits[282] = 5.0
    best, score = gears.top_class(logits)
    assert best == 282
    assert score == pytest.approx(np.exp(5.0) / (np.exp(5.0) + 999))


def test_motion_settings_parse_and_a_bad_one_falls_back_to_the_global_value(gears: ModuleType) -> None:
    base, problems = gears.parse_config({b"motion": b"on", b"min_area": b"800"})
    assert not problems and base["motion"] is True and base["min_area"] == 800
    params, problems = gears.parse_config({b"min_area": b"-1", b"motion_mask": b"0,0 10,0 10,10; 5,5 6,6 7,5"}, base)
    assert params["min_area"] == 800 and params["motion"] is True
    assert params["motion_mask"] == (((0.0, 0.0), (10.0, 0.0), (10.0, 10.0)), ((5.0, 5.0), (6.0, 6.0), (7.0, 5.0)))
    assert problems == ["min_area=-1: -1 is outside 0..inf; using 800 (the global value) until it is fixed"]
    _, problems = gears.parse_config({b"motion": b"maybe", b"motion_mask": b"1,1 2,2"})
    assert "motion=maybe" in problems[0] and "needs 3 or more" in problems[1]


def test_the_gate_passes_motion_since_the_last_sample_and_the_floor(gears: ModuleType) -> None:
    params = dict(gears.DEFAULTS, motion=True, infer_every_s=5.0)
    state: dict[str, object] = {}
    assert gears.gate(state, True, True, 100.0, params) == (True, "motion")
    assert gears.gate(state, False, True, 101.0, params) == (False, "still")
    assert gears.gate(state, True, False, 102.0, params) == (False, "still")  # motion between samples is kept
    assert gears.gate(state, False, True, 103.0, params) == (True, "motion")
    assert gears.gate(state, False, True, 108.0, params) == (True, "floor")
    assert gears.gate(state, False, True, 108.5, dict(params, motion=False)) == (True, "off")


def test_motion_area_counts_changed_frame_pixels_outside_the_mask(gears: ModuleType) -> None:
    params = dict(gears.DEFAULTS, motion=True)
    still = np.full((72, 96), 100.0, dtype=np.float32)
    moved = still.copy()
    moved[10:20, 10:20] = 0.0  # 100 background pixels, each 64 frame pixels of a 768x576 frame
    state: dict[str, object] = {}
    assert gears.motion_area(state, still, (768, 576), params) is None  # no background yet
    assert gears.motion_area(state, still, (768, 576), params) == 0
    assert gears.motion_area(state, moved, (768, 576), params) == 100 * 64
    masked = dict(params, motion_mask=((((0.0, 0.0), (300.0, 0.0), (300.0, 300.0), (0.0, 300.0))),))
    assert gears.motion_area({"background": still, "size": (768, 576)}, moved, (768, 576), masked) == 0
