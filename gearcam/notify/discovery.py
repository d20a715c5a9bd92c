"""Home Assistant MQTT discovery: a binary_sensor and an image entity per camera and target label.

The config messages are retained under ``<discovery prefix>/<component>/<object id>/config``, so
Home Assistant finds them whenever it starts; the user adds nothing by hand. Which labels: the
target classes of ``gearcam:config`` (and of each camera's ``gearcam:config:<camera>``), named by
``gearcam:labels``; which cameras: the ``camera:*`` streams. A label seen in an event that is not
announced yet is announced before its first state.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import redis

from gearcam.config import CAMERA_PREFIX, CONFIG_KEY, LABELS_KEY
from gearcam.notify.event import Topics, slug
from gearcam.redis_text import text as _text

__all__ = ["announcements", "parse_classes", "target_pairs"]

logger = logging.getLogger(__name__)


def parse_classes(text: str) -> list[int]:
    """'281-285' or '281,285' -> class ids (the Gears script's format); [] when it does not parse."""
    found: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if part:
                low, _, high = part.partition("-")
                found.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        return []
    return found


def target_pairs(client: redis.Redis) -> set[tuple[str, str]]:
    """(camera stream, label) for every camera stream and each of its target classes."""
    cameras = sorted(_text(k) for k in client.scan_iter(match=f"{CAMERA_PREFIX}*", _type="STREAM"))
    default = _text(client.hget(CONFIG_KEY, "target_classes") or b"281-285")
    pairs: set[tuple[str, str]] = set()
    for camera in cameras:
        classes = parse_classes(_text(client.hget(f"{CONFIG_KEY}:{camera}", "target_classes") or default))
        for klass in classes:
            label = cast(Any, client.lindex(LABELS_KEY, klass))
            pairs.add((camera, _text(label) if label is not None else f"class {klass}"))
    return pairs


def announcements(
    topics: Topics, discovery_prefix: str, availability: str
) -> list[tuple[str, str]]:  # fmt: skip
    """(topic, JSON payload) of the retained config messages for one camera and label."""
    object_id = f"gearcam_{slug(topics.camera)}_{slug(topics.label)}"
    device = {"identifiers": [f"gearcam_{slug(topics.camera)}"], "name": f"gearcam {topics.camera}",
              "manufacturer": "gearcam"}  # fmt: skip
    common = {"availability_topic": availability, "device": device}
    sensor = {
        **common, "name": f"{topics.label}", "unique_id": object_id, "state_topic": topics.state,
        "payload_on": "ON", "payload_off": "OFF", "device_class": "occupancy",
    }  # fmt: skip
    image = {
        **common, "name": f"{topics.label} snapshot", "unique_id": f"{object_id}_snapshot",
        "image_topic": topics.snapshot, "content_type": "image/jpeg",
    }  # fmt: skip
    return [
        (f"{discovery_prefix}/binary_sensor/{object_id}/config", json.dumps(sensor, sort_keys=True)),
        (f"{discovery_prefix}/image/{object_id}/config", json.dumps(image, sort_keys=True)),
    ]
