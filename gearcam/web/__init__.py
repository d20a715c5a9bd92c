"""The web pages: one stream (``all`` on 3000, ``cats`` on 3001) shown live over a WebSocket."""

from __future__ import annotations

from gearcam.web.app import create_app
from gearcam.web.hub import Frame, Hub, Slot

__all__ = ["Frame", "Hub", "Slot", "create_app"]
