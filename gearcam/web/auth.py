"""A login for the pages: one shared token (web.token, GEARCAM_WEB__TOKEN; the Secret gearcam-web on k3s).

Camera frames are private, so pages served beyond loopback need the token. It is accepted as
`Authorization: Bearer <token>` (Prometheus' `authorization` setting), as the password of HTTP
basic auth with any user name (the browser asks for it), or once as `?token=<token>`, which sets an
HttpOnly cookie so the page's WebSocket is let in too. `/healthz` stays open for the probes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gearcam.errors import ConfigError

__all__ = ["COOKIE", "OPEN_PATHS", "TokenAuth", "check_exposure"]

COOKIE = "gearcam_token"
OPEN_PATHS = frozenset({"/healthz"})


def check_exposure(host: str, token: str | None, anonymous: bool) -> None:
    """Refuse to serve frames on a non-loopback address without a token, unless opened on purpose."""
    if token or anonymous or _is_loopback(host):
        return
    raise ConfigError(
        f"web.host={host} serves the camera pages to the network without a login; set a token "
        "(GEARCAM_WEB__TOKEN, or web.token in invoke.yaml), or open them on purpose with "
        "GEARCAM_WEB__ANONYMOUS=true (web.anonymous), or listen on 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenAuth:
    """ASGI middleware: every HTTP request and WebSocket but OPEN_PATHS must carry the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        from_query = self._from_query(scope)
        if from_query or self._from_headers(headers):
            if from_query and scope["type"] == "http":
                send = self._setting_cookie(send)
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "login required"})
            return
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"www-authenticate", b'Basic realm="gearcam", charset="UTF-8"'),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"login required: the gearcam token (web.token)\n"})

    def _matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def _from_query(self, scope: Scope) -> bool:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        return any(self._matches(value) for value in values)

    def _from_headers(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._matches(value.strip()):
            return True
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            if self._matches(password):
                return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no login
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and self._matches(morsel.value)

    def _setting_cookie(self, send: Send) -> Send:
        value = f"{COOKIE}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value)]}
            await send(message)

        return wrapped
