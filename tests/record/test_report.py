"""`invoke events` and `invoke clip`: the listing and the --since argument, on a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from gearcam.errors import CallerError
from gearcam.record.layout import clip_path
from gearcam.record.report import events_report, parse_since
from tests.record.conftest import add_event


def test_since_takes_durations_ago_dates_and_milliseconds() -> None:
    now = 1_800_000_000_000
    assert parse_since("10m", now) == now - 600_000
    assert parse_since("1d", now) == now - 86_400_000
    assert parse_since("1700000000000", now) == 1_700_000_000_000
    assert parse_since("2026-12-01T08:00") > 0
    with pytest.raises(CallerError, match="--since 'yesterday'"):
        parse_since("yesterday", now)


def test_events_are_listed_newest_first_with_their_clip_and_filtered(r: redis.Redis, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    old = add_event(r, "camera:0", now - 7_200_000, now - 7_190_000)
    new = add_event(r, "camera:1", now - 60_000, now - 55_000, label="tiger cat")
    path = clip_path(tmp_path, "camera:1", now - 60_000 + 40, new)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    lines = events_report(r, tmp_path).splitlines()
    assert [line.split()[0] for line in lines[1:]] == [new, old]
    assert lines[1].endswith(str(path)) and "(not recorded)" in lines[2]
    assert [line.split()[0] for line in events_report(r, tmp_path, camera="camera:0").splitlines()[1:]] == [old]
    assert [line.split()[0] for line in events_report(r, tmp_path, since="1h").splitlines()[1:]] == [new]
    assert events_report(r, tmp_path, camera="camera:9") == "no events of camera:9"
