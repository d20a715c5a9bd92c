"""Frame sources: which kind a source string names, and real frames from pictures, video files and URLs."""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gearcam.camera.sources import SAMPLES_DIR, SourceError, open_source, parse_source
from gearcam.errors import CallerError, OperatorError


def size_of(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return image.size


class TestParseSource:
    def test_the_forms_a_source_may_take(self, tmp_path: Path) -> None:
        (tmp_path / "a.jpg").write_bytes(b"x")
        (tmp_path / "clip.mp4").write_bytes(b"x")
        cases = {
            "samples": ("images", str(SAMPLES_DIR)),
            "0": ("v4l2", "0"),
            "/dev/video2": ("v4l2", "/dev/video2"),
            "rtsp://cam.local/stream": ("url", "rtsp://cam.local/stream"),
            "http://cam.local/video.mjpg": ("url", "http://cam.local/video.mjpg"),
            str(tmp_path): ("images", str(tmp_path)),
            f"{tmp_path}/*.jpg": ("images", f"{tmp_path}/*.jpg"),
            str(tmp_path / "clip.mp4"): ("video", str(tmp_path / "clip.mp4")),
            str(tmp_path / "a.jpg"): ("images", str(tmp_path / "a.jpg")),
        }
        for text, expected in cases.items():
            spec = parse_source(text)
            assert (spec.kind, spec.target) == expected, text

    def test_a_csi_camera_is_read_through_nvarguscamerasrc_keeping_one_frame(self) -> None:
        spec = parse_source("csi:1", width=1280, height=720, fps=15)
        assert spec.kind == "csi" and spec.name == "csi:1"
        assert spec.target.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=1280, height=720")
        assert "framerate=15/1" in spec.target and spec.target.endswith("appsink drop=true max-buffers=1")
        assert "sensor-id=0" in parse_source("csi").target

    def test_a_url_password_never_reaches_the_name(self) -> None:
        spec = parse_source("rtsp://admin:secret@cam.local:554/live")
        assert spec.target == "rtsp://admin:secret@cam.local:554/live"
        assert "secret" not in spec.name

    def test_an_unknown_source_lists_the_forms_there_are(self, tmp_path: Path) -> None:
        with pytest.raises(CallerError, match="samples, a V4L2 index or /dev/videoN, csi"):
            parse_source(str(tmp_path / "missing.file"))
        with pytest.raises(CallerError, match="csi:0"):
            parse_source("csi:left")


class TestPictures:
    def test_the_samples_loop_as_jpeg_frames_of_the_requested_size(self) -> None:
        source = open_source(parse_source("samples"), 320, 240, 80)
        frames = [source.read() for _ in range(8)]
        assert {size_of(f) for f in frames} == {(320, 240)}
        assert frames[:4] == frames[4:]  # 4 pictures, then the same again
        assert len(set(frames[:4])) == 4

    def test_the_samples_ship_with_their_licence(self) -> None:
        names = sorted(p.name for p in SAMPLES_DIR.glob("*.jpg"))
        assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
        readme = (SAMPLES_DIR / "README.md").read_text()
        assert all(name in readme for name in names) and "CC0" in readme and "public domain" in readme

    def test_a_folder_is_reread_each_round_and_other_files_are_ignored(self, tmp_path: Path) -> None:
        shutil.copy(SAMPLES_DIR / "chelsea.jpg", tmp_path / "1.jpg")
        (tmp_path / "notes.txt").write_text("not a picture")
        source = open_source(parse_source(str(tmp_path)), 64, 48, 70)
        assert size_of(source.read()) == (64, 48)
        shutil.copy(SAMPLES_DIR / "coffee.jpg", tmp_path / "2.jpg")
        frames = [source.read() for _ in range(2)]
        assert frames[0] != frames[1]  # the new picture joined the loop

    def test_a_large_photo_is_decoded_at_a_reduced_scale_into_the_same_frame(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from PIL import JpegImagePlugin

        photo = Image.open(SAMPLES_DIR / "astronaut.jpg").convert("RGB").resize((4000, 3000))
        photo.save(tmp_path / "big.jpg", quality=90)
        drafts: list[tuple[object, ...]] = []
        real_draft = JpegImagePlugin.JpegImageFile.draft

        def draft(image: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
            result = real_draft(image, mode, size)
            drafts.append((size, image.size))
            return result

        monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
        frame = open_source(parse_source(str(tmp_path)), 640, 480, 90).read()
        assert drafts == [((1280, 960), (2000, 1500))]  # decoded at half scale, still twice the frame
        full = photo.resize((640, 480), Image.Resampling.BILINEAR)
        with Image.open(io.BytesIO(frame)) as got:
            difference = np.abs(np.asarray(got.convert("L"), np.float32) - np.asarray(full.convert("L"), np.float32))
        assert difference.mean() < 3  # grey levels: the same picture, up to JPEG's loss

    def test_a_glob_with_no_pictures_is_an_error_naming_it(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match=r"no pictures"):
            open_source(parse_source(f"{tmp_path}/*.png"), 64, 48, 70)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A real 6-frame MJPEG video."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed (requirements.txt)")
    import numpy as np

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(6):
        writer.write(np.full((120, 160, 3), i * 40, dtype=np.uint8))
    writer.release()
    return path


class TestVideo:
    def test_a_video_file_loops_and_frames_are_resized(self, clip: Path) -> None:
        source = open_source(parse_source(str(clip)), 80, 60, 75)
        frames = [source.read() for _ in range(14)]
        source.close()
        assert {size_of(f) for f in frames} == {(80, 60)}

    def test_an_http_url_is_read(self, clip: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(clip.parent))
        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                url = f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
                source = open_source(parse_source(url), 80, 60, 75)
                assert size_of(source.read()) == (80, 60)
                source.close()
            finally:
                server.shutdown()

    def test_a_csi_camera_without_gstreamer_in_opencv_names_the_fix(self) -> None:
        cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed (requirements.txt)")
        from gearcam.camera.sources import has_gstreamer

        if has_gstreamer(cv2):
            pytest.skip("this OpenCV has GStreamer; the refusal cannot be seen here")
        with pytest.raises(OperatorError, match="GStreamer"):
            open_source(parse_source("csi:0"), 640, 480, 80)

    def test_a_missing_v4l2_device_is_a_source_error(self) -> None:
        pytest.importorskip("cv2", reason="opencv-python-headless is not installed (requirements.txt)")
        with pytest.raises(SourceError, match="could not be opened"):
            open_source(parse_source("/dev/video99"), 640, 480, 80)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
