"""`invoke down`: ask the running `invoke up` to stop (SIGTERM to its supervisor) and wait for it.

When the supervisor itself is gone (killed with SIGKILL), its services are stopped directly
from the pids recorded in the state file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from gearcam.errors import OperatorError
from gearcam.up.state import RunState, alive, read_state, remove_state

__all__ = ["stop_running"]


def _wait_gone(check: Callable[[], bool], wait: float) -> bool:
    deadline = time.monotonic() + wait
    while check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_running(run_dir: Path, wait: float, say: Callable[[str], None], dry: bool = False) -> RunState | None:
    """Stop what `invoke up` started; None when nothing runs. OperatorError when it did not stop in time."""
    state = read_state(run_dir)
    if state is None:
        return None
    if state.supervisor_alive():
        targets = {"invoke up": state.pid}
    else:
        targets = state.live_services()
        say(f"the `invoke up` (pid {state.pid}) is gone; stopping its services directly: {', '.join(targets)}")
    if dry:
        say(f"kill -TERM {' '.join(str(pid) for pid in targets.values())}")
        return state
    for pid in targets.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    starts = {"invoke up": state.started, **{name: v[1] for name, v in state.services.items()}}
    for name, pid in targets.items():
        if not _wait_gone(functools.partial(alive, pid, starts[name]), wait):
            raise OperatorError(f"{name} (pid {pid}) did not stop within {wait:g}s; "
                                f"`invoke down --wait 60`, or `kill -9 {pid}`")  # fmt: skip
    remove_state(run_dir)
    return state
