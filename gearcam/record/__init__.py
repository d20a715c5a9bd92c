"""The recorder: a clip and a snapshot per finished event, from the camera streams, and their retention.

``python -m gearcam.record --redis-url URL --data DIR`` reads the stream ``events`` with a
consumer group and, for each ``end``, writes ``<data>/clips/<camera>/<date>/<event id>.mp4``
(``pre_roll_s`` before the first hit to ``post_roll_s`` after the last, from ``camera:<n>``) and
``<event id>.jpg`` (the best frame, from the hits stream). docs/recording.md explains it.
"""

from __future__ import annotations

from gearcam.events import Event
from gearcam.record.layout import clip_path, find_clip
from gearcam.record.recorder import Recorder

__all__ = ["Event", "Recorder", "clip_path", "find_clip"]
