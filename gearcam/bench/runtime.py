"""Runtime overhead benchmark: AI.MODELEXECUTE through the runtime vs the engine called directly,
and XADD of camera-sized frames relayed vs sent to redis-server itself.

Every figure is a median over repeats, and every comparison is a ratio against a
baseline measured in the same run, so the numbers survive a noisy machine.

    python -m gearcam.bench.runtime [--quick] [--model PATH] [--out results/runtime.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import redis

from gearcam.config import PROJECT_ROOT
from gearcam.redis_server import EmbeddedRedis

logger = logging.getLogger(__name__)

DEFAULT_MODEL = PROJECT_ROOT / "models" / "efficientnet_lite0_fp32.onnx"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def runtime_process(backing_url: str, *flags: str) -> Iterator[int]:
    """A `python -m gearcam.runtime` subprocess; yields its port once it answers."""
    port = _free_port()
    command = [sys.executable, "-m", "gearcam.runtime", "--redis-url", backing_url, "--port", str(port),
               "--log-level", "WARNING", *flags]  # fmt: skip
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(port=port, socket_timeout=1).ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the runtime did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def median_rate(run: Callable[[], int], repeats: int, warmup: int = 1) -> float:
    """Median of items/second over `repeats` timed calls of `run` (which returns its item count)."""
    for _ in range(warmup):
        run()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        items = run()
        rates.append(items / (time.perf_counter() - started))
    return statistics.median(rates)


def direct_engine(model: bytes, batch: int, repeats: int, rounds: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((batch, 224, 224, 3), dtype=np.float32)

    def run() -> int:
        for _ in range(rounds):
            session.run(None, {name: x})
        return batch * rounds

    return median_rate(run, repeats)


class LeanClient:
    """A minimal pipelining RESP client (socket + hiredis), as AIBench's Go client is.

    redis-py spends ~15 ms of client CPU sending a 10 MB tensor where a plain socket
    needs ~6 ms; measured through it, the client would hide what the server costs.
    """

    def __init__(self, port: int) -> None:
        import socket

        import hiredis

        self._sock = socket.create_connection(("127.0.0.1", port))
        self._reader = hiredis.Reader()

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        from gearcam.runtime.resp import encode_command

        chunks: list[bytes] = []
        for command in commands:
            encode_command(command, chunks)
        self._sock.sendmsg(chunks) if len(chunks) < 512 else self._sock.sendall(b"".join(chunks))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                data = self._sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                self._reader.feed(data)
                continue
            if isinstance(reply, Exception):
                raise reply
            replies.append(reply)
        return replies


def through_runtime(port: int, key: str, batch: int, repeats: int, rounds: int, client: int = 0) -> Callable[[], int]:
    conn = LeanClient(port)
    x = np.random.default_rng(client).random((batch, 224, 224, 3), dtype=np.float32).tobytes()
    inp, out = f"in:{client}", f"out:{client}"

    def run() -> int:
        for _ in range(rounds):
            conn.pipeline(
                ("AI.TENSORSET", inp, "FLOAT", batch, 224, 224, 3, "BLOB", x),
                ("AI.MODELEXECUTE", key, "INPUTS", 1, inp, "OUTPUTS", 1, out),
                ("AI.TENSORGET", out, "BLOB"),
            )
        return batch * rounds

    return run


def concurrent_rate(port: int, key: str, clients: int, repeats: int, rounds: int) -> float:
    runners = [through_runtime(port, key, 1, repeats, rounds, client=i) for i in range(clients)]

    def run() -> int:
        threads = [threading.Thread(target=r) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return clients * rounds

    return median_rate(run, repeats)


def xadd_rate(port: int, frames: int, repeats: int, size: int = 64 * 1024) -> float:
    conn = redis.Redis(port=port)
    payload = os.urandom(size)

    def run() -> int:
        for i in range(frames):
            conn.xadd("bench:frames", {"img": payload, "count": i}, maxlen=100, approximate=True)
        return frames

    return median_rate(run, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gearcam.bench.runtime", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repeats")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model with input [N,224,224,3]")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "runtime.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.model.exists():
        parser.error(f"model {args.model} not found; build it with `invoke models` or pass --model")
    from tqdm import tqdm

    model = args.model.read_bytes()
    batches = [1, 4, 16] if args.quick else [1, 2, 4, 8, 16, 32]
    repeats, rounds = (3, 2) if args.quick else (5, 4)
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "model": str(args.model.name), "repeats": repeats, "rounds": rounds,
        "inference": [], "concurrent": [], "xadd": {},
    }  # fmt: skip
    with EmbeddedRedis(port=0) as backing, runtime_process(backing.url) as port:
        LeanClient(port).pipeline(
            ("AI.MODELSTORE", "bench:m", "ONNX", "CPU", "BLOB", model),
            ("AI.MODELSTORE", "bench:mb", "ONNX", "CPU", "BATCHSIZE", 8, "BLOB", model),
        )
        for batch in tqdm(batches, desc="batch sizes"):
            direct = direct_engine(model, batch, repeats, rounds)
            served = median_rate(through_runtime(port, "bench:m", batch, repeats, rounds), repeats)
            result["inference"].append({"batch": batch, "direct_ips": direct, "runtime_ips": served,
                                        "ratio": served / direct})  # fmt: skip
        for clients in tqdm((1, 8), desc="clients"):
            plain = concurrent_rate(port, "bench:m", clients, repeats, rounds)
            batched = concurrent_rate(port, "bench:mb", clients, repeats, rounds)
            result["concurrent"].append({"clients": clients, "no_batching_ips": plain, "autobatch_ips": batched,
                                         "ratio": batched / plain})  # fmt: skip
        frames = 200 if args.quick else 1000
        relayed = xadd_rate(port, frames, repeats)
        direct_xadd = xadd_rate(backing.port, frames, repeats)
        result["xadd"] = {"frame_bytes": 65536, "relayed_per_s": relayed, "direct_per_s": direct_xadd,
                          "ratio": relayed / direct_xadd}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(format_table(result))
    print(f"\nwritten to {args.out}")
    return 0


def format_table(result: dict[str, Any]) -> str:
    lines = ["| batch | direct ONNX Runtime (img/s) | through the runtime (img/s) | ratio |", "|---|---|---|---|"]
    for row in result["inference"]:
        lines.append(f"| {row['batch']} | {row['direct_ips']:.1f} | {row['runtime_ips']:.1f} | {row['ratio']:.2f} |")
    lines += ["", "| clients (batch 1 each) | no auto-batching (img/s) | BATCHSIZE 8 (img/s) | ratio |",
              "|---|---|---|---|"]  # fmt: skip
    for row in result["concurrent"]:
        lines.append(
            f"| {row['clients']} | {row['no_batching_ips']:.1f} | {row['autobatch_ips']:.1f} | {row['ratio']:.2f} |"
        )
    x = result["xadd"]
    lines += ["", "| XADD 64 KB frames | direct (per s) | relayed (per s) | ratio |", "|---|---|---|---|",
              f"| one at a time | {x['direct_per_s']:.0f} | {x['relayed_per_s']:.0f} | {x['ratio']:.2f} |"]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
