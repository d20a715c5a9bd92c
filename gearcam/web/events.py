"""``/events``: the events page, its list as JSON, snapshots and clips (served from the recorder's data folder).

The list is the stream ``events`` folded by id (``gearcam.record.catalog``); an ended event links
its clip once the recorder has written it. Live additions come over the page's WebSocket
(``/ws?frames=0``: ``{"type": "event", …}`` messages, no frames), on which the page reloads the
list. Behind the same login as the other pages (the middleware covers every path but /healthz).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gearcam.config import EVENTS_STREAM
from gearcam.record.catalog import fold_events
from gearcam.record.layout import clip_path, find_clip
from gearcam.web.events_page import EVENTS_PAGE

__all__ = ["event_routes"]

MAX_ENTRIES = 5000


def _data_dir(request: Request) -> Path:
    path: Path = request.state.data_dir
    return path


async def _page(request: Request) -> HTMLResponse:
    return HTMLResponse(EVENTS_PAGE, headers={"Cache-Control": "no-store"})


async def _list(request: Request) -> JSONResponse:
    client: aioredis.Redis = request.state.events_client
    entries: Any = await client.xrevrange(EVENTS_STREAM, count=MAX_ENTRIES)
    query = request.query_params
    events = fold_events(entries, camera=query.get("camera") or None, label=query.get("label") or None)
    data = _data_dir(request)
    rows = []
    for event in events:
        clip = clip_path(data, event.camera, event.start, event.id)
        urls = {"snapshot_url": f"/events/{event.id}/snapshot.jpg", "clip_url": f"/events/{event.id}/clip.mp4"}
        rows.append({**event.as_json(), "duration_s": event.duration_s, "clip": clip.exists(), **urls})
    cameras = sorted({e.camera for e in fold_events(entries)})
    labels = sorted({e.label for e in fold_events(entries)})
    return JSONResponse({"events": rows, "cameras": cameras, "labels": labels}, headers={"Cache-Control": "no-store"})


async def _clip(request: Request) -> Response:
    path = find_clip(_data_dir(request), request.path_params["event_id"])
    if path is None:
        return Response("no clip (yet) for this event\n", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type="video/mp4")


async def _snapshot(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    path = find_clip(_data_dir(request), event_id)
    if path is not None and path.with_suffix(".jpg").exists():
        return FileResponse(path.with_suffix(".jpg"), media_type="image/jpeg")
    client: aioredis.Redis = request.state.events_client
    entries: Any = await client.xrevrange(EVENTS_STREAM, count=MAX_ENTRIES)
    for event in fold_events(entries):
        if event.id == event_id and event.snapshot:
            found: Any = await client.xrange(event.stream, min=event.snapshot, max=event.snapshot, count=1)
            if found and found[0][1].get(b"img"):
                return Response(found[0][1][b"img"], media_type="image/jpeg")
    return Response("no snapshot for this event\n", status_code=404, media_type="text/plain")


def event_routes() -> list[Route]:
    return [
        Route("/events", _page),
        Route("/events.json", _list),
        Route("/events/{event_id}/clip.mp4", _clip),
        Route("/events/{event_id}/snapshot.jpg", _snapshot),
    ]
