"""`invoke up` and `invoke down`: the plan (plain data), the supervisor that runs it, the state file, the hints."""

from __future__ import annotations

from gearcam.up.down import stop_running
from gearcam.up.hints import death_report, likely_fix
from gearcam.up.plan import Service, UpPlan, check_ports, check_source, port_free, up_plan
from gearcam.up.state import RunState, read_state
from gearcam.up.supervisor import Supervisor

__all__ = [
    "RunState",
    "Service",
    "Supervisor",
    "UpPlan",
    "check_ports",
    "check_source",
    "death_report",
    "likely_fix",
    "port_free",
    "read_state",
    "stop_running",
    "up_plan",
]
