"""gearcam.up.supervisor: what a service's exit means, with real processes standing in for the services."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from gearcam.config import Settings, load_settings
from gearcam.redis_server import EmbeddedRedis
from gearcam.up.supervisor import Supervisor
from tests.up.test_plan import _plan

SHUTDOWN = "the runtime stopped with its Redis (SHUTDOWN)"


def _settings(tmp_path: Path) -> Settings:
    return load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_UP__STATE_DIR": str(tmp_path)})


def test_a_service_that_lost_a_stopping_runtime_leaves_the_verdict_to_the_runtime(tmp_path: Path) -> None:
    """After a SHUTDOWN the recorder's link closes and it exits 1 while the runtime is still stopping its workers
    (seen in CI: `invoke up` then reported the recorder's death instead of the SHUTDOWN's stop)."""
    plan = _plan(tmp_path)
    supervisor = Supervisor(_settings(tmp_path), plan, io.StringIO())
    lost = subprocess.Popen(["sh", "-c", "exit 1"])
    lost.wait()
    stopping = subprocess.Popen(["sleep", "1"])  # runs, and nothing answers on the runtime's port
    supervisor.procs = {"runtime": stopping, "record": lost}
    assert supervisor._died() is None and supervisor.stop_reason is None
    stopping.wait()  # exits 0, as the runtime does after a SHUTDOWN
    assert supervisor._died() is None and supervisor.stop_reason == SHUTDOWN


def test_a_service_that_dies_beside_an_answering_runtime_is_reported_at_once(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    supervisor = Supervisor(_settings(tmp_path), plan, io.StringIO())
    dead = subprocess.Popen(["sh", "-c", "exit 1"])
    dead.wait()
    running = subprocess.Popen(["sleep", "30"])
    try:
        with EmbeddedRedis(plan.addresses.runtime_port, dir=tmp_path / "answering"):  # PING answered there
            supervisor.procs = {"runtime": running, "record": dead}
            report = supervisor._died()
        assert report is not None and report.startswith("record exited with status 1")
        assert supervisor.stop_reason is None
    finally:
        running.kill()
        running.wait()
