"""Benchmarks: ``python -m gearcam.bench [--quick] [--out DIR]`` (``invoke bench``).

Model serving through the runtime per backend and precision, against the engine called
directly and a plain HTTP server on the same engine; a tabular model where per-call
overhead dominates; the whole camera -> Gears -> cats pipeline against decode +
preprocess + inference alone. Every figure is a median of timed windows, and every
comparison a ratio of two figures of the same run (docs/benchmarks.md).
"""

from gearcam.bench.cli import main, run_plan, write_results
from gearcam.bench.plan import PLANS, Plan, plan_named

__all__ = ["PLANS", "Plan", "main", "plan_named", "run_plan", "write_results"]
