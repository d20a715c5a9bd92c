"""``python -m gearcam.bench``: run a plan, then write results.json, results.md and the PNG plots.

Sections run in order: model serving per subject (each in fresh processes), the GPU
(when ONNX Runtime's CUDA provider exists), plain commands relayed by the runtime, decoding
camera frames of several sizes, the whole pipeline, many cameras with motion gating and
adaptive sampling off and on, the recorder. A section that cannot run here says "not
measured" and why, instead of failing the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gearcam.bench.aims import check_aims
from gearcam.bench.decode import run_decode
from gearcam.bench.machine import gpu_status, load_average, machine_info, versions
from gearcam.bench.plan import PLANS, TABULAR, Plan, plan_named
from gearcam.bench.relay import RELAY_TICKS, run_relay
from gearcam.bench.report import format_markdown
from gearcam.bench.steady import run_steady
from gearcam.bench.tls import TLS_TICKS, run_tls
from gearcam.config import PROJECT_ROOT
from gearcam.models.manifest import load_manifest

__all__ = ["count_ticks", "main", "run_plan", "write_results"]

logger = logging.getLogger(__name__)

RESULTS_DIR = PROJECT_ROOT / "results"
Tick = Callable[[str], None]


def count_ticks(plan: Plan, gpu: bool) -> int:
    """How many figures a plan measures (the progress bar's total)."""
    sequential = len([b for b in plan.sequential_batches if b in plan.batches])
    per_subject = len(plan.batches) * (3 if plan.http else 2) + sequential  # direct, runtime (and HTTP) a batch
    sweep = len(set(plan.clients) | {plan.autobatch_clients})
    first_image = next((name for name in plan.artifacts if name != TABULAR), None)
    total = sum(per_subject + (sweep if name in (TABULAR, first_image) else 1) for name in plan.artifacts)
    if gpu:
        total += sum(per_subject + 1 for name in plan.artifacts if name.startswith("lite0-onnx"))
    total += RELAY_TICKS + TLS_TICKS if plan.relay else 0
    total += len(plan.decode_sizes)
    total += 2 + 2 * len(plan.camera_counts) if plan.camera_counts else 0
    total += len(plan.record_cameras)
    total += 1 if plan.steady_seconds else 0
    return total + (1 + len(plan.pipeline_fractions) + plan.pipeline_refine if plan.pipeline_fractions else 0)


def _serve(plan: Plan, name: str, sweep_clients: bool, tick: Tick, device: str = "CPU") -> dict[str, Any]:
    from gearcam.bench.serving import serve_subject
    from gearcam.bench.subjects import Subject, load_subject

    subject = load_subject(name)
    if not isinstance(subject, Subject):
        logger.warning("%s: %s", name, subject)
        return {"name": name, "device": device, "not_measured": subject}
    try:
        return serve_subject(subject, plan, sweep_clients, tick, device)
    except Exception as exc:  # one model failing must not lose the rest of a 30-minute run
        logger.exception("%s on %s could not be measured", name, device)
        return {"name": name, "device": device, "not_measured": f"not measured: failed ({type(exc).__name__}: {exc})"}


def run_plan(plan: Plan, tick: Tick) -> dict[str, Any]:
    """Every section of ``plan``; the result dict that results.json holds."""
    started = time.monotonic()
    result: dict[str, Any] = {
        "schema": 1,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(),
        "plan": plan.to_dict(),
        "gpu_status": gpu_status(),
        "serving": [],
        "gpu": [],
    }
    images_swept = 0
    for name in plan.artifacts:
        sweep = name == TABULAR or images_swept < 1
        images_swept += name != TABULAR
        result["serving"].append(_serve(plan, name, sweep, tick))
    if result["gpu_status"] is None:
        for name in (n for n in plan.artifacts if n.startswith("lite0-onnx")):
            result["gpu"].append(_serve(plan, name, False, tick, "GPU"))
    not_in_plan = {"not_measured": "not measured: not in this plan"}
    for section, run in (("relay", run_relay), ("tls", run_tls)):
        try:
            result[section] = run(plan, tick) if plan.relay else not_in_plan
        except Exception as exc:  # these figures must not lose the rest of the run (no openssl command, say)
            logger.exception("the %s section could not be measured", section)
            result[section] = {"not_measured": f"not measured: failed ({type(exc).__name__}: {exc})"}
    result["decode"] = run_decode(plan, tick) if plan.decode_sizes else not_in_plan
    if plan.pipeline_fractions:
        from gearcam.bench.pipeline import run_pipeline

        result["pipeline"] = run_pipeline(plan, tick)
    else:
        result["pipeline"] = {"not_measured": "not measured: this plan has no pipeline section"}
    if plan.camera_counts:
        from gearcam.bench.cameras import run_cameras

        result["cameras"] = run_cameras(plan, tick)
    else:
        result["cameras"] = {"not_measured": "not measured: this plan has no cameras section"}
    if plan.record_cameras:
        from gearcam.bench.recorder import run_recorder

        result["recorder"] = run_recorder(plan, tick)
    else:
        result["recorder"] = {"not_measured": "not measured: this plan has no recorder section"}
    result["steady"] = run_steady(plan, tick)
    result["machine"]["load_average_at_end"] = load_average()
    result["duration_s"] = time.monotonic() - started
    result["aims"] = check_aims(result)
    return result


def write_results(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """results.json, the PNG plots and results.md (which shows them) in ``out``."""
    from gearcam.bench.plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(result, indent=1) + "\n")
    plots = write_plots(result, out)
    paths["markdown"].write_text(format_markdown(result, [p.name for p in plots]))
    paths.update({p.stem: p for p in plots})
    return paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick plan (about 5 minutes on 2 cores)")
    parser.add_argument(
        "--plan",
        choices=sorted(PLANS),
        help="full (default, ~20 min), quick, events (cameras and recorder only, ~2 min) or tiny",
    )
    parser.add_argument("--out", type=Path, help="results folder (default: results/bench-<plan>-<UTC time>)")
    parser.add_argument("--only", help="comma-separated models to serve, e.g. lite0-onnx,tabular")
    parser.add_argument("--no-pipeline", action="store_true", help="leave out the whole-pipeline section")
    parser.add_argument("--no-http", action="store_true", help="leave out the HTTP baseline")
    parser.add_argument("--docs", action="store_true", help="also put the tables and plots into docs/benchmarks.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name = args.plan or ("quick" if args.quick else "full")
    changes: dict[str, object] = {}
    if args.only:
        wanted = tuple(n.strip() for n in args.only.split(",") if n.strip())
        known = [*load_manifest().names(), TABULAR]
        unknown = [n for n in wanted if n not in known]
        if unknown or not wanted:
            parser.error(f"--only {args.only!r}: unknown model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        changes["artifacts"] = wanted
    if args.no_pipeline:
        changes["pipeline_fractions"] = ()
    if args.no_http:
        changes["http"] = False
    plan = plan_named(name, **changes)
    out = args.out or RESULTS_DIR / f"bench-{plan.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    from tqdm import tqdm

    with tqdm(total=count_ticks(plan, gpu_status() is None), unit="figure", dynamic_ncols=True) as bar:

        def tick(what: str) -> None:
            bar.set_description(what)
            bar.update(1)

        result = run_plan(plan, tick)
    paths = write_results(result, out)
    if args.docs:
        from gearcam.bench.publish import publish

        publish(result, [p for p in paths.values() if p.suffix == ".png"])
    print(paths["markdown"].read_text())
    print(f"written to {out}: " + ", ".join(p.name for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
