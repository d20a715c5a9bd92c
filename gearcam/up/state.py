"""The state file of a running `invoke up` (``<state_dir>/run/up.json``): who supervises, what it started, where.

`invoke down` reads it to signal the supervisor (or, when that is gone, the services
themselves); `invoke status`, `invoke cli` and `invoke upload` read it to find the runtime
an `invoke up` started with another port. A pid counts only while the process that has it
started at the recorded time, so a reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gearcam.procfs import stat_fields

__all__ = ["RunState", "alive", "process_start", "read_state", "remove_state", "write_state"]


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc), or None when it does not run."""
    if pid <= 0:
        return None
    fields = stat_fields(pid)
    if fields is None:
        if Path("/proc/self").exists():
            return None
        try:  # no /proc here: only whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (and is not a zombie)."""
    now = process_start(pid)
    if now is None or now != started:
        return False
    fields = stat_fields(pid)
    return fields is None or fields[0] != "Z"


@dataclass
class RunState:
    """What `invoke up` records for the other tasks."""

    pid: int
    started: int
    redis_url: str
    log_dir: str
    pages: list[str] = field(default_factory=list)
    services: dict[str, list[int]] = field(default_factory=dict)  # name -> [pid, start ticks]

    def supervisor_alive(self) -> bool:
        return alive(self.pid, self.started)

    def live_services(self) -> dict[str, int]:
        return {name: pid for name, (pid, started) in self.services.items() if alive(pid, started)}


def _path(run_dir: Path) -> Path:
    return run_dir / "up.json"


def write_state(run_dir: Path, state: RunState) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = _path(run_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(_path(run_dir))


def read_state(run_dir: Path) -> RunState | None:
    """The recorded state, or None when nothing runs (a stale file is removed)."""
    try:
        state = RunState(**json.loads(_path(run_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not state.supervisor_alive() and not state.live_services():
        remove_state(run_dir)
        return None
    return state


def remove_state(run_dir: Path) -> None:
    _path(run_dir).unlink(missing_ok=True)
