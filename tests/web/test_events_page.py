"""The events page in real headless Chromium: a real clip from the recorder, its thumbnail, playback, live rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gearcam.config import RecordSettings
from gearcam.record import Recorder
from tests.conftest import free_port
from tests.record.conftest import add_event, add_frames
from tests.runtime.conftest import Backing
from tests.web.conftest import WebServer, http_get
from tests.web.test_page import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def recorded(r: redis.Redis, tmp_path: Path) -> tuple[Path, str, str]:
    """Two events: one on camera:0 recorded by the real recorder (clip and snapshot), one open on camera:1."""
    t0 = int(time.time() * 1000) - 60_000
    add_frames(r, "camera:0", t0, 60)
    recorder = Recorder(r, RecordSettings(pre_roll_s=1, post_roll_s=1, min_free_bytes=0), tmp_path)
    recorder.start()
    ended = add_event(r, "camera:0", t0 + 2000, t0 + 4000)
    recorder.step()
    hit = r.xadd("cats", {"img": (Path(__file__).parents[2] / "gearcam/camera/samples/chelsea.jpg").read_bytes(),
                          "source": "camera:1", "label": "Egyptian cat", "class": 285, "score": 0.6})  # fmt: skip
    r.xadd("events", {"type": "new", "id": hit, "camera": "camera:1", "label": "Egyptian cat", "class": 285,
                      "score": 0.6, "start": t0 + 30_000, "end": "", "snapshot": hit, "stream": "cats"})  # fmt: skip
    return tmp_path, ended, hit.decode()


@pytest.fixture
def events_server(backing: Backing, recorded: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch,
                  ) -> Iterator[WebServer]:  # fmt: skip
    monkeypatch.setenv("GEARCAM_RECORD__DATA_DIR", str(recorded[0]))
    server = WebServer("cats", backing.url, free_port())
    server.start()
    yield server
    server.stop()


def rows(browser: Any) -> list[dict[str, Any]]:
    script = ("return [...document.querySelectorAll('tr.event')].map((tr) => ({id: tr.dataset.id, clip: tr.dataset.clip,"
              " thumb: tr.querySelector('img').naturalWidth, text: tr.textContent}));")  # fmt: skip
    found: list[dict[str, Any]] = browser.execute_script(script)
    return found


def test_the_events_page_lists_newest_first_with_thumbnails_and_plays_a_clip(
    browser: Any, events_server: WebServer, recorded: tuple[Path, str, str], r: redis.Redis
) -> None:
    _, ended, open_id = recorded
    browser.get(events_server.url + "/events")
    wait_for(browser, lambda b: len(rows(b)) == 2 and all(row["thumb"] > 0 for row in rows(b)), "two rows, thumbnails")
    listed = rows(browser)
    assert [row["id"] for row in listed] == [open_id, ended]  # newest first
    assert "ongoing" in listed[0]["text"] and "2.0 s" in listed[1]["text"] and "0.80" in listed[1]["text"]
    assert listed[1]["clip"].endswith("/clip.mp4") and not listed[0]["clip"]

    browser.find_element("css selector", f"tr.event[data-id='{ended}']").click()
    state = (
        "const v = document.getElementById('player'); return [v.readyState, v.error && v.error.message, v.currentTime];"
    )
    wait_for(browser, lambda b: b.execute_script(state)[0] >= 2, "the clip to load")
    wait_for(browser, lambda b: b.execute_script(state)[2] > 0, "the clip to play")
    assert browser.execute_script(state)[1] is None

    browser.execute_script("const s = document.getElementById('camera'); s.value = 'camera:1';"
                           "s.dispatchEvent(new Event('change'));")  # fmt: skip
    wait_for(browser, lambda b: [row["id"] for row in rows(b)] == [open_id], "the camera filter")
    browser.execute_script("const s = document.getElementById('camera'); s.value = '';"
                           "s.dispatchEvent(new Event('change'));")  # fmt: skip
    wait_for(browser, lambda b: len(rows(b)) == 2, "the filter cleared")

    wait_for(browser, lambda b: b.find_element("id", "conn").text == "live", "the WebSocket")
    late = r.xadd("cats", {"img": b"\xff\xd8", "source": "camera:2", "label": "tiger cat", "class": 282, "score": 0.5})
    r.xadd("events", {"type": "new", "id": late, "camera": "camera:2", "label": "tiger cat", "class": 282,
                      "score": 0.5, "start": int(time.time() * 1000), "end": "", "snapshot": late, "stream": "cats"})  # fmt: skip
    wait_for(browser, lambda b: rows(b) and rows(b)[0]["id"] == late.decode(), "a live addition at the top")


def test_the_events_page_and_its_clips_need_the_token(backing: Backing, r: redis.Redis,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("GEARCAM_WEB__TOKEN", "s3cret-token")
    server = WebServer("cats", backing.url, free_port())
    server.start()
    try:
        for path in ("/events", "/events.json", "/events/1-0/clip.mp4", "/events/1-0/snapshot.jpg"):
            assert http_get(server.url + path)[0] == 401, path
        assert http_get(server.url + "/events.json?token=s3cret-token")[0] == 200
    finally:
        server.stop()
