"""gearcam.logs.Every: a retry loop's warning once per interval, not at every try."""

from __future__ import annotations

import time

from gearcam.logs import Every


def test_every_says_yes_first_then_not_again_within_its_interval() -> None:
    every = Every(60.0)
    assert [every.due() for _ in range(3)] == [True, False, False]


def test_every_says_yes_again_once_its_interval_passed() -> None:
    every = Every(0.05)
    assert every.due()
    time.sleep(0.06)
    assert every.due() and not every.due()
