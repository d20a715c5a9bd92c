"""Run a list of named shell steps in order; stop at the first that fails and say what to check.

A deploy is a sequence of remote actions where a later step only makes sense if the earlier ones
worked (no point waiting for a rollout whose images never reached the node), so the runner stops
at the first failure and raises `StepFailed` naming the step, its command and the hint for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gearcam.errors import OperatorError

__all__ = ["Step", "StepFailed", "run_steps"]


@dataclass(frozen=True)
class Step:
    """One shell command, what it is for, what to check when it fails, and optionally text its output must show."""

    name: str
    command: str
    hint: str
    expect: str | None = None


class StepFailed(OperatorError):
    """A step exited non-zero (or did not print what it had to); the message names the step and the fix."""

    def __init__(self, step: Step, number: int, total: int, why: str) -> None:
        self.step = step
        self.number = number
        super().__init__(f"step {number}/{total} '{step.name}' failed ({why}): `{step.command}`; check: {step.hint}")


class _Result(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def exited(self) -> int: ...

    @property
    def stdout(self) -> str: ...


class _Runner(Protocol):
    def run(self, command: str, **kwargs: object) -> _Result | None: ...


def run_steps(c: _Runner, steps: list[Step], title: str, dry: bool = False) -> None:
    """Run `steps` through `c.run` (an invoke Context) in order; raise StepFailed at the first failure.

    With `dry` (invoke's run.dry), commands are only printed by invoke, so `expect` is not checked.
    """
    total = len(steps)
    for number, step in enumerate(steps, 1):
        print(f"{title}: [{number}/{total}] {step.name}", flush=True)
        result = c.run(step.command, warn=True, pty=False)
        if result is None or not result.ok:
            exited = "no result" if result is None else f"exit {result.exited}"
            raise StepFailed(step, number, total, exited)
        if step.expect is not None and not dry and step.expect not in (result.stdout or ""):
            raise StepFailed(step, number, total, f"its output does not show {step.expect!r}")
