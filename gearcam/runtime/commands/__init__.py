"""The commands the runtime owns; everything else is relayed to the backing Redis."""

from __future__ import annotations

from collections.abc import Callable

from gearcam.runtime.commands import (
    ai_admin,
    ai_dag,
    ai_model,
    ai_script,
    ai_tensor,
    command_info,
    core,
    restore,
    rg,
    rg_admin,
)
from gearcam.runtime.commands.base import Command, Context, Handler, Registration

__all__ = ["Command", "Context", "Handler", "ai_commands", "core_commands", "rg_commands"]


def ai_commands() -> dict[str, Command]:
    """RedisAI 1.2's command surface, registered as RedisAI 1.2.7 registers it."""
    _refused = ai_model.ai_execution_in_transaction
    write, read = Registration("write deny-oom", 1, 1, 1), Registration("readonly", 1, 1, 1)
    delete, scan = Registration("write", 1, 1, 1), Registration("readonly")

    def run(flags: str, first: int, keys: Callable[[list[bytes]], list[int]]) -> Registration:
        return Registration(flags, first, first, 1, keys)

    modelexecute = run("write deny-oom", 4, command_info.modelexecute_keys)
    modelrun = run("write deny-oom", 3, command_info.modelrun_keys)
    scriptexecute = run("write deny-oom", 5, command_info.scriptexecute_keys)
    scriptrun = run("write deny-oom", 4, command_info.scriptrun_keys)
    dag, dag_ro = run("write deny-oom", 3, command_info.dag_keys), run("readonly", 3, command_info.dag_keys)
    table = [
        Command("AI.TENSORSET", ai_tensor.ai_tensorset, start=ai_tensor.start_tensorset, registration=write),
        Command("AI.TENSORGET", ai_tensor.ai_tensorget, registration=read),
        Command("AI.MODELSTORE", ai_model.ai_modelstore, registration=write),
        Command("AI.MODELSET", ai_model.ai_modelset, registration=write),
        Command("AI.MODELGET", ai_model.ai_modelget, registration=read),
        Command("AI.MODELDEL", ai_model.ai_modeldel, registration=delete),
        Command("AI.MODELEXECUTE", ai_model.ai_modelexecute, execution=True, in_transaction=_refused,
                registration=modelexecute),
        Command("AI.MODELRUN", ai_model.ai_modelrun, execution=True, in_transaction=_refused, registration=modelrun),
        Command("AI._MODELSCAN", ai_model.ai_modelscan, registration=scan),
        Command("AI.SCRIPTSTORE", ai_script.ai_scriptstore, registration=write),
        Command("AI.SCRIPTSET", ai_script.ai_scriptset, registration=write),
        Command("AI.SCRIPTGET", ai_script.ai_scriptget, registration=read),
        Command("AI.SCRIPTDEL", ai_script.ai_scriptdel, registration=delete),
        Command("AI.SCRIPTEXECUTE", ai_script.ai_scriptexecute, execution=True, in_transaction=_refused,
                registration=scriptexecute),
        Command("AI.SCRIPTRUN", ai_script.ai_scriptrun, execution=True, in_transaction=_refused,
                registration=scriptrun),
        Command("AI._SCRIPTSCAN", ai_script.ai_scriptscan, registration=scan),
        Command("AI.DAGEXECUTE", ai_dag.ai_dagexecute, execution=True, in_transaction=_refused, registration=dag),
        Command("AI.DAGEXECUTE_RO", ai_dag.ai_dagexecute_ro, execution=True, in_transaction=_refused,
                registration=dag_ro),
        Command("AI.DAGRUN", ai_dag.ai_dagrun, execution=True, in_transaction=_refused, registration=dag),
        Command("AI.DAGRUN_RO", ai_dag.ai_dagrun_ro, execution=True, in_transaction=_refused, registration=dag_ro),
        Command("AI.INFO", ai_admin.ai_info, registration=read),
        Command("AI.CONFIG", ai_admin.ai_config, registration=Registration("write")),
    ]  # fmt: skip
    return {c.name: c for c in table}


def rg_commands() -> dict[str, Command]:
    """RedisGears 1.2's command surface: RedisGears registers each `readonly`, without keys."""
    _gears = Registration()
    _trigger = Registration(keys=lambda _: [])  # RG.TRIGGER reports keys itself, only inside a command hook
    table = [
        Command("RG.PYEXECUTE", rg.rg_pyexecute, in_transaction=rg.rg_pyexecute_in_transaction, registration=_gears),
        Command("RG.TRIGGER", rg.rg_trigger, in_transaction=rg.rg_trigger_in_transaction, registration=_trigger),
        Command("RG.UNREGISTER", rg.rg_unregister, registration=_gears),
        Command("RG.DUMPREGISTRATIONS", rg.rg_dumpregistrations, registration=_gears),
        Command("RG.CLEARREGISTRATIONSSTATS", rg.rg_clearregistrationsstats, registration=_gears),
        Command("RG.PAUSEREGISTRATIONS", rg.rg_pauseregistrations, registration=_gears),
        Command("RG.UNPAUSEREGISTRATIONS", rg.rg_unpauseregistrations, registration=_gears),
        Command("RG.DUMPEXECUTIONS", rg_admin.rg_dumpexecutions, registration=_gears),
        Command("RG.GETEXECUTION", rg_admin.rg_getexecution, registration=_gears),
        Command("RG.GETRESULTS", rg_admin.rg_getresults, registration=_gears),
        Command("RG.GETRESULTSBLOCKING", rg_admin.rg_getresultsblocking, registration=_gears),
        Command("RG.DROPEXECUTION", rg_admin.rg_dropexecution, registration=_gears),
        Command("RG.ABORTEXECUTION", rg_admin.rg_abortexecution, registration=_gears),
        Command("RG.PYDUMPREQS", rg_admin.rg_pydumpreqs, registration=_gears),
        Command("RG.PYEXPORTREQ", rg_admin.rg_pyexportreq, registration=_gears),
        Command("RG.PYIMPORTREQ", rg_admin.rg_pyimportreq, registration=_gears),
        Command("RG.PYDUMPSESSIONS", rg_admin.rg_pydumpsessions, registration=_gears),
        Command("RG.PYSTATS", rg_admin.rg_pystats, registration=_gears),
        Command("RG.PYPROFILE", rg_admin.rg_pyprofile, registration=_gears),
        Command("RG.CONFIGGET", rg_admin.rg_configget, registration=_gears),
        Command("RG.CONFIGSET", rg_admin.rg_configset, registration=_gears),
        Command("RG.INFOCLUSTER", rg_admin.rg_infocluster, registration=_gears),
        Command("RG.REFRESHCLUSTER", rg_admin.rg_refreshcluster, registration=_gears),
    ]
    return {c.name: c for c in table}


def core_commands() -> dict[str, Command]:
    """Redis commands whose replies the runtime amends for the modules it stands in for."""
    commands = (
        Command("TYPE", core.type_, amends=True),
        Command("INFO", core.info, amends=True),
        Command("MODULE", core.module, amends=True),
        Command("DEBUG", core.debug, amends=True),
        Command("SLOWLOG", core.slowlog, amends=True),
        Command("RESTORE", restore.restore, amends=True),
        Command("COMMAND", command_info.command, amends=True),
        Command("SCAN", core.scan, amends=True),
    )
    return {c.name: c for c in commands}
