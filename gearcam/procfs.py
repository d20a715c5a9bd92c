"""What Linux' /proc says of a process, read in one place: the stat line's fields.

The command name in /proc/<pid>/stat is in parentheses and may itself hold spaces and
parentheses, so the fields are split after its last ')'. Used by the benchmark (CPU time,
page faults), `invoke up`'s state (a pid's start time) and the embedded Redis (a server's
parent, to tell one a killed owner left behind).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["stat_fields"]


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name, from `state` (field 3 of proc(5)) on; None where
    the process is gone or there is no /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
