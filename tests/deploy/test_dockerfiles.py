"""docker/: hadolint on every Dockerfile, and the facts the build and the deploy rely on."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from gearcam.config import PROJECT_ROOT, load_settings
from gearcam.ship import build_commands, image_specs
from tests.deploy.conftest import tool

DOCKER = PROJECT_ROOT / "docker"
DOCKERFILES = sorted(p.name for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")


def stages(name: str) -> list[str]:
    """The Dockerfile split at each FROM: [preamble, stage 1, stage 2, ...]."""
    return re.split(r"(?m)^FROM ", (DOCKER / name).read_text())


def test_there_are_the_three_dockerfiles() -> None:
    assert DOCKERFILES == ["Dockerfile.app", "Dockerfile.jetson", "Dockerfile.redis"]


@pytest.mark.parametrize("name", DOCKERFILES)
class TestEveryDockerfile:
    def test_hadolint_finds_nothing(self, name: str) -> None:
        result = subprocess.run([tool("hadolint"), str(DOCKER / name)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_every_ignored_rule_is_explained_on_the_line_before(self, name: str) -> None:
        lines = (DOCKER / name).read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                before = lines[number - 1].strip()
                assert before.startswith("#") and "hadolint" not in before, f"{name}:{number + 1} has no reason"

    def test_it_has_a_health_check_and_its_own_dockerignore(self, name: str) -> None:
        assert re.search(r"(?m)^HEALTHCHECK ", (DOCKER / name).read_text())
        assert (DOCKER / f"{name}.dockerignore").exists()

    def test_the_build_passes_only_args_the_dockerfile_declares(self, name: str) -> None:
        declared = set(re.findall(r"(?m)^ARG (\w+)", (DOCKER / name).read_text()))
        ship = load_settings(yaml_path=PROJECT_ROOT / "absent.yaml", environ={}).ship
        for arch in ("arm64v8", "x64"):
            for command in build_commands(ship, arch):
                if f"docker/{name} " in command:
                    passed = set(re.findall(r"--build-arg (\w+)=", command))
                    assert passed <= declared, f"{name}: {passed - declared} not declared"


@pytest.mark.parametrize("name", ["Dockerfile.jetson", "Dockerfile.redis"])
class TestTheModuleImages:
    def test_versions_are_build_args(self, name: str) -> None:
        declared = set(re.findall(r"(?m)^ARG (\w+)", (DOCKER / name).read_text()))
        assert {"REDIS_VER", "AI_VER", "GEARS_VER", "ARCH", "OSNICK"} <= declared

    def test_the_final_stage_carries_no_toolchain(self, name: str) -> None:
        parts = stages(name)
        assert len(parts) >= 3  # a builder stage and a final stage
        final = "\n".join(line for line in parts[-1].splitlines() if not line.lstrip().startswith("#"))
        for tool_name in ("build-essential", "cmake", "git clone", "make "):
            assert tool_name not in final, tool_name
        assert "COPY --from=builder" in final

    def test_it_starts_through_the_script_that_builds_the_module_arguments(self, name: str) -> None:
        text = (DOCKER / name).read_text()
        assert 'ENTRYPOINT ["gearcam-redis-start"]' in text
        assert "USER 999:999" in text


def test_the_jetson_image_handles_the_known_pitfalls_where_it_says_so() -> None:
    final = stages("Dockerfile.jetson")[-1]
    assert "ENV LD_PRELOAD=/usr/lib/aarch64-linux-gnu/libgomp.so.1" in final
    assert "static TLS block" in final  # the comment that says why
    assert "NVIDIA_VISIBLE_DEVICES=all" in final and "NVIDIA container runtime" in final
    assert "WITH_TF=1 WITH_TFLITE=1" in stages("Dockerfile.jetson")[-2]


def test_the_app_image_has_opencv_with_gstreamer_and_runs_from_the_source_tree() -> None:
    text = (DOCKER / "Dockerfile.app").read_text()
    assert "python3-opencv" in text and "--system-site-packages" in text
    # requirements.txt's OpenCV wheel (no GStreamer) must not shadow Debian's in the venv
    assert "grep -v -i '^opencv-' /opt/gearcam/requirements.txt" in text
    assert "PYTHONPATH=/opt/gearcam" in text
    for part in ("gearcam/", "gears/", "models/"):
        assert f"COPY {part} {part}" in text


def test_each_architecture_builds_the_app_and_its_redis() -> None:
    assert [s.dockerfile for s in image_specs("arm64v8")] == ["docker/Dockerfile.jetson", "docker/Dockerfile.app"]
    assert [s.dockerfile for s in image_specs("x64")] == ["docker/Dockerfile.redis", "docker/Dockerfile.app"]


# -- the scripts the images run ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        "docker/redis-start.sh",
        "docker/redis-healthcheck.sh",
        "docker/fetch-artifacts.sh",
        "deploy/jetson/install-agent.sh",
    ],
)
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    path = PROJECT_ROOT / script
    assert path.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True, timeout=30).returncode == 0


def fake_redis_server(tmp_path: Path) -> dict[str, str]:
    """A stand-in `redis-server` that prints the config file it was given (the modules exist only in the image)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "redis-server"
    fake.write_text('#!/bin/sh\nls -l "$1" | cut -c1-10\ncat "$1"\necho "ARGS: $*"\n')
    fake.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REDIS_CONF": str(tmp_path / "redis.conf"),
        "AI_MODULE": "/m/redisai.so",
        "AI_BACKENDSPATH": "/m/backends",
        "GEARS_MODULE": "/g/redisgears.so",
        "GEARS_PLUGIN": "/g/gears_python.so",
        "GEARS_PYTHON_DIR": "/g/rg",
    }


def start(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = str(DOCKER / "redis-start.sh")
    return subprocess.run([script, *args], env=environ, capture_output=True, text=True, timeout=30)


def test_the_start_script_writes_a_private_config_with_the_password_and_the_module_arguments(tmp_path: Path) -> None:
    environ = {
        **fake_redis_server(tmp_path),
        "REDIS_PASSWORD": "s3cret",
        "AI_THREADS_PER_QUEUE": "2",
        "AI_INTRA_OP_PARALLELISM": "3",
        "GEARS_EXECUTION_THREADS": "4",
    }
    result = start(environ, "--loglevel", "verbose")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "-rw-------"
    assert "bind 127.0.0.1" in lines and "requirepass s3cret" in lines
    assert "loadmodule /m/redisai.so BACKENDSPATH /m/backends THREADS_PER_QUEUE 2 INTRA_OP_PARALLELISM 3" in lines
    assert (
        "loadmodule /g/redisgears.so Plugin /g/gears_python.so PythonInstallationDir /g/rg "
        "CreateVenv 0 DownloadDeps 0 ExecutionThreads 4"
    ) in lines
    assert lines[-1] == f"ARGS: {tmp_path}/redis.conf --loglevel verbose"
    assert "s3cret" not in lines[-1]  # never on the command line


def test_the_start_script_refuses_to_listen_beyond_loopback_without_a_password(tmp_path: Path) -> None:
    result = start({**fake_redis_server(tmp_path), "REDIS_BIND": "0.0.0.0"})
    assert result.returncode == 2
    assert "set REDIS_PASSWORD" in result.stderr
    assert not (tmp_path / "redis.conf").exists()
