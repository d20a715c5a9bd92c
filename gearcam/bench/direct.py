"""The ceilings, each measured in a fresh process: the engine called directly, and decode+infer alone.

A process that has already loaded TensorFlow, PyTorch and ONNX Runtime runs none of them
at full speed (their thread pools compete), so the bench process never runs an engine
itself: it starts ``python -m gearcam.bench.direct`` per model, which loads the model with
the runtime's own engine module, measures, and prints the figures as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gearcam.bench.measure import Call, measure
from gearcam.bench.plan import Plan
from gearcam.bench.procs import child_env
from gearcam.config import PROJECT_ROOT

__all__ = ["direct_figures", "main"]


def direct_figures(plan: Plan, name: str, batches: Sequence[int], device: str = "CPU",
                   frame: Path | None = None) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Measurement dicts by batch size from a fresh process; with ``frame``, each item is decoded and preprocessed."""
    command = [sys.executable, "-m", "gearcam.bench.direct", "--subject", name, "--device", device,
               "--batches", ",".join(map(str, batches)), "--window-s", str(plan.window_s),
               "--repeats", str(plan.repeats), "--warmup-s", str(plan.warmup_s)]  # fmt: skip
    if frame is not None:
        command += ["--frame", str(frame)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=child_env(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"the direct-engine process failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


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


def _run(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    from gearcam.bench.subjects import Subject, load_subject, random_batch
    from gearcam.runtime.ai.engines import EngineOptions, load_model

    subject = load_subject(args.subject)
    if not isinstance(subject, Subject):
        raise SystemExit(subject)
    model = load_model(subject.backend, args.device, subject.blob, subject.inputs, subject.outputs, EngineOptions())
    jpeg = args.frame.read_bytes() if args.frame else None
    out: dict[int, dict[str, Any]] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        call = _infer_call(model, random_batch(subject, batch)) if jpeg is None else _frames_call(model, jpeg, batch)
        out[batch] = measure([call], batch, args.window_s, args.repeats, args.warmup_s).to_dict()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gearcam.bench.direct", description=__doc__.split("\n")[0])
    parser.add_argument("--subject", required=True, help="manifest entry, or 'tabular'")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--batches", required=True, help="comma-separated batch sizes")
    parser.add_argument("--window-s", type=float, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--warmup-s", type=float, default=0.0)
    parser.add_argument("--frame", type=Path, help="JPEG frame: decode + preprocess it for every item (the pipeline)")
    args = parser.parse_args(argv)
    print(json.dumps(_run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
