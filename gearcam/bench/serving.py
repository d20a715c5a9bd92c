"""Model serving per backend and precision: the runtime against its two baselines, in one run.

For one subject (a model), three fresh processes at once: the engine called directly (the
ceiling, gearcam.bench.direct), a runtime in front of a fresh redis-server (the figures, and
the server's peak memory), and an HTTP server on the same engine (the baseline users would
write). At each batch size the three take their timed windows in turns (measure_interleaved),
so each row's ratios compare the same minutes of the machine. Each figure is a
``Measurement`` (median window, latency percentiles).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gearcam.bench.client import LeanClient, ai_call, tensor_shape
from gearcam.bench.direct import DirectEngine, direct_engine
from gearcam.bench.http_server import http_call
from gearcam.bench.measure import CallMeter, Meter, measure_interleaved, measure_meter
from gearcam.bench.plan import Plan
from gearcam.bench.procs import (
    Child,
    backing_redis,
    cpu_seconds,
    free_port,
    minor_faults,
    peak_rss_mb,
    redis_pid,
    runtime_process,
    served_process,
)
from gearcam.bench.stats import Measurement, ratio
from gearcam.bench.subjects import Subject, random_batch

__all__ = ["modelstore_command", "serve_subject"]

logger = logging.getLogger(__name__)

PLAIN_KEY = "bench:model"
BATCHED_KEY = "bench:model:autobatch"
Tick = Callable[[str], None]


def modelstore_command(subject: Subject, key: str, batchsize: int = 0, device: str = "CPU") -> tuple[Any, ...]:
    """AI.MODELSTORE in RedisAI 1.2's argument order (TF names its input and output ops)."""
    args: list[Any] = ["AI.MODELSTORE", key, subject.backend, device]
    if batchsize:
        args += ["BATCHSIZE", batchsize]
    if subject.backend == "TF":
        args += ["INPUTS", len(subject.inputs), *subject.inputs, "OUTPUTS", len(subject.outputs), *subject.outputs]
    return (*args, "BLOB", subject.blob)


def _run(m: Measurement) -> dict[str, Any]:
    return m.to_dict()


def _ai_meter(stack: contextlib.ExitStack, port: int, subject: Subject, key: str, batch: int, clients: int,
              pipelined: bool, slot: str = "c") -> CallMeter:  # fmt: skip
    """``clients`` connections to the runtime (closed with ``stack``), each making the trio on tensors of its own."""
    payload = random_batch(subject, batch).tobytes()
    shape = tensor_shape(batch, subject.item)
    conns = [stack.enter_context(contextlib.closing(LeanClient("127.0.0.1", port))) for _ in range(clients)]
    return CallMeter([ai_call(conn, key, payload, shape, f"{slot}{i}", pipelined) for i, conn in enumerate(conns)])


def _measure_ai(port: int, subject: Subject, key: str, batch: int, clients: int, pipelined: bool,
                plan: Plan) -> Measurement:  # fmt: skip
    with contextlib.ExitStack() as stack:
        meter = _ai_meter(stack, port, subject, key, batch, clients, pipelined)
        return measure_meter(meter, batch, plan.window_s, plan.repeats, plan.warmup_s)


def engine_time(info: list[Any]) -> dict[str, Any]:
    """The runs an AI.INFO reply counted, and their mean engine time in ms (its `duration` is in µs)."""
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in zip(info[::2], info[1::2], strict=True)}
    calls, duration = int(fields.get("calls", 0)), int(fields.get("duration", 0))
    return {"runs": calls, "mean_ms": duration / calls / 1000.0 if calls else None}


def _runtime_field(info_modules: bytes, name: str) -> bytes | None:
    """A field of INFO MODULES' ai_runtime section; None where the server does not say (RedisAI has no such section)."""
    field = f"ai_{name}:".encode()
    for line in info_modules.splitlines():
        if line.startswith(field):
            return line[len(field) :].strip()
    return None


def engine_runs(info_modules: bytes, device: str) -> int | None:
    """Runs the runtime's `device` queue has made so far (INFO MODULES, ai_runtime): a merged batch is one run."""
    value = _runtime_field(info_modules, f"queue_{device}_engine_runs")
    return int(value) if value is not None else None


def queue_waiting(info_modules: bytes, device: str) -> tuple[int, float] | None:
    """Requests that went through the `device` queue so far and the seconds they waited there in all."""
    requests = _runtime_field(info_modules, f"queue_{device}_queued_requests")
    seconds = _runtime_field(info_modules, f"queue_{device}_wait_seconds")
    return (int(requests), float(seconds)) if requests is not None and seconds is not None else None


def mean_wait_ms(before: tuple[int, float] | None, after: tuple[int, float] | None) -> float | None:
    """The mean wait in the queue between two readings of queue_waiting; None where no request was queued."""
    if before is None or after is None or after[0] == before[0]:
        return None
    return (after[1] - before[1]) * 1000.0 / (after[0] - before[0])


def _measure_batching(
    port: int, subject: Subject, clients: int, plan: Plan, device: str
) -> tuple[Measurement, Measurement, dict[str, Any]]:
    """`clients` single-item clients on the plain model and on the auto-batched one, their windows in
    turns; and the mean batch the queue formed for the auto-batched one.

    Clients that each wait for their reply leave about half of themselves queued while a batch
    runs, so the batch formed (requests over engine runs, counted over the timed windows) is the
    engine's batch to compare with, not BATCHSIZE. The queue's run counter counts the plain
    model's runs too (one a request, as it has no BATCHSIZE): they are taken off.
    """
    first: list[int | None] = []

    def reset() -> None:
        _command(port, ("AI.INFO", BATCHED_KEY, "RESETSTAT"), ("AI.INFO", PLAIN_KEY, "RESETSTAT"))
        first.append(engine_runs(_command(port, ("INFO", "MODULES"))[0], device))

    with contextlib.ExitStack() as stack:
        meters: dict[str, Meter] = {
            "off": _ai_meter(stack, port, subject, PLAIN_KEY, 1, clients, True, "off"),
            "on": _ai_meter(stack, port, subject, BATCHED_KEY, 1, clients, True, "on"),
        }
        figures = measure_interleaved(meters, 1, plan.window_s, plan.repeats, plan.warmup_s, reset)
    batched, plain, modules = _command(port, ("AI.INFO", BATCHED_KEY), ("AI.INFO", PLAIN_KEY), ("INFO", "MODULES"))
    requests, before, after = engine_time(batched)["runs"], first[0], engine_runs(modules, device)
    runs = after - before - engine_time(plain)["runs"] if after is not None and before is not None else None
    return figures["off"], figures["on"], {"requests": requests, "engine_runs": runs,
                                           "mean_batch": requests / runs if runs else None}  # fmt: skip


def _measure_sweep_batch(port: int, subject: Subject, batch: int, plan: Plan, backing_pid: int,
                         direct: DirectEngine, http_port: int | None, device: str) -> dict[str, Any]:  # fmt: skip
    """The pipelined trio at `batch` through the runtime, in turns with the direct engine and the
    HTTP server; the mean time the runtime's runs spent in the engine and waited in its queue; what
    its redis-server spent a call.

    AI.INFO's counters are reset once every server is warm, so the engine's time covers the
    runtime's timed windows: set beside the direct engine's own time, it tells whether the runtime
    slowed the engine or the rest of the call did (the trip there and back, the commands, the write
    to Redis). redis-server's CPU and minor page faults are read at the same two moments: the write
    of each call's input tensor is its work (it idles during the other servers' windows).
    """
    start: dict[str, Any] = {}

    def reset() -> None:
        _, modules = _command(port, ("AI.INFO", PLAIN_KEY, "RESETSTAT"), ("INFO", "MODULES"))
        start.update(cpu_s=cpu_seconds(backing_pid), faults=minor_faults(backing_pid),
                     queue=queue_waiting(modules, device))  # fmt: skip

    with contextlib.ExitStack() as stack:
        meters: dict[str, Meter] = {
            "direct": direct.meter(batch),
            "runtime": _ai_meter(stack, port, subject, PLAIN_KEY, batch, 1, True),
        }
        if http_port is not None:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
            stack.enter_context(contextlib.closing(conn))
            meters["http"] = CallMeter([http_call(conn, random_batch(subject, batch).tobytes(), batch)])
        figures = measure_interleaved(meters, batch, plan.window_s, plan.repeats, plan.warmup_s, reset)
    measured = figures["runtime"]
    cpu_s, faults = cpu_seconds(backing_pid), minor_faults(backing_pid)
    info, modules = _command(port, ("AI.INFO", PLAIN_KEY), ("INFO", "MODULES"))
    redis_work: dict[str, Any] = {"cpu_ms": None, "minor_faults": None}
    if cpu_s is not None and start.get("cpu_s") is not None:
        redis_work["cpu_ms"] = (cpu_s - start["cpu_s"]) * 1000.0 / measured.calls
    if faults is not None and start.get("faults") is not None:
        redis_work["minor_faults"] = (faults - start["faults"]) / measured.calls
    engine = {**engine_time(info), "queue_wait_ms": mean_wait_ms(start.get("queue"), queue_waiting(modules, device))}
    return {**figures, "engine": engine, "redis_work": redis_work}


def _command(port: int, *commands: tuple[Any, ...]) -> list[Any]:
    conn = LeanClient("127.0.0.1", port)
    try:
        return conn.pipeline(*commands)
    finally:
        conn.close()


def _sum(a: float | None, b: float | None) -> float | None:
    return a + b if a is not None and b is not None else None


def _through_runtime(subject: Subject, plan: Plan, sweep_clients: bool, device: str, tick: Tick,
                     direct: DirectEngine, http_server: Child | None) -> dict[str, Any]:  # fmt: skip
    """The runtime's figures; its batch sweep in turns with the direct engine and the HTTP server."""
    with backing_redis() as backing, runtime_process(backing.url) as runtime:
        backing_pid = redis_pid(backing.port)
        idle_mb = peak_rss_mb(runtime.pid)
        _command(runtime.port, modelstore_command(subject, PLAIN_KEY, 0, device))
        (info,) = _command(runtime.port, ("INFO", "MODULES"))
        write_ack = write_ack_of(info)
        # engine: the runs' time inside the runtime; redis_work: redis-server's CPU and page faults a call
        sweep: dict[int, dict[str, Any]] = {}
        for batch in plan.batches:
            sweep[batch] = _measure_sweep_batch(runtime.port, subject, batch, plan, backing_pid, direct,
                                                http_server.port if http_server else None, device)  # fmt: skip
            for where in ("direct", "runtime", "http"):
                if where in sweep[batch]:
                    tick(f"{subject.name} {where} b{batch}")
        http_peak = peak_rss_mb(http_server.pid) if http_server else None
        sequential = {}
        for batch in (b for b in plan.sequential_batches if b in plan.batches):
            sequential[batch] = _measure_ai(runtime.port, subject, PLAIN_KEY, batch, 1, False, plan)
            tick(f"{subject.name} one-at-a-time b{batch}")
        # The HTTP server's load: one model, one client, the batch sweep. Peaks only grow, so
        # they are read before the auto-batched copy of the model and the client sweep.
        memory = {
            "runtime_idle_mb": idle_mb,
            "runtime_peak_mb": peak_rss_mb(runtime.pid),
            "redis_peak_mb": peak_rss_mb(backing_pid),
        }
        _command(runtime.port, modelstore_command(subject, BATCHED_KEY, plan.autobatch_size, device))
        counts = sorted(set(plan.clients) | {plan.autobatch_clients}) if sweep_clients else [plan.autobatch_clients]
        clients = []
        for n in counts:
            off, on, batching = _measure_batching(runtime.port, subject, n, plan, device)
            clients.append({"clients": n, "no_autobatch": _run(off), "autobatch": _run(on), "batching": batching,
                            "autobatch_vs_none": ratio(on.inferences_per_s, off.inferences_per_s)})  # fmt: skip
            tick(f"{subject.name} {n} clients")
        memory["runtime_peak_all_mb"] = peak_rss_mb(runtime.pid)  # with both models and up to 8 clients
        memory["redis_peak_all_mb"] = peak_rss_mb(backing_pid)
    memory["server_peak_mb"] = _sum(memory["runtime_peak_mb"], memory["redis_peak_mb"])
    memory["server_peak_all_mb"] = _sum(memory["runtime_peak_all_mb"], memory["redis_peak_all_mb"])
    return {"sweep": sweep, "sequential": sequential, "clients": clients, "memory": memory, "write_ack": write_ack,
            "http_peak_mb": http_peak}  # fmt: skip


def write_ack_of(info_modules: bytes) -> str | None:
    """When the runtime answered AI writes in this run (`ai_write_ack`: sent or stored; docs/runtime.md)."""
    for line in info_modules.decode("utf-8", "replace").splitlines():
        if line.startswith("ai_write_ack:"):
            return line.split(":", 1)[1].strip()
    return None


@contextlib.contextmanager
def _http_baseline(subject: Subject, device: str) -> Iterator[Child]:
    with tempfile.TemporaryDirectory(prefix="gearcam-bench-") as tmp:
        model_file = Path(tmp) / f"{subject.name}.model"
        model_file.write_bytes(subject.blob)
        port = free_port()
        command = [sys.executable, "-m", "gearcam.bench.http_server", "--backend", subject.backend,
                   "--model", str(model_file), "--inputs", *subject.inputs, "--outputs", *subject.outputs,
                   "--item", ",".join(map(str, subject.item)), "--device", device, "--port", str(port)]  # fmt: skip
        with served_process(command, port, "the HTTP baseline server") as server:
            yield server


def serve_subject(subject: Subject, plan: Plan, sweep_clients: bool, tick: Tick, device: str = "CPU") -> dict[str, Any]:
    """Every serving figure of one subject on ``device``, with its ratios; ``tick`` is called after each figure."""
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(direct_engine(subject.name, device))
        server = stack.enter_context(_http_baseline(subject, device)) if plan.http else None
        served = _through_runtime(subject, plan, sweep_clients, device, tick, engine, server)
    direct = {batch: _run(figures["direct"]) for batch, figures in served["sweep"].items()}
    sweep = []
    for batch in plan.batches:
        figures, base = served["sweep"][batch], direct[batch]
        runtime = figures["runtime"]
        row: dict[str, Any] = {"batch": batch, "direct": base, "runtime": _run(runtime)}
        row["runtime_vs_direct"] = ratio(runtime.inferences_per_s, base["inferences_per_s"])
        row["engine_in_runtime"] = engine_ms = figures["engine"]
        row["engine_in_runtime_vs_direct"] = ratio(engine_ms["mean_ms"], base["latency_ms"].get("mean"))
        row["redis_per_call"] = figures["redis_work"]
        if batch in served["sequential"]:
            one = served["sequential"][batch]
            row["one_at_a_time"] = _run(one)
            row["pipelined_vs_one_at_a_time"] = ratio(runtime.inferences_per_s, one.inferences_per_s)
        if "http" in figures:
            row["http"] = _run(figures["http"])
            row["runtime_vs_http"] = ratio(runtime.inferences_per_s, figures["http"].inferences_per_s)
        sweep.append(row)
    memory = dict(served["memory"])
    memory["http_server_peak_mb"] = http_peak = served["http_peak_mb"]
    memory["server_vs_http"] = ratio(memory["server_peak_mb"], http_peak)
    first, last = direct[plan.batches[0]], direct[plan.batches[-1]]
    return {
        **subject.describe(),
        "device": device,
        "write_ack": served["write_ack"],
        "sweep": sweep,
        "clients": served["clients"],
        "memory": memory,
        "engine_batch_scaling": {
            "from_batch": first["batch"],
            "to_batch": last["batch"],
            "ratio": ratio(last["inferences_per_s"], first["inferences_per_s"]),
        },  # fmt: skip
    }
