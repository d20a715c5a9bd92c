"""tasks.py: the command lines each task runs, checked without running them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from invoke import Config, Context, MockContext, Result

import tasks
from gearcam.config import load_settings


def test_up_runs_the_runtime_with_an_embedded_redis_on_the_configured_ports(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__PORT": "7001"})
    (command,) = tasks.up_commands(settings, data_dir=tmp_path)
    assert command == (
        f"{sys.executable} -m gearcam.runtime --embedded --host 127.0.0.1 --port 7001 "
        f"--backing-port 6380 --data-dir {tmp_path}"
    )


def test_test_passes_its_filter_to_pytest() -> None:
    assert tasks.test_commands("relay", verbose=True) == [f"{sys.executable} -m pytest -v -k 'relay'"]


def test_lint_runs_vermin_only_when_gears_exists(tmp_path: Path) -> None:
    assert not any("vermin" in c for c in tasks.lint_commands(tmp_path / "gears"))
    (tmp_path / "gears").mkdir()
    assert any("vermin -q -t=3.7-" in c for c in tasks.lint_commands(tmp_path / "gears"))


def test_the_test_task_runs_exactly_its_command() -> None:
    expected = tasks.test_commands("smoke")[0]
    c = MockContext(run={re.compile(re.escape(expected)): Result(exited=0)})
    tasks.test(c, k="smoke")
    c.run.assert_called_once_with(expected, pty=False)


def test_dry_run_prints_commands_instead_of_running_them(capsys: object) -> None:
    c = Context(Config(overrides={"run": {"dry": True}}))
    tasks.bench(c, quick=True)
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"{sys.executable} -m gearcam.bench.runtime --quick" in out
