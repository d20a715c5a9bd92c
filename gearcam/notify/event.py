"""An entry of the stream ``events`` as typed data, and the MQTT topic names that follow from it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast

__all__ = ["Event", "EventType", "slug"]

EventType = Literal["new", "update", "end"]
_TYPES = ("new", "update", "end")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A topic level and Home Assistant object id: 'camera:0' -> 'camera_0', 'Egyptian cat' -> 'egyptian_cat'."""
    return _NOT_SLUG.sub("_", text.lower()).strip("_") or "_"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Event:
    """One change of an event (docs/pipeline.md, "Events")."""

    entry: str  # this entry's id in the stream `events`
    type: EventType
    id: str
    camera: str
    label: str
    klass: int
    score: float
    start: int
    end: int | None
    snapshot: str  # the best frame's entry id in `stream`
    stream: str

    @classmethod
    def from_fields(cls, entry: str, fields: dict[Any, Any]) -> Event:
        """Parse an XREADGROUP entry; ValueError names the field that is wrong."""
        got = {_text(k): _text(v) for k, v in fields.items()}
        kind = got.get("type", "")
        if kind not in _TYPES:
            raise ValueError(f"event {entry}: type={kind!r}, expected one of {', '.join(_TYPES)}")
        try:
            return cls(
                entry=entry, type=cast(EventType, kind), id=got["id"], camera=got["camera"], label=got["label"],
                klass=int(got["class"]), score=float(got["score"]), start=int(got["start"]),
                end=int(got["end"]) if got.get("end") else None, snapshot=got.get("snapshot", ""),
                stream=got.get("stream", "cats"),
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise ValueError(f"event {entry}: bad or missing field {exc}") from exc

    @property
    def active(self) -> bool:
        return self.type != "end"

    def as_json(self) -> dict[str, Any]:
        """The JSON body of ``<prefix>/events`` and of the webhooks."""
        return {
            "type": self.type, "id": self.id, "camera": self.camera, "label": self.label, "class": self.klass,
            "score": self.score, "start": self.start, "end": self.end, "snapshot": self.snapshot,
            "stream": self.stream, "entry": self.entry,
        }  # fmt: skip


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
