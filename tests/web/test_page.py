"""The page in real headless Chromium: live frames with their labels, counters, and recovery."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from tests.conftest import data_file, free_port
from tests.web.conftest import WebServer

pytestmark = pytest.mark.slow


def jpeg(name: str) -> bytes:
    return data_file(name).read_bytes()


def add_hit(r: redis.Redis, label: str, klass: int, score: float = 0.5, picture: str = "chelsea.jpg") -> str:
    entry = r.xadd("cats", {"img": jpeg(picture), "source": "camera:0", "ref": "1-0", "label": label,
                            "class": klass, "score": score, "ms": 12.5})  # fmt: skip
    return entry.decode()


def wait_for(browser: Any, condition: Any, what: str, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition, message=f"waited 20 s for {what}")


def shown(browser: Any) -> dict[str, Any]:
    script = (
        "const img = document.getElementById('frame');"
        "return {id: img.dataset.id || '', width: img.naturalWidth, label: document.getElementById('label').textContent,"
        " score: document.getElementById('score').textContent, conn: document.getElementById('conn').textContent,"
        " seen: (document.getElementById('count_seen') || {}).textContent};"
    )
    result: dict[str, Any] = browser.execute_script(script)
    return result


def test_the_page_shows_the_newest_cats_frame_with_its_label(
    browser: Any, cats_server: WebServer, r: redis.Redis
) -> None:
    add_hit(r, "tiger cat", 282)
    newest = add_hit(r, "Egyptian cat", 285, 0.42)
    browser.get(cats_server.url + "/")
    wait_for(browser, lambda b: shown(b)["id"] == newest and shown(b)["width"] > 0, "the newest frame")
    page = shown(browser)
    assert "Egyptian cat" in page["label"] and "285" in page["label"]
    assert "0.42" in page["score"]
    assert page["conn"] == "live"

    live = add_hit(r, "tabby, tabby cat", 281, 0.9)  # arrives while the page is open
    wait_for(browser, lambda b: shown(b)["id"] == live, "a frame added while the page is open")
    assert "tabby" in shown(browser)["label"]


def test_the_page_shows_the_stage_counters(browser: Any, cats_server: WebServer, r: redis.Redis) -> None:
    r.hset("gearcam:stats:pipeline", mapping={"seen": 17, "hits": 3, "last_error": "decode: broken (camera:0 5-0)"})
    browser.get(cats_server.url + "/")
    wait_for(browser, lambda b: shown(b)["seen"] == "17", "the seen counter")
    assert "decode: broken" in browser.find_element("id", "last_error").text


def test_the_page_recovers_after_the_web_server_restarts(browser: Any, cats_server: WebServer, r: redis.Redis) -> None:
    first = add_hit(r, "tiger cat", 282)
    browser.get(cats_server.url + "/")
    wait_for(browser, lambda b: shown(b)["id"] == first, "the first frame")

    cats_server.stop()
    wait_for(browser, lambda b: shown(b)["conn"] == "reconnecting", "the page to notice the server is gone")
    after = add_hit(r, "Persian cat", 283)
    cats_server.start()
    wait_for(browser, lambda b: shown(b)["conn"] == "live" and shown(b)["id"] == after, "the page to reconnect")
    assert "Persian cat" in shown(browser)["label"]


def test_the_page_recovers_after_redis_restarts(browser: Any, cats_server: WebServer, r: redis.Redis,
                                                backing: Any) -> None:  # fmt: skip
    first = add_hit(r, "tiger cat", 282)
    browser.get(cats_server.url + "/")
    wait_for(browser, lambda b: shown(b)["id"] == first, "the first frame")
    backing.stop()
    wait_for(browser, lambda b: b.find_element("id", "redis").text == "down", "the page to show Redis down")
    backing.start()
    after = redis.Redis.from_url(backing.url).xadd("cats", {"img": jpeg("chelsea.jpg"), "label": "Siamese cat",
                                                             "class": 284, "score": 0.7, "ms": 9})  # fmt: skip
    wait_for(browser, lambda b: shown(b)["id"] == after.decode(), "a frame added after Redis came back")
    assert browser.find_element("id", "redis").text == "up"


def test_the_all_page_shows_live_frames_and_their_rate(browser: Any, backing: Any, r: redis.Redis) -> None:
    server = WebServer("all", backing.url, free_port())
    server.start()
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.1):
            r.xadd("all", {"img": jpeg("coffee.jpg"), "source": "camera:0", "ref": "1-0"}, maxlen=50)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        browser.get(server.url + "/")
        feeder.start()
        wait_for(browser, lambda b: shown(b)["width"] > 0 and "camera:0" in shown(b)["label"], "a live frame")
        wait_for(browser, lambda b: float(b.find_element("id", "fps").text) > 0, "a frame rate above zero")
    finally:
        stop.set()
        feeder.join(5)
        server.stop()
