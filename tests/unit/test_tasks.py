"""tasks.py: the command lines each task runs, checked without running them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from invoke.config import Config
from invoke.context import Context, MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

import tasks
from gearcam.config import PROJECT_ROOT, load_settings
from tests.conftest import free_port

PY = re.escape(sys.executable)


class TestCommandLines:
    def test_up_runs_the_runtime_loader_camera_and_both_web_pages_in_order(self, tmp_path: Path) -> None:
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__PORT": "7001"})
        commands = dict(tasks.up_commands(settings, data_dir=tmp_path / "data", pid_file=tmp_path / "up.pid",
                                          run_dir=tmp_path / "run", log_dir=tmp_path / "logs"))  # fmt: skip
        assert list(commands) == ["runtime", "loader", "camera", "web-all", "web-cats"]
        py, url = sys.executable, "redis://127.0.0.1:7001"
        assert commands["runtime"] == (
            f"echo $$ > {tmp_path}/up.pid && exec {py} -m gearcam.runtime --embedded"
            f" --host 127.0.0.1 --port 7001 --backing-port 6380 --data-dir {tmp_path}/data > {tmp_path}/logs/runtime.log 2>&1"
        )
        assert commands["loader"] == f"{py} -m gearcam.loader --url {url} --wait 60"
        assert commands["camera"] == (
            f"echo $$ > {tmp_path}/run/camera.pid && exec {py} -m gearcam.camera --url {url} --source samples"
            f" > {tmp_path}/logs/camera.log 2>&1"
        )
        assert commands["web-all"] == (
            f"echo $$ > {tmp_path}/run/web-all.pid && exec env STREAM=all PORT=3000 {py} -m gearcam.web"
            f" --host 127.0.0.1 --url {url} > {tmp_path}/logs/web-all.log 2>&1"
        )
        assert "exec env STREAM=cats PORT=3001 " in commands["web-cats"]

    def test_up_passes_another_camera_source_quoted(self, tmp_path: Path) -> None:
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={})
        commands = dict(tasks.up_commands(settings, source="rtsp://cam/live stream"))
        assert "--source 'rtsp://cam/live stream' >" in commands["camera"]

    def test_up_quotes_paths_for_the_shell(self, tmp_path: Path) -> None:
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={})
        commands = dict(tasks.up_commands(settings, data_dir=Path("/data dir"), pid_file=tmp_path / "up.pid"))
        assert "--data-dir '/data dir'" in commands["runtime"]

    def test_down_signals_the_pid_and_waits_for_it(self) -> None:
        assert tasks.down_commands(4242, wait=3) == ["kill -TERM 4242", "timeout 3 tail --pid=4242 -f /dev/null"]

    def test_down_also_signals_the_camera_and_web_pages(self) -> None:
        assert tasks.down_commands(4242, 3, [51, 52])[0] == "kill -TERM 4242 51 52"

    def test_test_passes_its_filter_and_verbosity_to_pytest(self) -> None:
        assert tasks.test_commands("relay or resp", verbose=True) == [
            f"{sys.executable} -m pytest -v -k 'relay or resp'"
        ]

    def test_test_without_options_runs_plain_pytest(self) -> None:
        assert tasks.test_commands() == [f"{sys.executable} -m pytest"]

    def test_lint_runs_vermin_only_when_gears_exists(self, tmp_path: Path) -> None:
        commands = tasks.lint_commands(tmp_path / "gears")
        assert [c.split()[0].rsplit("/", 1)[1] for c in commands] == ["ruff", "mypy"]
        (tmp_path / "gears").mkdir()
        assert tasks.lint_commands(tmp_path / "gears")[-1].endswith(
            f"vermin -t=3.7- --no-tips --violations {tmp_path}/gears"
        )

    def test_bench_runs_the_bench_package_with_its_options_quoted(self) -> None:
        assert tasks.bench_commands() == [f"{sys.executable} -m gearcam.bench"]
        assert tasks.bench_commands(quick=True, out="/tmp/my results", only="lite0-onnx,tabular", docs=True) == [
            f"{sys.executable} -m gearcam.bench --quick --docs --out '/tmp/my results' --only lite0-onnx,tabular"
        ]


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
        results = {re.compile(r".*/ruff check .*"): Result(exited=1), re.compile(r".*/mypy gearcam"): True}
        c = MockContext(run={**results, re.compile(r".*/vermin .*"): True})
        with pytest.raises(Exit, match="lint failed: ruff;"):
            tasks.lint(c)

    def test_a_failing_bench_exits_with_a_hint(self) -> None:
        c = MockContext(run={re.compile(rf"{PY} -m gearcam.bench --quick$"): Result(exited=1)})
        with pytest.raises(Exit, match="try `invoke bench --quick`"):
            tasks.bench(c, quick=True)

    def test_down_signals_the_runtime_named_in_the_pid_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A real process whose command line says gearcam.runtime, standing in for the runtime.
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "gearcam.runtime"])
        try:
            # Until the child has exec'd, /proc shows the parent's command line: wait for it (bounded).
            deadline = time.monotonic() + 10
            while b"gearcam.runtime" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                assert time.monotonic() < deadline, "the stand-in process never showed its command line"
                time.sleep(0.01)
            pid_file = tmp_path / "up.pid"
            pid_file.write_text(str(proc.pid))
            monkeypatch.setattr(tasks, "PID_FILE", pid_file)
            c = MockContext(run={re.compile(rf"kill -TERM {proc.pid}"): True, re.compile(r"timeout \d+ tail"): True})
            tasks.down(c)
            assert [call.args[0] for call in c.run.call_args_list] == tasks.down_commands(proc.pid)
        finally:
            proc.kill()
            proc.wait()

    def test_down_removes_a_stale_pid_file_and_runs_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pid_file = tmp_path / "up.pid"
        pid_file.write_text(str(os.getpid()))  # alive, but not the runtime
        monkeypatch.setattr(tasks, "PID_FILE", pid_file)
        c = MockContext(run={})
        tasks.down(c)
        assert not pid_file.exists()
        c.run.assert_not_called()


class TestDryRun:
    def test_dry_run_prints_the_commands_instead_of_running_them(self, capsys: pytest.CaptureFixture[str]) -> None:
        tasks.test(Context(Config()), k="nothing-matches", dry_run=True)
        assert f"{sys.executable} -m pytest -k nothing-matches" in capsys.readouterr().out

    def test_up_with_dry_run_starts_nothing(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        port = free_port()
        monkeypatch.setenv("GEARCAM_RUNTIME__PORT", str(port))
        monkeypatch.setenv("GEARCAM_RUNTIME__BACKING_PORT", str(free_port()))
        monkeypatch.setattr(tasks, "PID_FILE", tmp_path / "up.pid")
        tasks.up(Context(Config()), source="/dev/video3", dry_run=True)
        out = capsys.readouterr().out
        assert f"-m gearcam.runtime --embedded --host 127.0.0.1 --port {port}" in out
        assert f"-m gearcam.loader --url redis://127.0.0.1:{port}" in out
        assert "-m gearcam.camera" in out and "--source /dev/video3" in out
        assert "STREAM=all PORT=3000" in out and "STREAM=cats PORT=3001" in out
        assert "http://localhost:3000/" in out and "http://localhost:3001/" in out
        assert tasks.port_free("127.0.0.1", port)

    def test_up_refuses_a_taken_port_and_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            monkeypatch.setenv("GEARCAM_RUNTIME__PORT", str(taken.getsockname()[1]))
            monkeypatch.setattr(tasks, "PID_FILE", tmp_path / "up.pid")
            with pytest.raises(Exit, match="GEARCAM_RUNTIME__PORT"):
                tasks.up(Context(Config()), dry_run=True)

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
