"""`invoke up`'s supervisor: start the plan in order, watch it, report a death, stop it all in order.

Each service runs in a session of its own, so Ctrl-C reaches only the supervisor, which then
stops the services itself (the pages and the camera first, the runtime last, so Redis saves
after the last frame). `invoke down` sends the supervisor SIGTERM and waits; both read as a
requested stop, never as a crash. A service that exits on its own is a failure: the
supervisor prints its exit status, the last lines of its log and the likely fix
(``hints.death_report``), stops the rest and returns that report, so `invoke up` exits non-zero.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

import redis

from gearcam.addresses import connect_host
from gearcam.config import Settings
from gearcam.status import status_line
from gearcam.up.hints import death_report, exit_status, tail
from gearcam.up.plan import Service, UpPlan
from gearcam.up.state import RunState, process_start, remove_state, write_state

__all__ = ["Supervisor"]

_REASONS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "`invoke down`", signal.SIGHUP: "the terminal closed"}
_DROPPED_ENV = ("REDIS_URL", "STREAM", "PORT")  # the plan passes each service its addresses as flags
# How long a runtime that no longer answers, but has not exited, decides what a service's exit meant (below).
_RUNTIME_GOING_S = 10.0


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


class Supervisor:
    """Runs one `invoke up` plan in the foreground; ``run`` returns None after a requested stop, else the report."""

    def __init__(self, settings: Settings, plan: UpPlan, out: TextIO, *, verbose: bool = False) -> None:
        self.settings = settings
        self.plan = plan
        self.out = out
        self.verbose = verbose
        self.live = out.isatty()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_reason: str | None = None
        self._hurry = False
        self._wake = threading.Event()
        self._line_width = 0
        self._going_since: float | None = None  # since when the running runtime has not answered (_runtime_going)

    # -- terminal ----------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self._line_width:  # end the live line first
            self.out.write("\n")
            self._line_width = 0
        self.out.write(text + "\n")
        self.out.flush()

    def _status(self, line: str) -> None:
        if not self.live:
            self.out.write(line + "\n")
        else:  # rewrite the same line: carriage return and spaces, no escape codes
            self.out.write("\r" + line.ljust(self._line_width))
            self._line_width = len(line)
        self.out.flush()

    # -- signals -----------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_reason is not None:
            self._hurry = True  # a second Ctrl-C: kill instead of waiting
        else:
            self.stop_reason = _REASONS.get(signal.Signals(signum), signal.Signals(signum).name)
        self._wake.set()

    # -- running -----------------------------------------------------------------------------------

    def run(self) -> str | None:
        plan = self.plan
        for folder in (plan.run_dir, plan.data_dir, plan.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _REASONS}
        self._record()
        try:
            return self._start_all() or self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            remove_state(plan.run_dir)

    def _record(self) -> None:
        a = self.plan.addresses
        services = {name: [p.pid, process_start(p.pid) or 0] for name, p in self.procs.items()}
        pid = os.getpid()
        write_state(self.plan.run_dir, RunState(pid, process_start(pid) or 0, a.runtime_url, str(self.plan.log_dir),
                                                [a.all_page, a.hits_page], services))  # fmt: skip

    def _spawn(self, service: Service) -> subprocess.Popen[bytes]:
        if self.verbose:
            self.say(f"+ {service.command_line}")
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        with service.log.open("wb") as log:
            proc = subprocess.Popen(service.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)  # fmt: skip
        self.procs[service.name] = proc
        self._record()
        return proc

    def _died(self) -> str | None:
        """The report of the first service that exited on its own, if any.

        A service whose link to the runtime closed (the recorder, the camera) may exit before the
        runtime it lost has: after a SHUTDOWN the runtime takes a moment to stop its Gears workers
        and engines. While the runtime no longer answers but still runs, its own exit decides
        (for up to _RUNTIME_GOING_S): a clean one is the SHUTDOWN's stop, not the service's death.
        """
        for service in self.plan.services:
            proc = self.procs.get(service.name)
            if proc is None or service.oneshot:
                continue
            code = proc.poll()
            if code == 0 and service.name == "runtime" and not self.stop_reason:
                self.stop_reason = "the runtime stopped with its Redis (SHUTDOWN)"  # as asked: not a failure
                return None
            if code is not None:
                if service.name != "runtime" and self._runtime_going():
                    return None  # asked again next round
                return death_report(service.name, code, service.log)
        return None

    def _runtime_going(self) -> bool:
        """Whether the runtime still runs but no longer answers, and has not for long (see _died)."""
        runtime = self.procs.get("runtime")
        if runtime is None or runtime.poll() is not None or self._pings():
            self._going_since = None
            return False
        now = time.monotonic()
        if self._going_since is None:
            self._going_since = now
        return now - self._going_since < _RUNTIME_GOING_S

    def _start_all(self) -> str | None:
        a = self.plan.addresses
        mqtt = f", events to MQTT {a.describe_mqtt()}" if self.plan.runs("notify") else ""
        self.say(f"gearcam: runtime on {a.runtime_url} (backing redis-server on 127.0.0.1:{a.backing_port}, data in "
                 f"{self.plan.data_dir}), camera source {self.plan.source!r}{mqtt}, "
                 f"logs in {self.plan.log_dir}")  # fmt: skip
        for service in self.plan.services:
            if self.stop_reason:
                return None
            proc = self._spawn(service)
            if service.name == "runtime":
                failure = self._until(self._pings, "the runtime", self.settings.up.loader_wait)
            elif service.oneshot:
                failure = self._until(functools.partial(_exited, proc), service.name, None)
                if failure is None and not self.stop_reason:
                    failure = self._oneshot_done(service, proc)
            else:
                continue
            if failure:
                return failure
        pages = [a.web_all_port, a.web_hits_port]
        failure = self._until(lambda: all(self._answers(port) for port in pages), "the pages", 30)
        if failure is None and not self.stop_reason:
            self.say(f"gearcam is up. all frames: {a.all_page}   hits: {a.hits_page}   "
                     f"(Ctrl-C or `invoke down` stops it; `invoke status`, `invoke cli -- ARGS`)")  # fmt: skip
        return failure

    def _until(self, ready: Callable[[], bool], what: str, timeout: float | None) -> str | None:
        """Wait until ``ready`` (None), a service dies (its report), a stop is requested (None) or time runs out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stop_reason:
            failure = self._died()
            if failure:
                return failure
            if ready():
                return None
            if deadline is not None and time.monotonic() > deadline:
                return f"{what} did not come up within {timeout:g}s; logs in {self.plan.log_dir}"
            self._wake.wait(0.2)
        return None

    def _oneshot_done(self, service: Service, proc: subprocess.Popen[bytes]) -> str | None:
        code = proc.returncode
        if code != 0:
            return death_report(service.name, code, service.log)
        summary = [line for line in tail(service.log, 40) if line.startswith("loaded ")]
        if summary:
            self.say(summary[-1])
        return None

    def _pings(self) -> bool:
        client = redis.Redis.from_url(self.plan.addresses.runtime_url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _answers(self, port: int) -> bool:
        host = connect_host(self.plan.addresses.web_host)
        host = f"[{host}]" if ":" in host else host
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def _watch(self) -> str | None:
        client = redis.Redis.from_url(self.plan.addresses.runtime_url, socket_connect_timeout=2, socket_timeout=5)
        every = 2.0 if self.live else 10.0
        next_line = time.monotonic()
        try:
            while not self.stop_reason:
                failure = self._died()
                if failure:
                    return failure
                if time.monotonic() >= next_line:
                    self._status(self._line(client))
                    next_line = time.monotonic() + every
                self._wake.wait(0.5)
        finally:
            client.close()
        return None

    def _line(self, client: redis.Redis) -> str:
        try:
            return status_line(client, self.settings.pipeline.hits_stream)
        except redis.RedisError as exc:
            return f"the runtime is not answering ({exc})"

    # -- stopping ----------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        running = {name: p for name, p in self.procs.items() if p.poll() is None}
        if self.stop_reason:
            self.say(f"stopping gearcam ({self.stop_reason})")
        elif running:
            self.say(f"stopping the rest: {', '.join(running)}")
        runtime = running.pop("runtime", None)
        self._terminate(running)
        if runtime is not None:
            self._terminate({"runtime": runtime})
        if self.stop_reason:
            self.say(f"gearcam stopped; data kept in {self.plan.data_dir}")

    def _terminate(self, procs: dict[str, subprocess.Popen[Any]]) -> None:
        for proc in procs.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.up.stop_timeout
        for name, proc in procs.items():
            while proc.poll() is None and time.monotonic() < deadline and not self._hurry:
                time.sleep(0.05)
            if proc.poll() is None:
                self.say(f"{name} did not stop within {self.settings.up.stop_timeout:g}s; killing it")
                proc.kill()
                proc.wait()
            elif proc.returncode not in (0, -signal.SIGTERM):
                log = self.plan.log_dir / f"{name}.log"
                self.say(f"{name} stopped with {exit_status(proc.returncode)}; its log: {log}")
