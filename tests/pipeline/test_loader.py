"""`python -m gearcam.loader` and `invoke status` against the real runtime (and against servers that cannot work)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import Exit

import tasks
from gearcam.config import CONFIG_KEY, LABELS_KEY
from gearcam.loader import read_requirements, registrations_of
from gearcam.models import load_manifest, read_labels
from gearcam.status import status_report
from tests.conftest import free_port
from tests.pipeline.conftest import MODEL, pipeline_settings
from tests.runtime.conftest import Backing

ROOT = Path(__file__).resolve().parents[2]


def loader(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARCAM_") and k != "REDIS_URL"}
    return subprocess.run([sys.executable, "-m", "gearcam.loader", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_loader_run_twice_leaves_one_registration_and_does_not_resend_the_model(r: redis.Redis) -> None:
    url = "redis://{host}:{port}".format(**r.connection_pool.connection_kwargs)
    for _ in range(2):
        done = loader("--url", url, "--model", MODEL)
        assert done.returncode == 0, done.stderr
        assert "already there" in done.stdout  # the fixture stored this artifact already
    gears_id = pipeline_settings().pipeline.gears_id
    assert len(registrations_of(r.execute_command("RG.DUMPREGISTRATIONS"), gears_id)) == 1
    assert [x.decode() for x in r.lrange(LABELS_KEY, 0, -1)] == read_labels(load_manifest())
    config = {k.decode(): v.decode() for k, v in r.hgetall(CONFIG_KEY).items()}
    assert config["model_key"] == "models:classifier" and config["model_output"] == "logits"


def test_a_second_load_keeps_what_an_operator_set_and_only_adds_missing_fields(r: redis.Redis) -> None:
    url = "redis://{host}:{port}".format(**r.connection_pool.connection_kwargs)
    r.hset(CONFIG_KEY, mapping={"sample_every": "5", "model_output": "stale"})
    r.hdel(CONFIG_KEY, "stream_maxlen")
    done = loader("--url", url, "--model", MODEL)
    assert done.returncode == 0, done.stderr
    config = {k.decode(): v.decode() for k, v in r.hgetall(CONFIG_KEY).items()}
    assert config["sample_every"] == "5"  # the operator's value survives the restart
    assert config["stream_maxlen"] == "1000"  # the missing field is added
    assert config["model_output"] == "logits"  # the model's own fields always follow the model
    assert "kept sample_every=5 as set there" in done.stdout and "--reset-config" in done.stdout
    reset = loader("--url", url, "--model", MODEL, "--reset-config")
    assert reset.returncode == 0, reset.stderr
    assert r.hget(CONFIG_KEY, "sample_every") == b"1" and "kept" not in reset.stdout


def test_the_status_report_shows_the_registration_counters_streams_and_model(r: redis.Redis) -> None:
    report = status_report(r, pipeline_settings())
    for expected in ("Gears registrations", "StreamReader", "camera:*", "Pipeline counters", "inferred",
                     "Streams", "Model", "ONNX", "lite0-onnx@", "threshold"):  # fmt: skip
        assert expected in report


def test_the_requirements_the_loader_sends_are_the_files_lines() -> None:
    assert read_requirements() == ["numpy>=1.19", "Pillow>=8.0"]


def test_the_loader_gives_up_on_a_redis_that_never_answers() -> None:
    done = loader("--url", f"redis://127.0.0.1:{free_port()}", "--wait", "1")
    assert done.returncode == 1 and "did not answer within 1s" in done.stderr


def test_the_loader_names_the_fix_on_a_redis_without_the_modules(tmp_path: Path) -> None:
    plain = Backing(free_port(), tmp_path)
    plain.start()
    try:
        done = loader("--url", plain.url, "--model", MODEL, "--wait", "5")
    finally:
        plain.stop()
    assert done.returncode == 1
    assert "no AI.* commands" in done.stderr and "invoke up" in done.stderr


def test_invoke_status_prints_the_report_for_redis_url(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://{host}:{port}".format(**r.connection_pool.connection_kwargs))
    tasks.status(Context(Config()))
    out = capsys.readouterr().out
    assert "Gears registrations" in out and "camera:*" in out and "models:classifier" in out


def test_invoke_status_names_the_fix_when_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    with pytest.raises(Exit, match="invoke up"):
        tasks.status(Context(Config()))
