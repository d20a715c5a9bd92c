"""write_clip: the codec it names, rate-controlled sizes, odd and broken frames, and memory that does not grow
with the clip's length (frames are decoded and written one at a time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gearcam.record.encode import EncodeError, pick_codec, write_clip
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


def _moving(count: int, size: tuple[int, int] = (640, 480)) -> list[tuple[int, bytes]]:
    """A pan across a photo: every frame differs everywhere, as a camera's view of a moving scene does."""
    import io

    from PIL import Image

    photo = Image.open(ROOT / "gearcam" / "camera" / "samples" / "astronaut.jpg").convert("RGB")
    photo = photo.resize((size[0] * 2, size[1] * 2))
    frames = []
    for i in range(count):
        out = io.BytesIO()
        photo.crop((i * 8, i * 6, i * 8 + size[0], i * 6 + size[1])).save(out, "JPEG", quality=85)
        frames.append((i * 200, out.getvalue()))
    return frames


def _stream(path: Path) -> tuple[str, int, int, int, str]:
    """(codec, width, height, frames, pixel format) of an MP4's video stream, read back by FFmpeg."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        count = sum(1 for _ in container.decode(video))
        return video.codec_context.name, video.width, video.height, count, video.codec_context.pix_fmt or ""


def test_auto_writes_h264_with_its_rate_control_not_a_frame_sized_bit_rate(tmp_path: Path) -> None:
    frames = _moving(30)
    clip = write_clip(frames, tmp_path / "x.mp4", pick_codec("auto", tmp_path), 5.0)
    assert clip.codec == "avc1" and clip.frames == 30 and clip.fps == pytest.approx(5.0)
    assert _stream(clip.path) == ("h264", 640, 480, 30, "yuv420p")
    # CRF 23: about 2-4 KB a moving 640x480 frame here; OpenCV's VP9 wrote 22 KB (docs/recording.md)
    assert clip.size / clip.frames < 8 * 1024, clip.size
    data = clip.path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: the index first, so playback starts at once


@pytest.mark.parametrize(("codec", "name"), [("vp09", "vp9"), ("mp4v", "mpeg4")])
def test_the_other_codecs_write_what_they_name(tmp_path: Path, codec: str, name: str) -> None:
    clip = write_clip(_moving(6), tmp_path / "x.mp4", pick_codec(codec, tmp_path), 5.0)
    assert _stream(clip.path)[:4] == (name, 640, 480, 6)


def test_odd_sizes_corrupt_and_resized_frames_still_make_a_clip(tmp_path: Path) -> None:
    frames = _moving(5, (641, 481))
    frames[2] = (frames[2][0], b"\xff\xd8 not a jpeg")
    frames[3] = _moving(4, (320, 240))[3]  # a frame of another size: scaled to the first's
    clip = write_clip(frames, tmp_path / "x.mp4", "avc1", 5.0)
    assert clip.frames == 4 and _stream(clip.path)[1:4] == (640, 480, 4)  # sides made even for yuv420p
    assert not list(tmp_path.glob(".x.mp4"))  # the part file was renamed, none is left


def test_a_clip_of_frames_that_do_not_decode_fails_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(EncodeError, match="none of the 2 frames decoded"):
        write_clip([(0, b"junk"), (100, b"\xff\xd8junk")], tmp_path / "x.mp4", "avc1", 5.0)
    assert list(tmp_path.iterdir()) == []


def test_a_codec_this_ffmpeg_lacks_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(EncodeError, match="set record.codec to one of avc1, vp09, mp4v"):
        pick_codec("h265", tmp_path)


def test_a_full_disk_is_an_oserror_with_its_errno_and_leaves_no_file(tmp_path: Path) -> None:
    import errno

    (tmp_path / ".x.mp4").symlink_to("/dev/full")  # where the clip is written before its rename
    with pytest.raises(OSError) as caught:
        write_clip(_moving(10), tmp_path / "x.mp4", "avc1", 5.0)
    assert caught.value.errno == errno.ENOSPC and not isinstance(caught.value, EncodeError)
    assert list(tmp_path.iterdir()) == []
