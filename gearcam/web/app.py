"""The web server: the page, its WebSocket, ``/healthz``, ``/metrics`` and the icon (Starlette).

The hub (one Redis reader) is built in the lifespan and handed to the handlers through
the lifespan state, so nothing is opened at import and each app owns its own reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gearcam.client_names import named_async
from gearcam.config import RecordSettings, WebSettings, redact_url
from gearcam.web.auth import TokenAuth
from gearcam.web.events import event_routes
from gearcam.web.hub import Hub, Slot
from gearcam.web.metrics import CONTENT_TYPE, HubCollector, render_metrics
from gearcam.web.page import FAVICON_SVG, render_page

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


async def _page(request: Request) -> HTMLResponse:
    hub: Hub = request.state.hub
    return HTMLResponse(render_page(hub.stream), headers={"Cache-Control": "no-store"})


async def _healthz(request: Request) -> JSONResponse:
    """200 while the stream reader runs, Redis up or not (it retries, and the page says so); 503 if it died.

    A Redis outage is reported in the body (``redis: down`` and why) but is not a reason to
    restart the web server, so a liveness probe may use this endpoint.
    """
    hub: Hub = request.state.hub
    reader: asyncio.Task[None] = request.state.reader
    body: dict[str, Any] = {"stream": hub.stream, "redis": hub.redis_state,
                            "clients": len(hub.slots), "frames": hub.frames_total,
                            "cameras": {camera.stream: camera.as_dict() for camera in hub.cameras}}  # fmt: skip
    if hub.redis_state == "connecting":
        body["reason"] = f"connecting to Redis at {redact_url(hub.url)}"
    elif hub.redis_state == "down":
        body["reason"] = f"Redis at {redact_url(hub.url)} is not answering; the reader keeps retrying"
    if reader.done():
        body["reason"] = "the stream reader stopped; restart the web server"
        return JSONResponse({"status": "unavailable", **body}, status_code=503)
    return JSONResponse({"status": "ok", **body})


async def _favicon(request: Request) -> Response:
    return Response(FAVICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


async def _metrics(request: Request) -> Response:
    return Response(render_metrics(request.state.registry), media_type=CONTENT_TYPE)


async def _send_loop(websocket: WebSocket, slot: Slot) -> None:
    while True:
        frame, stats = await slot.take()
        if stats is not None:
            await websocket.send_text(stats)
        for event in slot.take_events():
            await websocket.send_text(event)
        if frame is not None and slot.wants_frames:
            await websocket.send_text(frame.message)
            await websocket.send_bytes(frame.img)


async def _until_closed(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _stream(websocket: WebSocket) -> None:
    """One browser: the newest frame and the counters, as fast as it takes them and no faster."""
    hub: Hub = websocket.state.hub
    await websocket.accept()
    slot = hub.subscribe()
    slot.wants_frames = websocket.query_params.get("frames") != "0"
    client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "?"
    logger.info("stream %s: browser %s connected (%d now)", hub.stream, client, len(hub.slots))
    tasks = {asyncio.create_task(_send_loop(websocket, slot)), asyncio.create_task(_until_closed(websocket))}
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.debug("stream %s: browser %s: %r", hub.stream, client, task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.unsubscribe(slot)
        logger.info("stream %s: browser %s left (%d now)", hub.stream, client, len(hub.slots))
        with contextlib.suppress(Exception):
            await websocket.close()


def create_app(settings: WebSettings, redis_url: str, data_dir: Path | None = None) -> Starlette:
    """The app for one stream (and the events page, clips from ``data_dir``); its reader starts and stops with it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        hub = Hub(redis_url, settings)
        registry = CollectorRegistry(auto_describe=True)
        registry.register(HubCollector(hub))
        reader = asyncio.create_task(hub.run(), name=f"reader:{settings.stream}")
        events_client = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=5,
            socket_timeout=10,
            redis_connect_func=named_async(f"gearcam-web:{settings.stream}"),
        )
        logger.info("serving stream %s from %s", settings.stream, redact_url(redis_url))
        try:
            yield {"hub": hub, "registry": registry, "reader": reader, "events_client": events_client,
                   "data_dir": data_dir or RecordSettings().data_dir}  # fmt: skip
        finally:
            await events_client.aclose()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    routes = [
        Route("/", _page),
        Route("/healthz", _healthz),
        Route("/metrics", _metrics),
        Route("/favicon.ico", _favicon),
        WebSocketRoute("/ws", _stream),
        *event_routes(),
    ]
    token = settings.token.get_secret_value() if settings.token else None
    middleware = [Middleware(TokenAuth, token=token)] if token else []
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
