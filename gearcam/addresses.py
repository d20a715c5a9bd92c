"""Every address gearcam's local processes, tasks and hints use, decided in one place from the configuration.

`invoke up` starts the runtime on ``runtime.host:runtime.port`` (its backing redis-server on
``runtime.backing_port``), the pages on ``web.port`` (the stream ``all``) and ``web.hits_port``
(the hits; ``web.port + 1`` when unset), and, unless ``events.mqtt_url`` names a broker, a
mosquitto on loopback ``events.broker_port`` for the notifier. Clients (`invoke status`, `invoke cli`, `invoke upload`,
the camera, the loader, the pages) reach Redis at ``redis_url``, which follows the runtime unless
``REDIS_URL`` (or ``redis_url`` in invoke.yaml) sets it. While an `invoke up` runs, the address it
started is recorded in its state file, so a shell without the same environment still finds it:
``resolve`` takes that record and says where the URL it picked came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gearcam.config import REDIS_PORT, Settings, bind_addresses, redact_url
from gearcam.errors import CallerError

__all__ = ["Addresses", "connect_host", "redis_cli_args", "resolve"]

_ANY = ("0.0.0.0", "::", "")


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a server listening on ``host`` (Redis' bind list: its first)."""
    first = bind_addresses(host)[0][0]
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(first, first)


@dataclass(frozen=True)
class Addresses:
    """The addresses of one configuration (and of a running `invoke up`, when there is one)."""

    redis_url: str  # what clients use
    redis_from: str  # where that came from, for the terminal
    runtime_host: str  # where the runtime listens (Redis' bind list: '127.0.0.1 -::1')
    runtime_port: int
    backing_port: int
    web_host: str  # where `invoke up`'s pages listen
    web_all_port: int
    web_hits_port: int
    mqtt_url: str  # the broker the notifier publishes to
    broker_port: int | None  # the loopback mosquitto `invoke up` starts; None when events.mqtt_url names a broker

    @property
    def runtime_url(self) -> str:
        """The runtime as the processes `invoke up` starts reach it (never through REDIS_URL)."""
        host = connect_host(self.runtime_host)
        return f"redis://{f'[{host}]' if ':' in host else host}:{self.runtime_port}"

    def page_url(self, port: int) -> str:
        host = "localhost" if self.web_host in (*_ANY, "127.0.0.1") else self.web_host
        return f"http://{host}:{port}/"

    @property
    def all_page(self) -> str:
        return self.page_url(self.web_all_port)

    @property
    def hits_page(self) -> str:
        return self.page_url(self.web_hits_port)

    def describe_redis(self) -> str:
        """'redis://127.0.0.1:6390 (from ...)', the password hidden."""
        return f"{redact_url(self.redis_url)} ({self.redis_from})"

    def describe_mqtt(self) -> str:
        """'mqtt://127.0.0.1:1883 (...)', the password hidden."""
        where = "events.mqtt_url" if self.broker_port is None else "the loopback mosquitto, events.broker_port"
        return f"{redact_url(self.mqtt_url)} ({where})"


def resolve(settings: Settings, running_url: str | None = None, running_what: str = "") -> Addresses:
    """The addresses for ``settings``; ``running_url`` is what a running `invoke up` recorded.

    Clients use, in order: REDIS_URL/redis_url when set; the running `invoke up`'s runtime;
    the configured runtime (runtime.host, runtime.port).
    """
    runtime, web, events = settings.runtime, settings.web, settings.events
    if "redis_url" in settings.model_fields_set:
        url, where = settings.redis_url, "REDIS_URL or redis_url in invoke.yaml"
    elif running_url:
        url, where = running_url, running_what or "the running `invoke up`"
    else:
        url, where = settings.redis_url, "runtime.host and runtime.port of the configuration"
    hits = web.hits_port if web.hits_port is not None else web.port + 1
    broker = None if events.mqtt_url else events.broker_port
    return Addresses(url, where, runtime.host, runtime.port, runtime.backing_port, web.host, web.port, hits,
                     events.broker_url, broker)  # fmt: skip


def redis_cli_args(url: str) -> tuple[list[str], dict[str, str]]:
    """redis-cli's arguments for ``url``, and its environment: the password goes in REDISCLI_AUTH, never argv."""
    parts = urlsplit(url)
    env: dict[str, str] = {}
    if parts.password:
        env["REDISCLI_AUTH"] = unquote(parts.password)
    if parts.scheme == "unix":
        args = ["-s", parts.path]
    elif parts.scheme in ("redis", "rediss"):
        args = ["-h", parts.hostname or "localhost", "-p", str(parts.port or REDIS_PORT)]
        if parts.scheme == "rediss":
            args.append("--tls")
        db = parts.path.strip("/")
        if db:
            args += ["-n", db]
    else:
        raise CallerError(f"Redis URL {redact_url(url)!r} is not redis://, rediss:// or unix://; fix REDIS_URL")
    if parts.username:
        args += ["--user", unquote(parts.username)]
    return args, env
