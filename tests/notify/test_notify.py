"""The notifier against a real mosquitto, a real HTTP receiver and a real Redis: nothing lost, at least once."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gearcam.config import STATS_NOTIFY_KEY, load_settings
from gearcam.notify.__main__ import build
from gearcam.notify.service import Notifier
from gearcam.status import status_report
from tests.conftest import ROOT, wait_for
from tests.notify.conftest import Mosquitto, Receiver, Watcher

JPEG = b"\xff\xd8\xff\xe0 not a real picture, bytes are bytes"


def add_event(r: redis.Redis, stream: str, kind: str, event_id: str, snapshot: str = "", score: float = 0.5,
              camera: str = "camera:0", label: str = "tabby") -> str:  # fmt: skip
    fields = {"type": kind, "id": event_id, "camera": camera, "label": label, "class": 281, "score": score,
              "start": 1000, "end": 2000 if kind == "end" else "", "snapshot": snapshot, "stream": stream + ":hits"}  # fmt: skip
    return r.xadd(stream, fields).decode()  # type: ignore[arg-type]


class Running:
    def __init__(self, notifier: Notifier, stop: threading.Event) -> None:
        self.notifier, self.stop = notifier, stop
        self.thread = threading.Thread(target=notifier.run, daemon=True)


def settings_for(url: str, stream: str, mqtt_url: str, **events: object) -> object:
    return load_settings(yaml_path=Path("/nonexistent.yaml"), environ={}, redis_url=url,
                         events={"mqtt_url": mqtt_url, "stream": stream, "group": "g", "retries": 2,
                                 "backoff": 0.05, "dead_letter_stream": stream + ":dead", **events})  # fmt: skip


@pytest.fixture
def start(r: redis.Redis, stream: str, broker: Mosquitto) -> Iterator[object]:
    running: list[Running] = []

    def starter(**events: object) -> Notifier:
        url = r.connection_pool.connection_kwargs
        settings = settings_for(f"redis://{url['host']}:{url['port']}", stream, broker.url, **events)
        stop = threading.Event()
        notifier = build(settings, "test", stop)  # type: ignore[arg-type]
        notifier.mqtt.start()
        # An event handled before the broker link is up waits and counts a failed attempt: the
        # tests that count start from a connected notifier.
        assert notifier.mqtt.connected.wait(10), "the notifier did not connect to mosquitto"
        run = Running(notifier, stop)
        run.thread.start()
        running.append(run)
        wait_for(lambda: r.exists(stream) and r.xinfo_groups(stream), "the consumer group")
        return notifier

    yield starter
    for run in running:
        run.stop.set()
        run.thread.join(10)
        run.notifier.mqtt.stop()


def notify_counts(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(STATS_NOTIFY_KEY).items()}


def grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def pending(r: redis.Redis, stream: str) -> int:
    return int(r.xpending(stream, "g")["pending"])


def test_an_events_lifecycle_arrives_on_mqtt_with_the_snapshot_and_home_assistant_discovery(
    r: redis.Redis, stream: str, start, watcher: Watcher
) -> None:
    start()
    hit = r.xadd(stream + ":hits", {"img": JPEG, "label": "tabby"}).decode()
    for kind in ("new", "update", "end"):
        add_event(r, stream, kind, "ev-1", snapshot=hit)
    events = wait_for(lambda: len(watcher.events()) >= 3 and watcher.events(), "3 events on gearcam/events")
    assert [e["type"] for e in events] == ["new", "update", "end"]
    assert events[0]["id"] == "ev-1" and events[0]["camera"] == "camera:0" and events[0]["class"] == 281
    assert events[0]["snapshot"] == hit and events[2]["end"] == 2000
    assert watcher.on("gearcam/camera_0/tabby") == [b"ON", b"ON", b"OFF"]
    assert watcher.on("gearcam/camera_0/tabby/snapshot")[0] == JPEG
    assert b"online" in watcher.on("gearcam/availability")
    sensor = json.loads(watcher.on("homeassistant/binary_sensor/gearcam_camera_0_tabby/config")[0])
    assert sensor["state_topic"] == "gearcam/camera_0/tabby" and sensor["availability_topic"] == "gearcam/availability"
    image = json.loads(watcher.on("homeassistant/image/gearcam_camera_0_tabby/config")[0])
    assert image["image_topic"] == "gearcam/camera_0/tabby/snapshot" and image["content_type"] == "image/jpeg"
    wait_for(lambda: pending(r, stream) == 0, "every entry acknowledged")


def test_snapshot_state_and_discovery_are_retained_for_late_subscribers(
    r: redis.Redis, stream: str, start, broker: Mosquitto
) -> None:
    start()
    hit = r.xadd(stream + ":hits", {"img": JPEG}).decode()
    add_event(r, stream, "new", "ev-2", snapshot=hit)
    wait_for(lambda: r.xinfo_groups(stream)[0]["last-delivered-id"] != b"0-0" and pending(r, stream) == 0, "sent")
    late = Watcher(broker.port)
    try:
        wait_for(lambda: late.on("gearcam/camera_0/tabby/snapshot"), "the retained snapshot")
        retained = {t for t, _, kept in late.messages if kept}
        assert {"gearcam/camera_0/tabby", "gearcam/camera_0/tabby/snapshot", "gearcam/availability",
                "homeassistant/binary_sensor/gearcam_camera_0_tabby/config"} <= retained  # fmt: skip
    finally:
        late.close()


def test_webhooks_get_signed_json_after_retries_and_dead_letters_after_n_failures(
    r: redis.Redis, stream: str, start, receiver: Receiver
) -> None:
    before = notify_counts(r)
    receiver.fail = 2  # two 503s, then it takes it: within retries=2
    start(webhooks=[receiver.url], hmac_secret="s3cret")
    add_event(r, stream, "new", "ev-3")
    (headers, body), *_ = wait_for(lambda: receiver.posts, "the webhook POST")
    assert receiver.attempts == 3 and json.loads(body)["id"] == "ev-3"
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-gearcam-signature"] == expected and headers["content-type"] == "application/json"
    receiver.fail, receiver.attempts = -1, 0  # down for good
    add_event(r, stream, "end", "ev-3")
    (dead,) = wait_for(lambda: r.xrange(stream + ":dead"), "the dead letter")
    assert dead[1][b"url"].decode() == receiver.url and int(dead[1][b"attempts"]) == 3 == receiver.attempts
    assert json.loads(dead[1][b"body"])["type"] == "end" and b"503" in dead[1][b"error"]
    wait_for(lambda: pending(r, stream) == 0, "the dead-lettered event acknowledged")
    grown = wait_for(lambda: (g := grew(before, notify_counts(r))).get("handled") == 2 and g, "both counted")
    assert grown == {"handled": 2, "dead_letters": 1}  # in gearcam:stats:notify, for `invoke status` and /metrics
    report = status_report(r, load_settings(yaml_path=Path("/nonexistent.yaml"), environ={}))
    shown = report.split("\n\nNotifier (gearcam:stats:notify)\n", 1)[1].split("\n\n", 1)[0]
    assert f"handled          {notify_counts(r)['handled']}" in shown.splitlines()
    assert f"dead_letters     {notify_counts(r)['dead_letters']}" in shown.splitlines()


def test_a_broker_that_is_down_delays_events_and_drops_none(
    r: redis.Redis, stream: str, start, broker: Mosquitto
) -> None:
    start()
    broker.stop()
    ids = [f"ev-down-{n}" for n in range(5)]
    for event_id in ids:
        add_event(r, stream, "new", event_id)
    wait_for(lambda: pending(r, stream) >= 1, "an event waiting for the broker")
    threading.Event().wait(2.0)  # the notifier keeps trying meanwhile
    assert pending(r, stream) >= 1  # nothing acknowledged while the broker is away: nothing dropped
    broker.start()  # the same port; the watcher subscribes well within the notifier's 1 s reconnection delay
    watcher = Watcher(broker.port)
    try:
        wait_for(lambda: pending(r, stream) == 0, "every event sent once the broker is back", timeout=30)
        wait_for(lambda: [e["id"] for e in watcher.events()] == ids, "the 5 events, in order")
    finally:
        watcher.close()


def test_a_notifier_killed_mid_stream_loses_nothing(r: redis.Redis, stream: str, broker: Mosquitto,
                                                    watcher: Watcher, tmp_path: Path) -> None:  # fmt: skip
    url = r.connection_pool.connection_kwargs
    env = {**os.environ, "GEARCAM_EVENTS__STREAM": stream, "GEARCAM_EVENTS__GROUP": "g",
           "GEARCAM_EVENTS__WEBHOOKS": "", "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [sys.executable, "-m", "gearcam.notify", "--redis-url", f"redis://{url['host']}:{url['port']}",
               "--mqtt-url", broker.url, "--consumer", "one"]  # fmt: skip
    log = (tmp_path / "notify.log").open("wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: r.exists(stream) and r.xinfo_groups(stream), "the consumer group", timeout=30)
        ids = [f"ev-kill-{n}" for n in range(200)]
        for event_id in ids[:100]:
            add_event(r, stream, "new", event_id)
        wait_for(lambda: len(watcher.events()) >= 10, "the first events sent")
        proc.send_signal(signal.SIGKILL)  # mid-stream: some sent, some not, maybe one sent but not acknowledged
        proc.wait(10)
        for event_id in ids[100:]:
            add_event(r, stream, "new", event_id)
        sent_before = len(watcher.events())
        assert sent_before < 200
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: {e["id"] for e in watcher.events()} >= set(ids), "every event after the restart", timeout=60)
        wait_for(lambda: pending(r, stream) == 0, "nothing left pending")
        sent = [e["id"] for e in watcher.events()]
        assert len(sent) - len(set(sent)) <= 16  # at least once: at most the batch in flight at the kill, again
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()
    assert b"online" in watcher.on("gearcam/availability") and b"offline" in watcher.on("gearcam/availability")
