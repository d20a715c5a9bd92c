"""gearcam.up.plan: the checks `invoke up` makes before it starts anything (no process is started here, but the
redis-server a killed runtime leaves behind)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gearcam.addresses import resolve
from gearcam.config import load_settings
from gearcam.errors import OperatorError
from gearcam.redis_server import EmbeddedRedis
from gearcam.up.plan import check_ports, find_mosquitto, up_plan
from tests.conftest import free_port, free_ports, left_running_redis


def _plan(tmp_path: Path, **environ: str):  # type: ignore[no-untyped-def]
    names = ["GEARCAM_RUNTIME__PORT", "GEARCAM_RUNTIME__BACKING_PORT", "GEARCAM_WEB__PORT", "GEARCAM_WEB__HITS_PORT",
             "GEARCAM_EVENTS__BROKER_PORT"]  # fmt: skip
    ports = dict(zip(names, free_ports(len(names)), strict=True))  # CI once drew one port for two services
    env = {"GEARCAM_UP__STATE_DIR": str(tmp_path), **{k: str(v) for k, v in ports.items()}, **environ}
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ=env)
    return up_plan(settings, resolve(settings))


def test_free_ports_pass(tmp_path: Path) -> None:
    check_ports(_plan(tmp_path))


def test_a_taken_broker_port_is_named_with_the_setting_that_moves_the_broker(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("no mosquitto here (scripts/bootstrap installs it): `invoke up` starts no broker")
    plan = _plan(tmp_path)
    port = plan.addresses.broker_port
    assert port is not None and plan.runs("mosquitto")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(OperatorError) as caught:
            check_ports(plan)
    message = str(caught.value)
    assert f"port {port} on 127.0.0.1, for the MQTT broker (mosquitto), is taken" in message
    assert f"`ss -ltnp 'sport = :{port}'`" in message and "GEARCAM_EVENTS__BROKER_PORT=<free port>" in message


def test_the_broker_port_is_not_checked_when_events_mqtt_url_names_a_broker(tmp_path: Path) -> None:
    with socket.socket() as taken:  # the loopback broker's port is taken, and does not matter then
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        plan = _plan(tmp_path, GEARCAM_EVENTS__MQTT_URL="mqtt://broker.lan:1883", GEARCAM_EVENTS__BROKER_PORT=port)
        assert plan.addresses.broker_port is None and not plan.runs("mosquitto") and plan.runs("notify")
        check_ports(plan)


def test_two_services_on_one_port_are_refused_with_the_setting_to_change(tmp_path: Path) -> None:
    same = str(free_port())
    plan = _plan(tmp_path, GEARCAM_WEB__PORT=same, GEARCAM_WEB__HITS_PORT=same)
    with pytest.raises(OperatorError, match=f"both use port {same}; give one another with GEARCAM_WEB__HITS_PORT"):
        check_ports(plan)


def test_the_backing_port_held_by_the_redis_a_killed_runtime_left_passes(tmp_path: Path) -> None:
    """The runtime's start stops that server (redis_server.EmbeddedRedis), so `invoke up` may go on; a server
    whose owner still runs, or anything else on the port, is still refused."""
    plan = _plan(tmp_path)
    port = plan.addresses.backing_port
    plan.data_dir.mkdir(parents=True)
    with left_running_redis(plan.data_dir, port):
        check_ports(plan)
    with EmbeddedRedis(port, dir=plan.data_dir), pytest.raises(OperatorError, match=f"port {port} .* is taken"):
        check_ports(plan)


def test_the_runtime_port_is_checked_at_every_address_of_its_bind_list(tmp_path: Path) -> None:
    """runtime.host is Redis' bind list ('127.0.0.1 -::1' by default): each address is checked, an optional one
    this machine lacks is not (the runtime skips it, or says what to do at start), and the error names the first
    address clients use."""
    plan = _plan(tmp_path, GEARCAM_RUNTIME__HOST="127.0.0.1 127.0.0.2 -203.0.113.7")
    port = plan.addresses.runtime_port
    runtime = next(s for s in plan.services if s.name == "runtime")
    assert runtime.argv[runtime.argv.index("--host") + 1] == "127.0.0.1 127.0.0.2 -203.0.113.7"  # one argument
    check_ports(plan)  # 203.0.113.7 is on no interface here, and marked optional
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", port))  # the second address only
        taken.listen()
        with pytest.raises(OperatorError, match=f"port {port} on 127.0.0.1, for the runtime, is taken"):
            check_ports(plan)
    # Not marked optional: no port is taken there, so the runtime's own start says what to do (tests/runtime).
    check_ports(_plan(tmp_path, GEARCAM_RUNTIME__HOST="127.0.0.1 203.0.113.7", GEARCAM_RUNTIME__PORT=str(port)))


def test_the_pages_listen_on_web_host_not_on_the_runtime_address(tmp_path: Path) -> None:
    """Before, `invoke up` started the pages on runtime.host: GEARCAM_WEB__HOST (with a token) was ignored, and
    opening the runtime to the network opened the pages too."""
    plan = _plan(tmp_path, GEARCAM_WEB__HOST="0.0.0.0", GEARCAM_WEB__TOKEN="t" * 32, GEARCAM_RUNTIME__HOST="127.0.0.1")
    pages = [s for s in plan.services if s.name.startswith("web")]
    assert pages and all(s.argv[s.argv.index("--host") + 1] == "0.0.0.0" for s in pages)
    runtime = next(s for s in plan.services if s.name == "runtime")
    assert runtime.argv[runtime.argv.index("--host") + 1] == "127.0.0.1"
