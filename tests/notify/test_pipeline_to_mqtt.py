"""End to end: frames through the real runtime and registration become an event whose new and end reach MQTT."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gearcam.config import CONFIG_KEY, load_settings
from gearcam.notify.__main__ import build
from gearcam.notify.event import slug
from tests.conftest import wait_for
from tests.notify.conftest import Mosquitto, Watcher
from tests.pipeline.conftest import camera, loaded, picture, r, server_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture
def notifier(r: redis.Redis, broker: Mosquitto) -> Iterator[None]:  # noqa: F811
    kwargs = r.connection_pool.connection_kwargs
    settings = load_settings(yaml_path=Path("/nonexistent.yaml"), environ={},
                             redis_url=f"redis://{kwargs['host']}:{kwargs['port']}",
                             events={"mqtt_url": broker.url, "group": f"g{time.time_ns()}"})  # fmt: skip
    stop = threading.Event()
    n = build(settings, "e2e", stop)
    n.mqtt.start()
    n.consumer.ensure_group()
    thread = threading.Thread(target=n.run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)
    n.mqtt.stop()


def test_a_cat_seen_then_gone_is_one_event_on_mqtt_with_its_snapshot(
    r: redis.Redis,  # noqa: F811
    camera: str,  # noqa: F811
    notifier: None,
    watcher: Watcher,
) -> None:
    r.hset(f"{CONFIG_KEY}:{camera}", "event_gap_s", 0.5)
    for _ in range(2):
        r.xadd(camera, {"img": picture("chelsea.jpg")})

    def mine() -> list[dict[str, object]]:
        return [e for e in watcher.events() if e["camera"] == camera]

    wait_for(lambda: mine(), "the new event on gearcam/events")
    for _ in range(30):  # no cat any more: a later frame ends the event
        r.xadd(camera, {"img": picture("coffee.jpg")})
        if any(e["type"] == "end" for e in mine()):
            break
        time.sleep(0.2)
    types = [e["type"] for e in mine()]
    assert types[0] == "new" and types[-1] == "end" and "new" not in types[1:], types
    topic = f"gearcam/{slug(camera)}/{slug(str(mine()[0]['label']))}"
    assert watcher.on(topic)[0] == b"ON" and watcher.on(topic)[-1] == b"OFF"
    assert watcher.on(topic + "/snapshot")[0] == picture("chelsea.jpg")
