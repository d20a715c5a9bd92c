"""The ceilings, each measured in a fresh process: the engine called directly, and decode+infer alone.

A process that has already loaded TensorFlow, PyTorch and ONNX Runtime runs none of them
at full speed (their thread pools compete), so the bench process never runs an engine
itself: it starts ``python -m gearcam.bench.direct`` per model, which loads the model with
the runtime's own engine module and then measures one window at a time when asked (a JSON
line on stdin, the window's figures on stdout). `direct_engine` hands those windows to
``measure_interleaved``, so the ceiling takes turns with the runtime and the HTTP server
(or, for decode+infer alone, with the pipeline's offered rates) instead of being measured
minutes apart from them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from gearcam.bench.measure import Call, CallMeter, WindowResult
from gearcam.bench.procs import child_env
from gearcam.config import PROJECT_ROOT

__all__ = ["ANSWER_TIMEOUT_S", "DirectEngine", "direct_engine", "main"]

ANSWER_TIMEOUT_S = 900.0  # loading TensorFlow's model, or one window of TorchScript at batch 32 on 2 slow cores


class DirectEngine:
    """The engine's process: one loaded model, measuring a window at a time when asked."""

    def __init__(self, process: subprocess.Popen[str], errors: IO[str]) -> None:
        self._process = process
        self._errors = errors

    def ask(self, request: dict[str, Any], timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            # The answer is one line and nothing else is written, so the pipe is empty between answers.
            ready, _, _ = select.select([self._process.stdout], [], [], timeout)
            if not ready:
                self._process.kill()
                raise RuntimeError(f"the direct-engine process did not answer {request} within {timeout:.0f} s: "
                                   "killed (an engine run that never ends?)")  # fmt: skip
            line = self._process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self._errors.seek(0)
            last = (self._errors.read().strip().splitlines() or ["(nothing on stderr)"])[-1]
            raise RuntimeError(f"the direct-engine process ended ({self._process.wait()}): {last[-800:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def meter(self, batch: int) -> _DirectMeter:
        return _DirectMeter(self, batch)


class _DirectMeter:
    clients = 1

    def __init__(self, engine: DirectEngine, batch: int) -> None:
        self._engine = engine
        self._batch = batch

    def warm(self, seconds: float) -> None:
        self._engine.ask({"batch": self._batch, "warm": seconds})

    def window(self, seconds: float) -> WindowResult:
        got = self._engine.ask({"batch": self._batch, "window": seconds})
        return int(got["calls"]), float(got["seconds"]), list(got["latencies_ms"])


@contextlib.contextmanager
def direct_engine(name: str, device: str = "CPU", frame: Path | None = None) -> Iterator[DirectEngine]:
    """A fresh process with ``name``'s model loaded, for windows taken in turns with other work.

    With ``frame`` (a JPEG file), each item of a call is decoded and preprocessed first.
    """
    command = [sys.executable, "-m", "gearcam.bench.direct", "--subject", name, "--device", device]
    if frame is not None:
        command += ["--frame", str(frame)]
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, text=True)  # fmt: skip
        try:
            engine = DirectEngine(process, errors)
            engine.ask({"ready": True})  # the model is loaded once this is answered
            yield engine
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _infer_call(model: Any, x: Any) -> Call:
    def call() -> None:
        model.run([x])

    return call


def _frames_call(model: Any, jpeg: bytes, batch: int) -> Call:
    """Each call decodes and preprocesses ``batch`` frames, then runs them as one batch."""
    import numpy as np

    from gearcam.models.preprocess import preprocess

    def call() -> None:
        model.run([np.concatenate([preprocess(jpeg) for _ in range(batch)])])

    return call


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from gearcam.bench.subjects import Subject, load_subject
    from gearcam.runtime.ai.engines import EngineOptions, load_model

    subject = load_subject(args.subject)
    if not isinstance(subject, Subject):
        raise SystemExit(subject)
    return subject, load_model(subject.backend, args.device, subject.blob, subject.inputs, subject.outputs,
                               EngineOptions())  # fmt: skip


def _call(subject: Any, model: Any, jpeg: bytes | None, batch: int) -> Call:
    from gearcam.bench.subjects import random_batch

    return _infer_call(model, random_batch(subject, batch)) if jpeg is None else _frames_call(model, jpeg, batch)


def _serve(args: argparse.Namespace) -> None:
    """Answer one JSON line per request on stdin: ``ready``, ``warm`` (seconds) or ``window`` (seconds) at a batch,
    until stdin closes."""
    subject, model = _load(args)
    jpeg = args.frame.read_bytes() if args.frame else None
    meters: dict[int, CallMeter] = {}
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {}
        if "batch" in request:
            batch = int(request["batch"])
            if batch not in meters:
                meters[batch] = CallMeter([_call(subject, model, jpeg, batch)])
            if "warm" in request:
                meters[batch].warm(float(request["warm"]))
            else:
                calls, seconds, latencies = meters[batch].window(float(request["window"]))
                answer = {"calls": calls, "seconds": seconds, "latencies_ms": latencies}
        print(json.dumps(answer), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gearcam.bench.direct", description=__doc__.split("\n")[0])
    parser.add_argument("--subject", required=True, help="manifest entry, or 'tabular'")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--frame", type=Path, help="JPEG frame: decode + preprocess it for every item (the pipeline)")
    try:
        _serve(parser.parse_args(argv))
    except Exception as exc:  # the parent reads the last line of stderr as the reason
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
