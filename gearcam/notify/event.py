"""The MQTT topic names that follow from an event (the event itself: gearcam.events)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gearcam.events import Event, EventType

__all__ = ["Event", "EventType", "Topics", "slug"]

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A topic level and Home Assistant object id: 'camera:0' -> 'camera_0', 'Egyptian cat' -> 'egyptian_cat'."""
    return _NOT_SLUG.sub("_", text.lower()).strip("_") or "_"


@dataclass(frozen=True)
class Topics:
    """The MQTT topics of one camera and label under ``prefix``."""

    prefix: str
    camera: str
    label: str

    @property
    def state(self) -> str:
        return f"{self.prefix}/{slug(self.camera)}/{slug(self.label)}"

    @property
    def snapshot(self) -> str:
        return f"{self.state}/snapshot"
