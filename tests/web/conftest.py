"""Fixtures for the web suite: a real redis-server, the real web server (a subprocess), headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import free_port, log_file
from tests.runtime.conftest import Backing

ROOT = Path(__file__).resolve().parents[2]
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """Status, content type and body of a GET (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@dataclass
class WebServer:
    """`python -m gearcam.web` for one stream, on a free port."""

    stream: str
    redis_url: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = log_file("web-")
        command = [sys.executable, "-m", "gearcam.web", "--host", "127.0.0.1"]
        env = {**os.environ, "STREAM": self.stream, "PORT": str(self.port), "REDIS_URL": self.redis_url,
               "GEARCAM_WEB__STATS_INTERVAL": "0.5", "GEARCAM_WEB__BLOCK_MS": "500", "PYTHONUNBUFFERED": "1"}  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"web server exited:\n{self.log.read_text()}")
            try:
                http_get(f"{self.url}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"web server did not answer within 20 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backing]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; run scripts/bootstrap --dev")
    server = Backing(free_port(), tmp_path_factory.mktemp("web-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def r(backing: Backing) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(backing.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def cats_server(backing: Backing, r: redis.Redis) -> Iterator[WebServer]:
    server = WebServer("cats", backing.url, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not CHROMEDRIVER.exists():
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,700"):
        options.add_argument(flag)
    # Chromium's singleton socket and chromedriver's profile go under pytest's own temporary folder
    # (kept for the last three runs), not into /tmp for good.
    tmp = tmp_path_factory.mktemp("chromium")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER), env={**os.environ, "TMPDIR": str(tmp)})
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()
