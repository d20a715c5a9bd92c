"""tasks.py: the command lines each task runs, checked without running them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke.config import Config
from invoke.context import Context, MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

import tasks
from gearcam.addresses import resolve
from gearcam.config import PROJECT_ROOT, load_settings
from gearcam.errors import CallerError
from gearcam.up import port_free, up_plan
from gearcam.up.plan import find_mosquitto
from gearcam.up.state import RunState, process_start, write_state
from tests.conftest import free_port

PY = re.escape(sys.executable)


class TestCommandLines:
    def test_up_runs_the_runtime_loader_camera_and_both_web_pages_in_order(self, tmp_path: Path) -> None:
        env = {"GEARCAM_RUNTIME__PORT": "7001", "GEARCAM_WEB__PORT": "4000", "GEARCAM_UP__STATE_DIR": str(tmp_path)}
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ=env)
        plan = up_plan(settings, resolve(settings))
        commands = {s.name: s.command_line for s in plan.services}
        if find_mosquitto() is None:  # scripts/bootstrap installs it; without it, no broker and no notifier
            assert list(commands) == ["runtime", "loader", "camera", "web-all", "web-cats", "record"]
            return
        assert list(commands) == ["runtime", "mosquitto", "loader", "camera", "web-all", "web-cats", "notify", "record"]
        py, url = sys.executable, "redis://127.0.0.1:7001"
        assert commands["runtime"] == (
            f"{py} -m gearcam.runtime --embedded --host '127.0.0.1 -::1' --port 7001 --backing-port 6380"
            f" --data-dir {tmp_path}/data > {tmp_path}/logs/runtime.log 2>&1"
        )
        assert commands["loader"].startswith(f"{py} -m gearcam.loader --url {url} --wait 60 >")
        assert (
            commands["camera"]
            == f"{py} -m gearcam.camera --url {url} --source samples > {tmp_path}/logs/camera.log 2>&1"
        )
        assert f"-m gearcam.web --host 127.0.0.1 --url {url} --stream all --port 4000 >" in commands["web-all"]
        assert "--stream cats --port 4001 >" in commands["web-cats"]  # web.port + 1 unless web.hits_port says
        assert commands["mosquitto"].startswith(f"{find_mosquitto()} -p 1883 >")  # loopback only without a config
        assert f"-m gearcam.notify --redis-url {url} --mqtt-url mqtt://127.0.0.1:1883 >" in commands["notify"]
        assert f"-m gearcam.record --redis-url {url} --data {settings.record.data_dir} >" in commands["record"]

    def test_up_starts_no_mosquitto_when_events_mqtt_url_names_a_broker(self, tmp_path: Path) -> None:
        env = {"GEARCAM_EVENTS__MQTT_URL": "mqtt://broker.lan:1883"}
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ=env)
        commands = {s.name: s.command_line for s in up_plan(settings, resolve(settings)).services}
        assert "mosquitto" not in commands and "--mqtt-url mqtt://broker.lan:1883 >" in commands["notify"]

    def test_up_passes_its_flags_and_quotes_the_source(self, tmp_path: Path) -> None:
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={})
        plan = up_plan(settings, resolve(settings), "rtsp://cam/live stream", wait_for_camera=True, reset_config=True)
        commands = {s.name: s.command_line for s in plan.services}
        assert "--source 'rtsp://cam/live stream' --wait-for-camera >" in commands["camera"]
        assert "--reset-config >" in commands["loader"]

    def test_test_passes_its_filter_and_verbosity_to_pytest(self) -> None:
        assert tasks.test_commands("relay or resp", verbose=True) == [
            f"{sys.executable} -m pytest -v -k 'relay or resp'"
        ]

    def test_test_without_options_runs_plain_pytest(self) -> None:
        assert tasks.test_commands() == [f"{sys.executable} -m pytest"]

    def test_lint_runs_vermin_only_when_gears_exists(self, tmp_path: Path) -> None:
        commands = tasks.lint_commands(tmp_path / "gears")
        assert [c.split()[0].rsplit("/", 1)[1] for c in commands] == ["ruff", "ruff", "mypy"]
        assert commands[1].endswith("ruff format --check gearcam tests tasks.py")
        (tmp_path / "gears").mkdir()
        assert tasks.lint_commands(tmp_path / "gears")[-1].endswith(
            f"vermin -t=3.7- --no-tips --violations {tmp_path}/gears"
        )

    def test_bench_runs_the_bench_package_with_its_options_quoted(self) -> None:
        assert tasks.bench_commands() == [f"{sys.executable} -m gearcam.bench"]
        assert tasks.bench_commands(quick=True, out="/tmp/my results", only="lite0-onnx,tabular", docs=True) == [
            f"{sys.executable} -m gearcam.bench --quick --docs --out '/tmp/my results' --only lite0-onnx,tabular"
        ]

    def test_migrate_copies_from_the_old_server_into_the_given_target_quoted(self) -> None:
        assert tasks.migrate_commands("redis://old:6379", "redis://new:6379/1", replace=True) == [
            f"{sys.executable} -m gearcam.migrate --from redis://old:6379 --to redis://new:6379/1 --replace"
        ]
        assert tasks.migrate_commands("redis://o ld", "redis://n") == [
            f"{sys.executable} -m gearcam.migrate --from 'redis://o ld' --to redis://n"
        ]

    def test_migrate_copies_an_rdb_or_append_only_file_instead_and_wants_exactly_one_origin(self) -> None:
        assert tasks.migrate_commands(None, "redis://n", rdb="/old node/dump.rdb") == [
            f"{sys.executable} -m gearcam.migrate --rdb '/old node/dump.rdb' --to redis://n"
        ]
        assert tasks.migrate_commands(None, "redis://n", aof="/data/appendonlydir") == [
            f"{sys.executable} -m gearcam.migrate --aof /data/appendonlydir --to redis://n"
        ]
        for source, rdb in ((None, None), ("redis://old", "dump.rdb")):
            with pytest.raises(CallerError, match="give one of --from URL .* --rdb FILE .* or --aof PATH"):
                tasks.migrate_commands(source, "redis://n", rdb=rdb)


class TestTasksWithMockContext:
    def test_test_runs_exactly_its_command(self) -> None:
        c = MockContext(run={re.compile(rf"{PY} -m pytest -k smoke$"): Result(exited=0)})
        tasks.test(c, k="smoke")
        c.run.assert_called_once_with(f"{sys.executable} -m pytest -k smoke", pty=False, warn=True)

    def test_a_failing_test_run_exits_with_pytests_code_and_a_hint(self) -> None:
        c = MockContext(run={re.compile(rf"{PY} -m pytest"): Result(exited=5)})
        with pytest.raises(Exit) as caught:
            tasks.test(c)
        assert caught.value.code == 5
        assert "no tests were collected" in str(caught.value.message)

    def test_lint_names_every_tool_that_failed(self) -> None:
        results = {
            re.compile(r".*/ruff check .*"): Result(exited=1),
            re.compile(r".*/ruff format --check .*"): True,
            re.compile(r".*/mypy gearcam"): True,
        }
        c = MockContext(run={**results, re.compile(r".*/vermin .*"): True})
        with pytest.raises(Exit, match="lint failed: ruff;"):
            tasks.lint(c)

    def test_lint_names_ruffs_format_check_apart(self) -> None:
        results = {
            re.compile(r".*/ruff check .*"): True,
            re.compile(r".*/ruff format --check .*"): Result(exited=1),
            re.compile(r".*/mypy gearcam"): Result(exited=1),
        }
        c = MockContext(run={**results, re.compile(r".*/vermin .*"): True})
        with pytest.raises(Exit, match="lint failed: ruff format, mypy;"):
            tasks.lint(c)

    def test_a_failing_bench_exits_with_a_hint(self) -> None:
        c = MockContext(run={re.compile(rf"{PY} -m gearcam.bench --quick$"): Result(exited=1)})
        with pytest.raises(Exit, match="try `invoke bench --quick`"):
            tasks.bench(c, quick=True)

    def test_migrate_targets_the_configured_runtime_and_exits_with_a_hint_on_failure(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("GEARCAM_UP__STATE_DIR", str(tmp_path))
        monkeypatch.setenv("REDIS_URL", "redis://gearcam:6390")
        command = rf"{PY} -m gearcam.migrate --from redis://old:6379 --to redis://gearcam:6390$"
        c = MockContext(run={re.compile(command): Result(exited=1)})
        with pytest.raises(Exit, match="lists each key that failed"):
            tasks.migrate(c, from_="redis://old:6379")
        with pytest.raises(Exit, match="^migrate: give one of --from URL"):
            tasks.migrate(MockContext(), from_="redis://old:6379", rdb="dump.rdb")


class TestFailures:
    """A GearcamError becomes one Exit, after the task's name (or its own words, with its arguments)."""

    @pytest.mark.parametrize("task", [tasks.status, tasks.events])
    def test_an_unreachable_redis_is_named_with_where_its_address_came_from_and_how_to_start_it(
        self, task: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        url = f"redis://:s3cret@127.0.0.1:{free_port()}"
        monkeypatch.setenv("GEARCAM_UP__STATE_DIR", str(tmp_path))
        monkeypatch.setenv("REDIS_URL", url)
        with pytest.raises(Exit) as caught:
            task(Context(Config()))
        message = str(caught.value.message)
        assert message.startswith(f"{task.name}: cannot reach {url.replace('s3cret', '***')} (REDIS_URL")
        assert "start gearcam (`invoke up`)" in message and "s3cret" not in message

    def test_undeploy_of_an_unknown_host_says_which_and_what_is_configured(self) -> None:
        with pytest.raises(Exit, match=r"^undeploy from pi stopped: unknown host 'pi'.*configured: jetson"):
            tasks.undeploy(MockContext(), host="pi")


class TestDryRun:
    def test_dry_run_prints_the_commands_instead_of_running_them(self, capsys: pytest.CaptureFixture[str]) -> None:
        tasks.test(Context(Config()), k="nothing-matches", dry_run=True)
        assert f"{sys.executable} -m pytest -k nothing-matches" in capsys.readouterr().out

    def test_up_with_dry_run_starts_nothing(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        port = free_port()
        monkeypatch.setenv("GEARCAM_RUNTIME__PORT", str(port))
        monkeypatch.setenv("GEARCAM_UP__STATE_DIR", str(tmp_path))
        tasks.up(Context(Config()), source="/dev/video3", dry_run=True)
        out = capsys.readouterr().out
        assert f"-m gearcam.runtime --embedded --host '127.0.0.1 -::1' --port {port}" in out
        assert f"-m gearcam.loader --url redis://127.0.0.1:{port}" in out
        assert "-m gearcam.camera" in out and "--source /dev/video3" in out
        assert "--stream all --port 3000" in out and "--stream cats --port 3001" in out
        assert "http://localhost:3000/" in out and "http://localhost:3001/" in out
        assert port_free("127.0.0.1", port) and not (tmp_path / "run").exists()

    def test_down_with_dry_run_names_the_supervisor_it_would_stop(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("GEARCAM_UP__STATE_DIR", str(tmp_path))
        write_state(tmp_path / "run", RunState(os.getpid(), process_start(os.getpid()) or 0, "redis://x:1", "logs"))
        tasks.down(Context(Config()), dry_run=True)
        assert f"kill -TERM {os.getpid()}" in capsys.readouterr().out

    def test_down_with_nothing_running_says_so_and_removes_a_stale_state_file(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("GEARCAM_UP__STATE_DIR", str(tmp_path))
        write_state(tmp_path / "run", RunState(os.getpid(), 1, "redis://x:1", "logs"))  # another start time: not it
        tasks.down(Context(Config()))
        assert "gearcam is not running" in capsys.readouterr().out
        assert not (tmp_path / "run" / "up.json").exists()

    def test_cli_runs_redis_cli_against_the_configured_url_with_the_password_outside_argv(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("GEARCAM_UP__STATE_DIR", str(tmp_path))
        monkeypatch.setenv("REDIS_URL", "redis://:s3cret@node:6390/2")
        c = MockContext(run={re.compile(r"redis-cli -h node -p 6390 -n 2 XLEN cats$"): True})
        c._set(remainder="XLEN cats")  # what `invoke cli -- XLEN cats` leaves for the task
        tasks.cli(c)
        args, kwargs = c.run.call_args
        assert "s3cret" not in args[0] and kwargs["env"] == {"REDISCLI_AUTH": "s3cret"}

    def test_invokes_own_dry_flag_and_the_task_flag_print_the_same(self) -> None:
        def run(*args: str) -> str:
            command = [str(Path(sys.executable).parent / "invoke"), *args]
            return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60).stdout

        printed = run("--dry", "test", "-k", "x")
        assert re.search(r"/python[0-9.]* -m pytest -k x", printed)
        assert run("test", "--dry-run", "-k", "x") == printed

    def test_every_task_takes_dry_run(self) -> None:
        for name in tasks.ns.task_names:
            assert "dry_run" in {arg.name for arg in tasks.ns[name].get_arguments()}, name
