"""`python -m gearcam.runtime`: serve RedisAI's (and RedisGears') commands in front of a stock Redis.

Flags override the configuration tiers of gearcam/config.py; the RedisAI load-time
options keep their module-argument names (THREADS_PER_QUEUE → --threads-per-queue).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from gearcam.cancel import cancel_and_wait
from gearcam.config import RuntimeSettings, load_settings, redact_url
from gearcam.errors import ConfigError, GearcamError
from gearcam.logs import add_log_level, setup_logging
from gearcam.runtime import open_files
from gearcam.runtime.relay import parse_address
from gearcam.runtime.server import Runtime
from gearcam.runtime.tls import backing_tls, server_context

logger = logging.getLogger("gearcam.runtime")
# How long a stop may take before the runtime says what it waits for and exits (at least; 4 x shutdown_grace):
# clients' grace, the Gears batches' and workers', the engines. Under `invoke up` a SHUTDOWN's stop is killed
# 25 s after it began (10 s for the runtime to go, then up.stop_timeout), so this speaks first.
_STOP_LIMIT_S = 20.0


def _yes_no(value: str) -> bool:
    """Redis' spelling of a boolean flag (--protected-mode no)."""
    if value.lower() in ("yes", "true", "1"):
        return True
    if value.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


_OPTIONS = (
    (
        "--host",
        str,
        "addresses to listen on, as Redis' bind, in one argument: '127.0.0.1 -::1' (the default; "
        "'-': skipped where missing), '*' every IPv4 address, '::*' every IPv6 one",
    ),
    ("--port", int, "public RESP port (0: none, e.g. with --tls-port only)"),
    ("--unixsocket", str, "also listen on this unix socket"),
    ("--tls-port", int, "serve RESP over TLS on this port too (Redis' tls-port; docs/runtime.md, TLS)"),
    ("--tls-cert-file", str, "Redis' tls-cert-file: the server certificate (PEM)"),
    ("--tls-key-file", str, "Redis' tls-key-file: its private key (PEM)"),
    ("--tls-key-file-pass", str, "Redis' tls-key-file-pass: the key's passphrase"),
    ("--tls-ca-cert-file", str, "Redis' tls-ca-cert-file: the CA clients' certificates chain to"),
    ("--tls-ca-cert-dir", str, "Redis' tls-ca-cert-dir"),
    ("--tls-auth-clients", str, "Redis' tls-auth-clients: yes (default), optional or no"),
    ("--tls-protocols", str, "Redis' tls-protocols, e.g. 'TLSv1.2 TLSv1.3' (the default)"),
    ("--tls-ciphers", str, "Redis' tls-ciphers (TLSv1.2 and below)"),
    ("--tls-prefer-server-ciphers", _yes_no, "Redis' tls-prefer-server-ciphers: yes or no (default)"),
    ("--tls-dh-params-file", str, "Redis' tls-dh-params-file"),
    ("--tls-client-cert-file", str, "Redis' tls-client-cert-file: shown to a rediss:// backing Redis"),
    ("--tls-client-key-file", str, "Redis' tls-client-key-file"),
    ("--tls-client-key-file-pass", str, "Redis' tls-client-key-file-pass"),
    ("--backing-port", int, "port of the embedded backing redis-server"),
    ("--threads-per-queue", int, "RedisAI THREADS_PER_QUEUE"),
    ("--intra-op-parallelism", int, "RedisAI INTRA_OP_PARALLELISM"),
    ("--inter-op-parallelism", int, "RedisAI INTER_OP_PARALLELISM"),
    ("--model-execution-timeout", int, "RedisAI MODEL_EXECUTION_TIMEOUT (ms)"),
    ("--model-chunk-size", int, "RedisAI MODEL_CHUNK_SIZE (bytes)"),
    ("--backends-path", str, "RedisAI BACKENDSPATH (reported only: the engines are Python packages)"),
    ("--backend-memory-limit", int, "RedisAI BACKEND_MEMORY_LIMIT (MB)"),
    ("--max-request-size", int, "largest request a client may send (bytes; Redis' client-query-buffer-limit)"),
    ("--maxmemory-clients", int, "bytes of unfinished requests all clients may hold together (0: no limit)"),
    ("--maxclients", int, "most clients connected at once (Redis' maxclients; default 10000)"),
    ("--start-wait", float, "seconds to wait at start for a backing Redis that refuses connections (0: none)"),
    ("--write-ack", str, "auto: answer AI writes once sent where Redis' reply promises no more; stored: once stored"),
    ("--protected-mode", _yes_no, "yes: refuse other hosts while the backing Redis has no password (default)"),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gearcam.runtime", description=__doc__)
    backing = parser.add_mutually_exclusive_group()
    backing.add_argument(
        "--redis-url", dest="backing_url", help="front this existing Redis (redis://, rediss:// or unix://)"
    )
    backing.add_argument("--embedded", action="store_true", help="start a private redis-server to front (default)")
    parser.add_argument("--data-dir", help="directory for the embedded Redis' RDB/AOF (default: a temporary one)")
    for flag, kind, text in _OPTIONS:
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument(
        "--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
        help="event loop: uvloop when installed (auto), or the standard asyncio loop",
    )  # fmt: skip
    add_log_level(parser)
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> RuntimeSettings:
    overrides: dict[str, Any] = {}
    for flag, _, _ in _OPTIONS:
        name = flag[2:].replace("-", "_")
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.backing_url:
        overrides["backing_url"] = args.backing_url
    settings = load_settings(runtime=overrides).runtime
    if args.embedded:
        settings.backing_url = None
    return settings


async def _serve(settings: RuntimeSettings, data_dir: str | None) -> None:
    # Handled from the first moment: starting may take minutes (a backing Redis that loads its data, or not
    # listening yet), and a SIGTERM meanwhile killed the runtime on the spot, leaving the embedded redis-server
    # running without it (and a Ctrl-C printed a traceback).
    asked = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, asked.set)
    tls = server_context(settings)  # files that do not load stop it before anything starts
    links_tls = backing_tls(settings)
    async with contextlib.AsyncExitStack() as stack:
        url = settings.backing_url
        if url is None:
            from pathlib import Path

            from gearcam.redis_server import EmbeddedRedis

            # The runtime talks to it over a unix socket; the TCP port is for operators (redis-cli -p 6380).
            embedded = EmbeddedRedis(
                port=settings.backing_port,
                unixsocket=True,
                dir=Path(data_dir) if data_dir else None,
                save_on_stop=data_dir is not None,
                # A link per client of the runtime's, and its own: the runtime's maxclients decides who is refused.
                config={"maxclients": str(settings.maxclients + open_files.RESERVED)},
            )
            stack.callback(embedded.stop)  # also when a signal ends the start below
            await asyncio.to_thread(embedded.start)
            url = embedded.url
        logger.info("backing Redis: %s", redact_url(url))
        runtime = Runtime(settings, parse_address(url, links_tls), tls)
        runtime.state.shut_down = asked.set  # a client's SHUTDOWN: the runtime stops as its Redis did
        if not await _started(runtime, asked):
            logger.info("gearcam runtime stopped before it was ready")
            return
        await asked.wait()
        if not await _stop(runtime, max(_STOP_LIMIT_S, 4 * settings.shutdown_grace)):
            await stack.aclose()  # the embedded redis-server still goes with it, as on a stop that ended
            logging.shutdown()
            os._exit(1)


async def _stop(runtime: Runtime, limit: float) -> bool:
    """runtime.stop(), bounded: whether it ended. A stop that hangs (once in several CI runs, after a SHUTDOWN,
    the runtime went on for 26 s with its ports closed until `invoke up` killed it: a cancel lost in the key
    events' task, fixed with gearcam/cancel.py) logs what every task is waiting for, and the caller ends the
    process with status 1, so a next time says where it stuck."""
    stopping = asyncio.ensure_future(runtime.stop())
    await asyncio.wait({stopping}, timeout=limit)
    if stopping.done():
        stopping.result()
        return True
    logger.error("the gearcam runtime did not stop within %g s; exiting anyway. What it waited for:\n%s", limit,
                 _waiting())  # fmt: skip
    return False


def _waiting() -> str:
    """Each asyncio task with the chain of awaits it is suspended in, and each thread's innermost frames."""
    lines = []
    for task in asyncio.all_tasks():
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(chain) < 12:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        lines.append(f"  task {task.get_name()}: {' -> '.join(chain) or 'running'}")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        stack = traceback.extract_stack(frame, limit=4)
        lines.append(
            f"  thread {names.get(ident, ident)}: "
            + " <- ".join(
                f"{entry.name} ({entry.filename.rsplit('/', 1)[-1]}:{entry.lineno})" for entry in reversed(stack)
            )
        )
    return "\n".join(lines)


async def _started(runtime: Runtime, asked: asyncio.Event) -> bool:
    """Start `runtime` unless a signal comes first (then what started is released): whether it started."""
    start = asyncio.ensure_future(runtime.start())
    signalled = asyncio.ensure_future(asked.wait())
    await asyncio.wait({start, signalled}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if not start.done():
        await cancel_and_wait(start)
        return False
    start.result()  # the start's own error, if it failed
    return True


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop roughly halves the relay's per-command cost; the standard loop always works."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--loop uvloop needs the package 'uvloop'; pip install uvloop==0.23.0") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = settings_from(args)
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(_serve(settings, args.data_dir))
    except GearcamError as exc:
        logger.error("%s", exc)
        return 1
    return 0
