"""yamllint on every YAML file of docker/ and deploy/, and the JSON of deploy/jetson/."""

from __future__ import annotations

import json
import subprocess

from gearcam.config import PROJECT_ROOT
from tests.deploy.conftest import tool

CONFIG = PROJECT_ROOT / "tests" / "deploy" / "yamllint.yaml"


def test_yamllint_finds_nothing_in_docker_and_deploy() -> None:
    files = sorted(str(p) for d in ("docker", "deploy") for p in (PROJECT_ROOT / d).rglob("*.yaml"))
    assert len(files) >= 14
    result = subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(CONFIG), *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_would_catch_a_problem(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("---\nkey: value\nkey: again\n")
    result = subprocess.run([tool("yamllint"), "-c", str(CONFIG), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "duplication of key" in result.stdout


def test_the_docker_daemon_config_makes_nvidia_the_default_runtime() -> None:
    config = json.loads((PROJECT_ROOT / "deploy" / "jetson" / "daemon.json").read_text())
    assert config["default-runtime"] == "nvidia"
    assert config["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
