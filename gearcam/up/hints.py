"""What `invoke up` says when a service dies: its exit status, the last lines of its log, and the likely fix.

The fix comes from the log (a known message) or else from the service; gearcam's own
errors already end in their fix ("...; pass --wait-for-camera"), so the last ``error:``
line is quoted as it is.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

__all__ = ["death_report", "exit_status", "likely_fix", "tail"]

_KNOWN: tuple[tuple[str, str], ...] = (
    (r"[Aa]ddress already in use|Errno 98", "a port it needs is taken; `ss -ltnp` shows by what"),
    (r"camera source .* is none of", "pass an existing file, a device (/dev/videoN), csi or a URL to --source"),
    (r"could not be opened|gave no frame",
     "check that the camera answers (for a URL: `ffprobe URL`), or run `invoke up --wait-for-camera` "
     "to keep retrying until it does"),
    (r"needs OpenCV|No module named", "install the missing package (`scripts/bootstrap`)"),
    (r"redis-server.*(not found|no such)|cannot find redis-server", "install redis-server (`scripts/bootstrap`)"),
    (r"MemoryError|Cannot allocate memory", "the machine ran out of memory; stop something, or use a smaller model"),
)  # fmt: skip
_BY_SERVICE = {
    "runtime": "see the runtime's log above; a second gearcam on the same data folder? (`invoke down`)",
    "loader": "the loader's message above names the fix; `invoke up` again after it",
    "camera": "check --source, or run `invoke up --wait-for-camera` to keep retrying a camera that is not there yet",
    "web-all": "see the page's log above; is its port free?",
    "web-cats": "see the page's log above; is its port free?",
    "mosquitto": "is its port (events.broker_port) taken, by Debian's mosquitto service? "
    "(`sudo systemctl disable --now mosquitto`, or GEARCAM_EVENTS__BROKER_PORT=<free port>)",
    "notify": "see the notifier's log above; GEARCAM_EVENTS__MQTT_URL names another broker",
    "record": "see the recorder's log above; GEARCAM_RECORD__DATA_DIR names a writable folder for the clips",
}


def tail(path: Path, lines: int = 12) -> list[str]:
    """The last ``lines`` lines of a log (empty when there is none)."""
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - 16384))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def exit_status(code: int) -> str:
    """'status 1', or 'signal SIGKILL' for a process that was killed."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def likely_fix(service: str, log_lines: list[str]) -> str:
    text = "\n".join(log_lines)
    for pattern, fix in _KNOWN:
        if re.search(pattern, text):
            return fix
    if any(re.search(r"\bKilled\b|SIGKILL", line) for line in log_lines):
        return "it was killed (out of memory?); `dmesg | tail` says by what"
    return _BY_SERVICE.get(service, "see its log")


def death_report(service: str, code: int, log: Path, lines: int = 12) -> str:
    """The block `invoke up` prints for a service that exited on its own."""
    last = tail(log, lines)
    body = "\n".join(f"  | {line}" for line in last) or "  | (its log is empty)"
    return (f"{service} exited with {exit_status(code)}; the last lines of {log}:\n{body}\n"
            f"likely fix: {likely_fix(service, last)}")  # fmt: skip
