"""An entry of the stream ``events`` (docs/pipeline.md, "Events") as typed data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

__all__ = ["Event", "EventType", "text"]

EventType = Literal["new", "update", "end"]
_TYPES = ("new", "update", "end")


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Event:
    """One change of an event: ``id`` is the hits entry of its first hit, ``snapshot`` that of its best."""

    entry: str  # this change's id in the stream `events`
    type: EventType
    id: str
    camera: str
    label: str
    klass: int
    score: float
    start: int  # ms
    end: int | None  # ms, set on `end`
    snapshot: str
    stream: str  # the hits stream `id` and `snapshot` are entries of

    @classmethod
    def from_fields(cls, entry: Any, fields: dict[Any, Any]) -> Event:
        """Parse a stream entry; ValueError names the field that is wrong."""
        got = {text(k): text(v) for k, v in fields.items()}
        kind = got.get("type", "")
        if kind not in _TYPES:
            raise ValueError(f"event {text(entry)}: type={kind!r}, expected one of {', '.join(_TYPES)}")
        try:
            return cls(
                entry=text(entry), type=cast(EventType, kind), id=got["id"], camera=got["camera"],
                label=got["label"], klass=int(got["class"]), score=float(got["score"]), start=int(got["start"]),
                end=int(got["end"]) if got.get("end") else None, snapshot=got.get("snapshot", ""),
                stream=got.get("stream") or "cats",
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise ValueError(f"event {text(entry)}: bad or missing field {exc}") from exc

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else max(0, self.end - self.start) / 1000

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type, "id": self.id, "camera": self.camera, "label": self.label, "class": self.klass,
            "score": self.score, "start": self.start, "end": self.end, "snapshot": self.snapshot,
            "stream": self.stream,
        }  # fmt: skip
