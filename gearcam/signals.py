"""How gearcam's services stop: SIGTERM (Kubernetes, `invoke down`) and SIGINT (Ctrl-C) set one event."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["stop_on_signals"]


def stop_on_signals(logger: logging.Logger) -> threading.Event:
    """An event that SIGTERM or SIGINT sets (logged), for a service's loop to finish its work and return."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
