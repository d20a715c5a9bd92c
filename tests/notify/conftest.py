"""Fixtures for the notifier: a real mosquitto on a free loopback port, a real HTTP receiver, a watcher.

Each test reads its own events stream and group (``events:t<n>``), so tests share the session's
embedded Redis without seeing each other's entries.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from gearcam.redis_server import EmbeddedRedis
from tests.conftest import free_port, wait_for

_streams = itertools.count(1)
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """mosquitto on 127.0.0.1:<port>, anonymous, no persistence; stop() and start() again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._listening, f"mosquitto on port {self.port}", timeout=10)

    def _listening(self) -> bool:
        import socket

        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed; run scripts/bootstrap --dev (it installs Debian's mosquitto)")
    server = Mosquitto(tmp_path)
    server.start()
    yield server
    server.stop()


class Watcher:
    """A subscriber to everything; messages as (topic, payload, retained) in arrival order."""

    def __init__(self, url_port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on("gearcam/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(broker: Mosquitto) -> Iterator[Watcher]:
    w = Watcher(broker.port)
    wait_for(w.client.is_connected, "the watcher's connection")
    time.sleep(0.2)  # the subscription
    yield w
    w.close()


class Receiver:
    """An HTTP server that records POSTs; the first ``fail`` of them (or every one, fail=-1) get a 503."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.fail = 0
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.attempts += 1
                if outer.fail < 0 or outer.attempts <= outer.fail:
                    self.send_response(503)
                else:
                    outer.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def r(embedded_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(embedded_redis.url)
    yield client
    client.close()


@pytest.fixture
def stream() -> str:
    return f"events:t{next(_streams)}-{int(time.time() * 1000) % 100000}"
