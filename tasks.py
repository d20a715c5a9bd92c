"""gearcam's tasks: `invoke --list` shows them, `invoke <task> --help` explains one.

Every command line comes from a plain function (`*_commands`) that the tests check
without running anything; `invoke --dry <task>` prints the commands instead of
running them.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from invoke import Collection, Context, Exit, task

from gearcam.config import PROJECT_ROOT, Settings, load_settings

RUN_DIR = PROJECT_ROOT / ".gearcam" / "run"
DATA_DIR = PROJECT_ROOT / ".gearcam" / "data"
PID_FILE = RUN_DIR / "up.pid"
PYTHON = sys.executable


def _settings() -> Settings:
    return load_settings()


def up_commands(settings: Settings, data_dir: Path = DATA_DIR) -> list[str]:
    """The processes `invoke up` runs: the runtime with its embedded Redis (camera and web pages to come)."""
    runtime = settings.runtime
    return [
        f"{PYTHON} -m gearcam.runtime --embedded --host {runtime.host} --port {runtime.port} "
        f"--backing-port {runtime.backing_port} --data-dir {data_dir}"
    ]


def test_commands(k: str | None = None, verbose: bool = False, args: str = "") -> list[str]:
    command = f"{PYTHON} -m pytest"
    if verbose:
        command += " -v"
    if k:
        command += f" -k '{k}'"
    if args:
        command += f" {args}"
    return [command]


def lint_commands(gears_dir: Path = PROJECT_ROOT / "gears") -> list[str]:
    bin_dir = Path(PYTHON).parent
    commands = [f"{bin_dir}/ruff check gearcam tests tasks.py", f"{bin_dir}/mypy gearcam"]
    if gears_dir.is_dir():
        commands.append(f"{bin_dir}/vermin -q -t=3.7- --no-tips --violations {gears_dir}")
    return commands


def bench_commands(quick: bool = False, model: str | None = None) -> list[str]:
    command = f"{PYTHON} -m gearcam.bench.runtime"
    if quick:
        command += " --quick"
    if model:
        command += f" --model {model}"
    return [command]


@task
def up(c: Context) -> None:
    """Start gearcam on this machine: an embedded Redis behind the gearcam runtime. Ctrl-C stops it."""
    settings = _settings()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if PID_FILE.exists() and _alive(int(PID_FILE.read_text() or 0)):
        raise Exit(f"gearcam is already running (pid {PID_FILE.read_text()}); stop it with `invoke down`")
    print(f"gearcam runtime: redis://{settings.runtime.host}:{settings.runtime.port}  (Ctrl-C stops)")
    PID_FILE.write_text(str(os.getpid()))
    try:
        for command in up_commands(settings):
            c.run(command, pty=False)
    finally:
        PID_FILE.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@task
def down(c: Context) -> None:
    """Stop what `invoke up` started."""
    if not PID_FILE.exists():
        print("gearcam is not running")
        return
    pid = int(PID_FILE.read_text() or 0)
    if not _alive(pid):
        PID_FILE.unlink(missing_ok=True)
        print("gearcam is not running (removed a stale pid file)")
        return
    os.kill(pid, signal.SIGINT)
    print(f"asked gearcam (pid {pid}) to stop")


@task(help={"k": "only tests matching this expression", "verbose": "one line per test", "args": "more pytest args"})
def test(c: Context, k: str | None = None, verbose: bool = False, args: str = "") -> None:
    """Run the test suites (a real redis-server, the runtime and the inference engines)."""
    for command in test_commands(k, verbose, args):
        c.run(command, pty=False)


@task
def lint(c: Context) -> None:
    """ruff, mypy --strict on gearcam/, and vermin (Python 3.7) on gears/."""
    for command in lint_commands():
        c.run(command, pty=False)


@task(help={"quick": "fewer batch sizes and repeats", "model": "ONNX model file (default: the classifier)"})
def bench(c: Context, quick: bool = False, model: str | None = None) -> None:
    """Measure the runtime against the engine called directly, and relayed XADD against redis-server."""
    for command in bench_commands(quick, model):
        c.run(command, pty=False)


ns = Collection(up, down, test, lint, bench)
