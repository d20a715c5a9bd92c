"""Registrations: a plan bound to a reader's events, its arguments and its counters.

`parse_args` checks `register()`'s keyword arguments the way RedisGears 1.2 does
(same error texts); `dump` gives the RG.DUMPREGISTRATIONS entry of one registration.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gearcam.runtime.gears.builder import GearsError, Plan
from gearcam.runtime.gears.readers import KEY_TYPES
from gearcam.runtime.resp import Double

__all__ = ["MODES", "Registration", "parse_args"]

MODES = ("async", "async_local", "sync")
_POLICIES = ("continue", "abort", "retry")
_SINGULAR = {"eventTypes": "event type", "keyTypes": "key type", "commands": "command type"}


def _strings(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise GearsError(f"given {what} is not iterable")
    items = list(value)
    if not all(isinstance(v, str) for v in items):
        raise GearsError(f"given {_SINGULAR.get(what, what)} is not string")
    return items


def _keys_args(args: dict[str, Any]) -> dict[str, Any]:
    commands = _strings(args.get("commands"), "commands")
    event_types = _strings(args.get("eventTypes"), "eventTypes")
    key_types = _strings(args.get("keyTypes"), "keyTypes")
    for kind in key_types or []:
        if kind not in KEY_TYPES:
            raise GearsError("unknown key type")
    read_value = args.get("readValue", True)
    if not isinstance(read_value, bool):
        raise GearsError("readValue is not boolean")
    return {"prefix": args["prefix"], "eventTypes": event_types, "keyTypes": key_types, "readValue": read_value,
            "commands": [c.lower() for c in commands] if commands else None}  # fmt: skip


def _number(args: dict[str, Any], name: str, default: int, error: str) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GearsError(error)
    return int(value)


def _stream_args(args: dict[str, Any], mode: str) -> dict[str, Any]:
    batch = _number(args, "batch", 1, "batch argument must be a number")
    duration = _number(args, "duration", 0, "duration argument must be a number")
    policy = args.get("onFailedPolicy", "continue")
    if not isinstance(policy, str):
        raise GearsError("onFailedPolicy must be a string (Continue/Abort/Retry)")
    if policy.lower() not in _POLICIES:
        raise GearsError("onFailedPolicy must be Continue/Abort/Retry")
    if mode == "sync" and policy.lower() != "continue":
        raise GearsError("ExecutionMode sync can only be combined with OnFailedPolicy Continue")
    retry = _number(args, "onFailedRetryInterval", 1, "retryInterval argument must be a number")
    trim = args.get("trimStream", True)
    if not isinstance(trim, bool):
        raise GearsError("pyTrimmStream argument must be a boolean")
    if batch < 1:
        raise GearsError("batch argument must be a number greater than 0")
    return {"prefix": args["prefix"], "batch": batch, "duration": duration, "onFailedPolicy": policy.lower(),
            "onFailedRetryInterval": max(retry, 0), "trimStream": trim}  # fmt: skip


def _command_args(args: dict[str, Any]) -> dict[str, Any]:
    hook, trigger = args.get("hook"), args.get("trigger")
    if hook is not None:
        if not isinstance(hook, str):
            raise GearsError("hook argument is not string")
        prefix = args.get("keyprefix")
        if prefix is not None and not isinstance(prefix, str):
            raise GearsError("keyprefix argument is not string")
        # Checked against the backing Redis' command table when the registration is activated.
        return {"trigger": None, "hook": hook.lower(), "keyprefix": prefix, "inorder": bool(args.get("inorder", False))}
    if trigger is None:
        raise GearsError("no trigger or hook argument was given")
    if not isinstance(trigger, str):
        raise GearsError("trigger argument is not string")
    return {"trigger": trigger, "inorder": bool(args.get("inorder", False))}


def parse_args(reader: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(mode, reader arguments) of a register() call, or GearsError naming the bad argument."""
    mode = kwargs.get("mode", "async")
    if not isinstance(mode, str):
        raise GearsError("execution mode must be a string")
    if mode not in MODES:
        raise GearsError("unknown execution mode")
    if not isinstance(kwargs.get("prefix"), str):
        raise GearsError("regex argument must be a string")
    for callback in ("onRegistered", "onUnregistered"):
        if kwargs.get(callback) is not None and not callable(kwargs[callback]):
            raise GearsError(f"{callback[0].upper()}{callback[1:]} argument must be a function")
    if reader in ("KeysReader", "KeysOnlyReader"):
        return mode, _keys_args(kwargs)
    if reader == "StreamReader":
        return mode, _stream_args(kwargs, mode)
    if reader == "CommandReader":
        return mode, _command_args(kwargs)
    raise GearsError("given reader does not exists or does not support register")


@dataclass(eq=False)
class Registration:
    id: str
    plan: Plan
    mode: str
    args: dict[str, Any]
    session_id: str
    requirements: list[str] = field(default_factory=list)
    # Which StreamReader this is within its session: names its consumer group, so an
    # UPGRADE of the session (and a restart) continues where the previous code stopped.
    ordinal: int = 0
    owner: str = "default"  # the ACL user whose worker runs it
    ref: tuple[str, int] = ("", 0)  # (script token, index of the register() call) in that worker
    callbacks: dict[str, bool] = field(default_factory=dict)  # onRegistered / onUnregistered given
    num_triggered: int = 0
    num_success: int = 0
    num_failures: int = 0
    num_aborted: int = 0
    last_error: str | None = None
    last_run_ms: int = 0
    total_run_ms: int = 0
    last_lag_ms: int = 0
    total_lag_ms: int = 0
    status: str = "OK"  # StreamReader: OK, WAITING_FOR_RETRY_ON_FAILURE, PAUSED, ABORTED
    active: bool = True
    executions: deque[str] = field(default_factory=deque)
    # CommandReader(inorder=True): its executions run one at a time, in the order they were triggered.
    order: asyncio.Lock | None = field(default=None, repr=False, compare=False)
    # KeysReader: the last key event's turn to trigger (GearsService._on_key), so executions come in event order.
    event_turn: asyncio.Future[None] | None = field(default=None, repr=False, compare=False)

    @property
    def reader(self) -> str:
        return self.plan.reader

    def record_run(self, duration_ms: int, errors: list[str], aborted: bool = False) -> None:
        self.last_run_ms = duration_ms
        self.total_run_ms += duration_ms
        if aborted:
            self.num_aborted += 1
            if errors:
                self.last_error = errors[0]
        elif errors:
            self.num_failures += 1
            self.last_error = errors[0]
        else:
            self.num_success += 1
            self.last_error = None  # as each RedisGears reader does: lastError is the error of the last run

    def uncount_abort(self) -> None:
        """An execution counted as aborted turned out to have started: it counts once it ends."""
        self.num_aborted = max(0, self.num_aborted - 1)

    def clear_stats(self) -> None:
        """RG.CLEARREGISTRATIONSSTATS: the counters start again from zero."""
        self.num_triggered = self.num_success = self.num_failures = self.num_aborted = 0
        self.last_run_ms = self.total_run_ms = self.last_lag_ms = self.total_lag_ms = 0
        self.last_error = None

    def _finished_runs(self) -> int:
        return self.num_success + self.num_failures + self.num_aborted

    def _data(self) -> list[Any]:
        runs = self._finished_runs()
        data: list[Any] = [
            "mode", self.mode, "numTriggered", self.num_triggered, "numSuccess", self.num_success,
            "numFailures", self.num_failures, "numAborted", self.num_aborted,
            "lastRunDurationMS", self.last_run_ms, "totalRunDurationMS", self.total_run_ms,
            "avgRunDurationMS", Double(self.total_run_ms / runs if runs else 0.0),
        ]  # fmt: skip
        a = self.args
        if self.reader == "StreamReader":
            data += ["lastEstimatedLagMS", self.last_lag_ms,
                     "avgEstimatedLagMS", Double(self.total_lag_ms / runs if runs else 0.0)]  # fmt: skip
            data += ["lastError", self.last_error, "args", [
                "batchSize", a["batch"], "durationMS", a["duration"], "stream", a["prefix"],
                "trimStream", int(a["trimStream"]), "onFailedPolicy", a["onFailedPolicy"],
                "retryInterval", a["onFailedRetryInterval"],
            ], "status", self.status]  # fmt: skip
        elif self.reader == "CommandReader" and a.get("hook"):
            data += ["lastError", self.last_error, "args", ["hook", a["hook"], "keyprefix", a["keyprefix"],
                                                           "inorder", int(a["inorder"])]]  # fmt: skip
        elif self.reader == "CommandReader":
            data += ["lastError", self.last_error, "args", ["trigger", a["trigger"], "inorder", int(a["inorder"])]]
        else:
            data += ["lastError", self.last_error, "args", [
                "regex", a["prefix"], "eventTypes", a["eventTypes"], "keyTypes", a["keyTypes"],
                "hookCommands", a.get("commands"),
            ]]  # fmt: skip
        return data

    def private_data(self) -> str:
        deps = ", ".join(f"'{r}'" for r in self.requirements)
        return f"{{'sessionId':'{self.session_id}', 'depsList':[{deps}]}}"

    def dump(self, with_pd: bool = True) -> list[Any]:
        out: list[Any] = [
            "id",
            self.id,
            "reader",
            self.reader,
            "desc",
            self.plan.desc,
            "RegistrationData",
            self._data(),
        ]
        if with_pd:
            out += ["PD", self.private_data()]
        return out + ["ExecutionThreadPool", "DefaultPool"]
