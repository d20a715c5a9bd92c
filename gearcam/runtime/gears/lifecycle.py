"""RG.PYEXECUTE's session logic (new, UPGRADE, REPLACE_WITH), unregistering, and restoring at start.

A script is loaded first, with its registrations kept pending; only when it loaded
without error are the old session's registrations removed and the new ones
activated, so a failed upgrade leaves the running code untouched.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gearcam.runtime.gears import replies
from gearcam.runtime.gears.builder import GearsError, Plan
from gearcam.runtime.gears.executions import Execution
from gearcam.runtime.gears.readers import event_matches
from gearcam.runtime.gears.registrations import Registration
from gearcam.runtime.gears.service import GearsService
from gearcam.runtime.gears.sessions import Session, delete_session, load_sessions, save_session

__all__ = ["PyExecute", "follow", "install_requirements", "pyexecute", "restore", "unregister"]

logger = logging.getLogger(__name__)


@dataclass
class PyExecute:
    code: str
    session_id: str | None = None
    description: str | None = None
    upgrade: bool = False
    replace_with: str | None = None
    unblocking: bool = False
    force_reinstall: bool = False
    requirements: tuple[str, ...] = ()
    owner: str = "default"


def _build(service: GearsService, session: Session, loaded: dict[str, Any]) -> list[Registration]:
    regs = []
    ordinal = 0
    for i, pending in enumerate(loaded["registrations"]):
        regs.append(Registration(
            pending["id"] or service.ids.next(), Plan(pending["reader"], None, pending["desc"]), pending["mode"],
            pending["args"], session.id, list(session.requirements), ordinal=ordinal, owner=session.owner,
            ref=(session.token, i),
            callbacks={"onRegistered": pending["on_registered"], "onUnregistered": pending["on_unregistered"]},
        ))  # fmt: skip
        if pending["reader"] == "StreamReader":
            ordinal += 1
    return regs


async def _activate(service: GearsService, regs: list[Registration]) -> None:
    with service.lock:
        for reg in regs:
            service.registrations[reg.id] = reg
    for reg in regs:
        service.activate_hook(reg)
    service.count_sync()
    if service.events is not None:
        # A stream written after the reply sends its XADDs as events, which RedisGears counts and times
        # (a batch waits for `batch` or `duration`); found by a scan instead, its entries would run at once.
        await service.events.streams_current(service.settings.connect_timeout)
    for reg in regs:
        await service.call(service.callback(reg, "onRegistered"))
        if reg.reader == "StreamReader":
            await service.call(service.in_pool(service.scan_streams, reg))


async def _deactivate(service: GearsService, reg: Registration, wait: bool = True) -> None:
    """`wait`: until its stream readers' batches in flight end (an UPGRADE, so the new code does not read
    them again); RG.UNREGISTER returns at once, as in RedisGears, and they end on their own."""
    reg.active = False
    service.deactivate_hook(reg)
    with service.lock:
        service.registrations.pop(reg.id, None)
    service.count_sync()
    await service.stop_workers(reg, wait)
    await service.call(service.callback(reg, "onUnregistered"))


def _check_triggers(service: GearsService, regs: list[Registration], replacing: Session | None) -> None:
    """RedisGears' rule: one CommandReader per trigger, in a session and across sessions."""
    mine = [r.args["trigger"] for r in regs if r.reader == "CommandReader" and r.args["trigger"] is not None]
    if len(mine) != len(set(mine)):
        raise GearsError("trigger already registered in this session")
    leaving = set(replacing.registrations) if replacing is not None else set()
    with service.lock:
        taken = {r.args["trigger"] for r in service.registrations.values()
                 if r.reader == "CommandReader" and r.id not in leaving}  # fmt: skip
        hooked = {r.args.get("hook"): r for r in service.registrations.values()
                  if r.reader == "CommandReader" and r.args.get("hook") and r.id not in leaving}  # fmt: skip
    if taken & set(mine):
        raise GearsError("trigger already registered")
    seen: dict[str, Registration] = {}
    for reg in (r for r in regs if r.reader == "CommandReader" and r.args.get("hook")):
        under = seen.get(reg.args["hook"])
        if under is not None and under.mode != "sync":
            raise GearsError("Can not override a none sync registration which already created on this session")
        under = hooked.get(reg.args["hook"])
        if under is not None and under.mode != "sync":
            raise GearsError("Can not override a none sync registration")
        seen[reg.args["hook"]] = reg


async def install_requirements(service: GearsService, owner: str, requirements: list[str], force: bool) -> None:
    """Install what is missing into the Gears virtualenv; after a forced reinstall, the owner's worker restarts."""
    assert service.env is not None
    installed = await service.env.install(requirements, force)
    if installed and force:
        worker = service.processes.get(owner)
        if worker is not None:
            worker.kill("FORCE_REINSTALL_REQUIREMENTS: its modules are loaded again")
            await service.call(worker.exited.wait())


async def pyexecute(service: GearsService, request: PyExecute) -> Execution | str:
    """Load and start a script; returns its run() execution, or 'OK' for a script without run()."""
    session_id = request.session_id or secrets.token_hex(20)
    upgrade = request.upgrade
    old = service.sessions.get(session_id)
    if request.replace_with is not None:
        if old is not None:
            raise GearsError(replies.replace_existing(session_id, request.replace_with))
        old = service.sessions.get(request.replace_with)
        if old is None:
            raise GearsError(replies.replace_missing(request.replace_with))
        upgrade = True
    if old is not None and not upgrade:
        raise GearsError(replies.ALREADY_EXISTS.format(session_id))
    # As RedisGears: installation is needed for a requirement no session of this runtime asked for yet.
    needed = request.force_reinstall or not set(request.requirements) <= service.requirements_seen
    await install_requirements(service, request.owner, list(request.requirements), request.force_reinstall)
    service.requirements_seen.update(request.requirements)
    loaded = False
    try:
        result = await _load_session(service, request, session_id, old, needed)
        loaded = True
        return result
    finally:
        assert service.env is not None
        await service.env.settle(list(request.requirements), loaded)


async def _load_session(
    service: GearsService, request: PyExecute, session_id: str, old: Session | None, needed: bool
) -> Execution | str:
    """The script's top level in its owner's worker, then its registrations replace the old session's."""
    token = secrets.token_hex(8)
    loaded = await service.call(service.load(request.owner, token, request.code))
    if loaded.get("error") is not None:
        raise GearsError(loaded["error"])
    session = Session(
        session_id,
        request.code,
        request.description,
        list(request.requirements),
        owner=request.owner,
        token=token,
        installation_needed=needed,
    )
    regs = _build(service, session, loaded)
    try:
        await _check(service, regs, old)
    except GearsError:
        await service.call(service.forget(request.owner, token))
        raise
    if old is not None:
        # With the same ID, the same ordinals continue the old StreamReaders' consumer groups.
        for reg_id in list(old.registrations):
            previous = service.registrations.get(reg_id)
            if previous is not None:
                await _deactivate(service, previous)
        service.sessions.pop(old.id, None)
        await service.call(service.forget(old.owner, old.token))
        await service.call(service.in_pool(delete_session, service.links, old.id))
    session.registrations = [r.id for r in regs]
    if regs:
        service.sessions[session.id] = session
        await service.call(service.in_pool(save_session, service.links, session))
        await _activate(service, regs)
    if loaded["runs"]:
        return service.start_run(request.owner, token, forget=not regs)
    if not regs:
        await service.call(service.forget(request.owner, token))
    return "OK"


async def _check(service: GearsService, regs: list[Registration], replacing: Session | None) -> None:
    """RedisGears' checks of new registrations: one CommandReader per trigger, hooks the command table allows."""
    _check_triggers(service, regs, replacing)
    await _check_hooks(service, regs)


async def _check_hooks(service: GearsService, regs: list[Registration]) -> None:
    """Hooks the backing Redis' command table allows (checked again when a stored session is restored), and
    the key misses a KeysReader fires on heard."""
    for reg in regs:
        if reg.reader == "CommandReader" and reg.args.get("hook"):
            await service.call(service.in_pool(service.check_hook, reg))
        elif reg.reader != "CommandReader" and reg.args.get("commands"):
            await service.call(service.in_pool(service.check_key_hook, reg))
        elif reg.reader in ("KeysReader", "KeysOnlyReader") and event_matches(reg.args["eventTypes"], "keymiss"):
            await service.call(service.in_pool(service.hear_key_misses, f"KeysReader registration {reg.id}"))


async def register_from_step(service: GearsService, token: str, index: int, pending: dict[str, Any]) -> str:
    """register() called by a step (RedisGears allows it): the registration joins the running session.

    It is stored with the session but, made by no script top level, not made again when the runtime
    restarts (docs/gears.md).
    """
    session = next((s for s in list(service.sessions.values()) if s.token == token), None)
    if session is None:
        raise GearsError(
            "register() from a step needs a session that registered something when RG.PYEXECUTE loaded it; "
            "register at the script's top level, or give it a registration there"
        )
    ordinal = sum(
        1 for r in session.registrations
        if (known := service.registrations.get(r)) is not None and known.reader == "StreamReader"
    )  # fmt: skip
    reg = Registration(
        service.ids.next(), Plan(pending["reader"], None, pending["desc"]), pending["mode"], pending["args"],
        session.id, list(session.requirements), ordinal=ordinal, owner=session.owner, ref=(token, index),
        callbacks={"onRegistered": pending["on_registered"], "onUnregistered": pending["on_unregistered"]},
    )  # fmt: skip
    await _check(service, [reg], None)
    session.registrations.append(reg.id)
    await service.call(service.in_pool(save_session, service.links, session))
    await _activate(service, [reg])
    return reg.id


async def unregister(service: GearsService, reg_id: str, abort_pending: bool = False) -> None:
    """RG.UNREGISTER: the registration stops and its executions go with it, as on RedisGears.

    Finished executions are dropped now, running ones once they end; with `abort_pending`
    (`ABORTPENDING`) the ones still queued (`created`) are aborted and dropped too.
    """
    reg = service.registrations.get(reg_id)
    if reg is None:
        raise GearsError(replies.NOT_REGISTERED)
    await _deactivate(service, reg, wait=False)

    await service.call(_on_gears_loop(service.drop_created, reg))
    if abort_pending:
        for execution in [service.executions.get(i) for i in list(reg.executions)]:
            if execution is not None and execution.status == "created":
                await service.call(service.abort(execution))

    await service.call(_on_gears_loop(service.trim, reg))  # where executions are added to it
    session = service.sessions.get(reg.session_id)
    if session is not None:
        session.registrations = [r for r in session.registrations if r != reg_id]
        if session.registrations:
            await service.call(service.in_pool(save_session, service.links, session))
        else:
            service.sessions.pop(session.id, None)
            await service.call(service.forget(session.owner, session.token))
            await service.call(service.in_pool(delete_session, service.links, session.id))


async def restore(service: GearsService) -> None:
    """Load the sessions stored in the backing Redis again (their run() calls are skipped)."""
    for session in await service.call(service.in_pool(load_sessions, service.links)):
        await _restore_session(service, session)


async def _restore_session(service: GearsService, session: Session) -> None:
    service.requirements_seen.update(session.requirements)
    for reg_id in session.registrations:
        service.ids.skip_past(reg_id)
    try:
        await install_requirements(service, session.owner, session.requirements, False)
        session.token = secrets.token_hex(8)
        loaded = await service.call(service.load(session.owner, session.token, session.code, session.registrations))
    except GearsError as exc:
        logger.error("stored Gears session %s not restored: %s", session.id, exc)
        return
    if loaded.get("error") is not None:
        logger.error("stored Gears session %s not restored; its script failed: %s", session.id, loaded["error"])
        return
    regs = _build(service, session, loaded)
    try:
        await _check_hooks(service, regs)
    except GearsError as exc:
        logger.error("stored Gears session %s not restored: %s", session.id, exc)
        return
    session.registrations = [r.id for r in regs]
    service.sessions[session.id] = session
    await _activate(service, regs)
    logger.info("restored Gears session %s with %d registration(s)", session.id, len(regs))


async def follow(service: GearsService) -> None:
    """A replica's runtime: take up the sessions its Redis received from the master's, drop the ones removed.

    RedisGears replicates registrations to replicas (which list them and run nothing until
    promoted); here they travel in the replicated sessions hash, and the replica's runtime
    follows it on its key events. Nothing is written: a replica refuses writes.
    """
    stored = {s.id: s for s in await service.call(service.in_pool(load_sessions, service.links))}
    for session in list(service.sessions.values()):
        kept = stored.get(session.id)
        if kept is None or kept.stored() != session.stored():
            for reg_id in session.registrations:
                reg = service.registrations.get(reg_id)
                if reg is not None:
                    await _deactivate(service, reg, wait=False)
                    await service.call(_on_gears_loop(service.trim, reg))  # where executions are added to it
            service.sessions.pop(session.id, None)
            await service.call(service.forget(session.owner, session.token))
            logger.info("Gears session %s left with the master's copy", session.id)
    for session_id, session in stored.items():
        if session_id not in service.sessions:
            await _restore_session(service, session)


async def _on_gears_loop(fn: Callable[[Registration], None], reg: Registration) -> None:
    """`fn(reg)` as a coroutine for service.call, which runs it on the Gears loop."""
    fn(reg)
