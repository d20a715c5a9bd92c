"""The pages' login (issue 14, item 11): loopback by default, a token wherever they are exposed."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gearcam.errors import ConfigError
from gearcam.web.__main__ import main
from gearcam.web.auth import check_exposure
from tests.conftest import free_port
from tests.runtime.conftest import Backing
from tests.web.conftest import WebServer, http_get

TOKEN = "s3cret-token"


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_the_pages_listen_on_loopback_unless_told_otherwise() -> None:
    from gearcam.config import load_settings

    assert load_settings(environ={}).web.host == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_pages_on_the_network_without_a_token_are_refused_with_the_ways_out(host: str) -> None:
    with pytest.raises(ConfigError, match="GEARCAM_WEB__TOKEN") as info:
        check_exposure(host, None, anonymous=False)
    assert "web.anonymous" in str(info.value) and "127.0.0.1" in str(info.value)
    check_exposure(host, TOKEN, anonymous=False)
    check_exposure(host, None, anonymous=True)  # opened on purpose


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_pages_on_loopback_need_no_token(host: str) -> None:
    check_exposure(host, None, anonymous=False)


def test_python_m_gearcam_web_on_all_addresses_without_a_token_exits_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("GEARCAM_WEB__TOKEN", "GEARCAM_WEB__ANONYMOUS"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--host", "0.0.0.0", "--port", str(free_port())]) == 2
    assert "GEARCAM_WEB__TOKEN" in capsys.readouterr().err


@pytest.fixture(scope="module")
def locked_page(backing: Backing) -> Iterator[WebServer]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GEARCAM_WEB__TOKEN", TOKEN)
        server = WebServer("cats", backing.url, free_port())
        server.start()
    yield server
    server.stop()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("path", ["/", "/metrics"])
def test_a_locked_page_and_metrics_ask_for_the_token(locked_page: WebServer, path: str) -> None:
    status, headers = _get(locked_page.url + path, {})
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert _get(locked_page.url + path, {"Authorization": "Bearer wrong"})[0] == 401
    assert _get(locked_page.url + path, {"Authorization": _basic("me", "wrong")})[0] == 401
    assert _get(locked_page.url + path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert _get(locked_page.url + path, {"Authorization": _basic("anyone", TOKEN)})[0] == 200


def test_healthz_stays_open_for_the_probes(locked_page: WebServer) -> None:
    assert http_get(locked_page.url + "/healthz")[0] == 200


def test_a_token_link_sets_a_cookie_that_lets_the_websocket_in(locked_page: WebServer, r: redis.Redis) -> None:
    status, headers = _get(f"{locked_page.url}/?token={TOKEN}", {})
    assert status == 200
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert "HttpOnly" in headers["set-cookie"] and cookie == f"gearcam_token={TOKEN}"
    ws_url = locked_page.url.replace("http", "ws") + "/ws"
    with pytest.raises(InvalidStatus):
        with connect(ws_url, open_timeout=5):
            pass
    with connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
        assert ws.recv(timeout=10)  # the counters, sent every stats interval
