"""/healthz and /metrics of the real server."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, wait_for
from tests.runtime.conftest import Backing
from tests.web.conftest import WebServer, http_get

JPEG = (Path(__file__).resolve().parents[2] / "gearcam" / "camera" / "samples" / "coffee.jpg").read_bytes()


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_healthz_says_ok_while_redis_answers(cats_server: WebServer) -> None:
    # Right after the start the reader may not have heard back yet ("connecting", a loaded CI run
    # caught it there): up once it has.
    status, kind, body = wait_for(lambda: (reply := http_get(cats_server.url + "/healthz")) and
                                  '"redis":"connecting"' not in reply[2] and reply, "the reader's first contact")  # fmt: skip
    assert status == 200 and kind.startswith("application/json")
    assert '"redis":"up"' in body and '"stream":"cats"' in body


def test_healthz_says_connecting_not_down_before_redis_first_answers(tmp_path: Path) -> None:
    # A Redis that accepts the connection and says nothing (still loading a large AOF, say): the
    # web server is not reporting an outage yet, and it is alive (200).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        server = WebServer("cats", f"redis://127.0.0.1:{silent.getsockname()[1]}", free_port())
        server.start()
        try:
            status, _, body = http_get(server.url + "/healthz")
        finally:
            server.stop()
    assert status == 200
    assert '"redis":"connecting"' in body and '"reason":"connecting to Redis at redis://127.0.0.1:' in body


def test_metrics_count_frames_and_pipeline_stages_in_prometheus_format(cats_server: WebServer,
                                                                       r: redis.Redis) -> None:  # fmt: skip
    r.hset("gearcam:stats:pipeline", mapping={"seen": 9, "inferred": 4, "hits": 2, "adapt_raise": 3, "adapt_lower": 1,
                                              "latency_p99_ms": 180})  # fmt: skip
    r.hset("gearcam:stats:notify", mapping={"handled": 7, "dead_letters": 1})
    r.hset("gearcam:stats:camera:9", mapping={"frames": 5, "interval": 4, "interval_reason": "p99 over budget"})
    r.hset("gearcam:stats:errors", mapping={"decode": 1})
    r.hset("gearcam:stats:record", mapping={"clips": 4, "bytes": 12345, "failures": 1, "deleted": 2})
    for _ in range(3):
        r.xadd("cats", {"img": JPEG, "label": "tabby, tabby cat", "class": 281, "score": 0.8})
    expected = {
        ("gearcam_web_frames_total", (("stream", "cats"),)): 3.0,
        ("gearcam_pipeline_frames_total", (("stage", "seen"),)): 9.0,
        ("gearcam_pipeline_frames_total", (("stage", "hits"),)): 2.0,
        ("gearcam_pipeline_errors_total", (("reason", "decode"),)): 1.0,
        ("gearcam_web_redis_up", (("stream", "cats"),)): 1.0,
        ("gearcam_record_clips_total", ()): 4.0,
        ("gearcam_record_bytes_total", ()): 12345.0,
        ("gearcam_record_failures_total", ()): 1.0,
        ("gearcam_record_deletions_total", ()): 2.0,
        ("gearcam_notify_total", (("what", "handled"),)): 7.0,
        ("gearcam_notify_total", (("what", "dead_letters"),)): 1.0,
        ("gearcam_adapt_decisions_total", (("decision", "raise"),)): 3.0,
        ("gearcam_adapt_decisions_total", (("decision", "lower"),)): 1.0,
        ("gearcam_pipeline_latency_p99_ms", ()): 180.0,
        ("gearcam_camera_sample_interval", (("camera", "camera:9"),)): 4.0,
    }
    deadline = time.monotonic() + 20
    while True:
        status, kind, body = http_get(cats_server.url + "/metrics")
        found = samples(body)
        if all(found.get(key) == value for key, value in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    assert {key: found.get(key) for key in expected} == expected


def test_a_retrying_camera_shows_in_healthz_and_metrics(cats_server: WebServer, r: redis.Redis) -> None:
    since = int(time.time() * 1000) - 30_000
    r.hset(
        "gearcam:stats:camera:9",
        mapping={
            "source": "rtsp://cam/live",
            "connected": "0",
            "retrying_since": since,
            "source_error": "camera rtsp://cam/live (url) could not be opened",
        },
    )
    r.hset("gearcam:stats:camera:8", mapping={"source": "samples", "connected": "1"})
    try:
        deadline = time.monotonic() + 20
        while True:
            health = json.loads(http_get(cats_server.url + "/healthz")[2])
            if "camera:9" in health["cameras"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        nine = health["cameras"]["camera:9"]
        assert nine["connected"] is False and "could not be opened" in nine["last_error"]
        assert nine["retrying_since"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since / 1000))
        assert health["cameras"]["camera:8"] == {"source": "samples", "connected": True, "retrying_since": None,
                                                 "last_error": None}  # fmt: skip
        found = samples(http_get(cats_server.url + "/metrics")[2])
        assert found[("gearcam_camera_connected", (("camera", "camera:9"),))] == 0.0
        assert found[("gearcam_camera_connected", (("camera", "camera:8"),))] == 1.0
        assert found[("gearcam_camera_retrying_seconds", (("camera", "camera:9"),))] >= 30.0
    finally:
        r.delete("gearcam:stats:camera:9", "gearcam:stats:camera:8")


def test_the_page_has_an_icon_so_the_browser_gets_no_404(cats_server: WebServer) -> None:
    status, kind, body = http_get(cats_server.url + "/favicon.ico")
    assert status == 200 and kind == "image/svg+xml" and body.startswith("<svg")
    assert '<link rel="icon" href="/favicon.ico"' in http_get(cats_server.url + "/")[2]


def test_healthz_reports_a_redis_outage_without_failing_and_metrics_show_it(tmp_path: Path) -> None:
    backing = Backing(free_port(), tmp_path)
    backing.start()
    server = WebServer("all", backing.url, free_port())
    server.start()
    try:
        backing.stop()
        deadline = time.monotonic() + 20
        while '"redis":"down"' not in http_get(server.url + "/healthz")[2] and time.monotonic() < deadline:
            time.sleep(0.2)
        status, _, body = http_get(server.url + "/healthz")
        assert status == 200 and '"redis":"down"' in body and "not answering" in body
        assert samples(http_get(server.url + "/metrics")[2])[("gearcam_web_redis_up", (("stream", "all"),))] == 0.0
        backing.start()
        deadline = time.monotonic() + 20
        while '"redis":"up"' not in http_get(server.url + "/healthz")[2] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert '"redis":"up"' in http_get(server.url + "/healthz")[2]
    finally:
        server.stop()
        backing.stop()
