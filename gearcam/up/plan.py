"""What `invoke up` runs, as plain data: the services in order, their command lines and logs, and the checks before.

Nothing here starts a process; ``gearcam.up.supervisor`` runs the plan, and the tests read it.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from gearcam.addresses import Addresses, connect_host
from gearcam.camera.sources import parse_source
from gearcam.config import BIND_MISSING, MQTT_PORT, REDIS_PORT, STREAM_ALL, Settings, bind_addresses
from gearcam.errors import CallerError, OperatorError
from gearcam.redis_server import running_in

__all__ = ["Service", "UpPlan", "check_ports", "check_source", "find_mosquitto", "port_free", "up_plan"]

PYTHON = sys.executable


def find_mosquitto() -> str | None:
    """Debian's mosquitto (scripts/bootstrap installs it; /usr/sbin is not on every user's PATH)."""
    found = shutil.which("mosquitto")
    return found or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


@dataclass(frozen=True)
class Service:
    """One process of `invoke up`: its name, its command, and the log its output goes to."""

    name: str
    argv: tuple[str, ...]
    log: Path
    oneshot: bool = False  # the loader: runs to the end before the next service starts

    @property
    def command_line(self) -> str:
        return f"{shlex.join(self.argv)} > {shlex.quote(str(self.log))} 2>&1"


@dataclass(frozen=True)
class UpPlan:
    """Everything `invoke up` needs to know before it starts anything."""

    addresses: Addresses
    services: tuple[Service, ...]
    run_dir: Path
    data_dir: Path
    log_dir: Path
    source: str

    def runs(self, name: str) -> bool:
        """Whether the plan has the service ``name`` (mosquitto and the notifier depend on the machine)."""
        return any(service.name == name for service in self.services)


def up_plan(
    settings: Settings, addresses: Addresses, source: str = "samples", *, wait_for_camera: bool = False,
    reset_config: bool = False,
) -> UpPlan:  # fmt: skip
    """The runtime with its embedded Redis, the loader, the camera, the pages, the notifier and the recorder.

    The notifier publishes to ``events.mqtt_url`` when it is set; otherwise to a mosquitto started
    here on loopback (``events.broker_port``), when one is installed. Without either, no notifier.
    """
    state = settings.up.state_dir
    run_dir, data_dir, log_dir = state / "run", state / "data", state / "logs"
    a = addresses
    url = a.runtime_url
    py = (PYTHON, "-m")

    def service(name: str, *argv: str, oneshot: bool = False) -> Service:
        return Service(name, (*py, *argv), log_dir / f"{name}.log", oneshot)

    loader = ["gearcam.loader", "--url", url, "--wait", f"{settings.up.loader_wait:g}"]
    camera = ["gearcam.camera", "--url", url, "--source", source]
    web = ["gearcam.web", "--host", a.web_host, "--url", url]
    services: tuple[Service, ...] = (
        service("runtime", "gearcam.runtime", "--embedded", "--host", a.runtime_host, "--port", str(a.runtime_port),
                "--backing-port", str(a.backing_port), "--data-dir", str(data_dir)),
        service("loader", *loader, *(["--reset-config"] if reset_config else []), oneshot=True),
        service("camera", *camera, *(["--wait-for-camera"] if wait_for_camera else [])),
        service("web-all", *web, "--stream", STREAM_ALL, "--port", str(a.web_all_port)),
        service("web-cats", *web, "--stream", settings.pipeline.hits_stream, "--port", str(a.web_hits_port)),
    )  # fmt: skip
    mosquitto = None if a.broker_port is None else find_mosquitto()
    if mosquitto is not None:  # local-only mode: without a configuration file mosquitto 2 listens on loopback only
        broker = Service("mosquitto", (mosquitto, "-p", str(a.broker_port)), log_dir / "mosquitto.log")
        services = (services[0], broker, *services[1:])
    if a.broker_port is None or mosquitto is not None:
        services += (service("notify", "gearcam.notify", "--redis-url", url, "--mqtt-url", a.mqtt_url),)
    services += (service("record", "gearcam.record", "--redis-url", url, "--data", str(settings.record.data_dir)),)
    return UpPlan(addresses, services, run_dir, data_dir, log_dir, source)


def check_source(source: str) -> None:
    """Refuse a source that names nothing (a missing file) before anything starts."""
    try:
        parse_source(source)
    except CallerError as exc:
        raise CallerError(f"{exc}; nothing was started") from exc


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on `port` at every address of `host` now (Redis' bind list; SO_REUSEADDR,
    as Redis and asyncio bind). An address this machine lacks does not count: the runtime skips it where
    it is marked optional (`-::1`), and says what to do where it is not."""
    for address, _ in bind_addresses(host):
        address = address or "0.0.0.0"
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
        except OSError as exc:
            if exc.errno not in BIND_MISSING:
                return False
    return True


# Debian services that listen on a default port of gearcam when installed (their unit has the same name).
_DEBIAN_SERVICES = {REDIS_PORT: "redis-server", MQTT_PORT: "mosquitto"}


def check_ports(plan: UpPlan) -> None:
    """Every port `invoke up` listens on must be free; the error names the setting that moves it."""
    a = plan.addresses
    ports = [
        (a.runtime_host, a.runtime_port, "the runtime", "GEARCAM_RUNTIME__PORT"),
        ("127.0.0.1", a.backing_port, "the backing redis-server", "GEARCAM_RUNTIME__BACKING_PORT"),
        (a.web_host, a.web_all_port, f"the page of `{STREAM_ALL}`", "GEARCAM_WEB__PORT"),
        (a.web_host, a.web_hits_port, "the page of the hits", "GEARCAM_WEB__HITS_PORT"),
    ]
    if a.broker_port is not None and plan.runs("mosquitto"):
        ports.append(("127.0.0.1", a.broker_port, "the MQTT broker (mosquitto)", "GEARCAM_EVENTS__BROKER_PORT"))
    seen: dict[int, str] = {}
    for host, port, what, variable in ports:
        if port in seen:
            raise OperatorError(f"{what} and {seen[port]} both use port {port}; give one another with {variable}")
        seen[port] = what
        if port == a.backing_port and (left := running_in(plan.data_dir)) is not None and left.owner is None:
            continue  # the embedded redis-server a killed runtime left: the runtime's start stops it (redis_server.py)
        if port and not port_free(host, port):
            unit = _DEBIAN_SERVICES.get(port)
            extra = (f" (Debian's {unit} service listens there: `sudo systemctl disable --now {unit}`)"
                     if unit else "")  # fmt: skip
            raise OperatorError(
                f"port {port} on {connect_host(host)}, for {what}, is taken{extra}; see what holds it with "
                f"`ss -ltnp 'sport = :{port}'` and stop that, or move {what} with {variable}=<free port>"
            )
