"""The commands the runtime owns; everything else is relayed to the backing Redis."""

from __future__ import annotations

from gearcam.runtime.commands import ai_admin, ai_dag, ai_model, ai_script, ai_tensor, core, restore, rg, rg_admin
from gearcam.runtime.commands.base import Command, Context, Handler

__all__ = ["Command", "Context", "Handler", "ai_commands", "core_commands", "rg_commands"]


def ai_commands() -> dict[str, Command]:
    """RedisAI 1.2's command surface."""
    _refused = ai_model.ai_execution_in_transaction
    table = [
        Command("AI.TENSORSET", ai_tensor.ai_tensorset, start=ai_tensor.start_tensorset),
        Command("AI.TENSORGET", ai_tensor.ai_tensorget),
        Command("AI.MODELSTORE", ai_model.ai_modelstore),
        Command("AI.MODELSET", ai_model.ai_modelset),
        Command("AI.MODELGET", ai_model.ai_modelget),
        Command("AI.MODELDEL", ai_model.ai_modeldel),
        Command("AI.MODELEXECUTE", ai_model.ai_modelexecute, execution=True, in_transaction=_refused),
        Command("AI.MODELRUN", ai_model.ai_modelrun, execution=True, in_transaction=_refused),
        Command("AI._MODELSCAN", ai_model.ai_modelscan),
        Command("AI.SCRIPTSTORE", ai_script.ai_scriptstore),
        Command("AI.SCRIPTSET", ai_script.ai_scriptset),
        Command("AI.SCRIPTGET", ai_script.ai_scriptget),
        Command("AI.SCRIPTDEL", ai_script.ai_scriptdel),
        Command("AI.SCRIPTEXECUTE", ai_script.ai_scriptexecute, execution=True, in_transaction=_refused),
        Command("AI.SCRIPTRUN", ai_script.ai_scriptrun, execution=True, in_transaction=_refused),
        Command("AI._SCRIPTSCAN", ai_script.ai_scriptscan),
        Command("AI.DAGEXECUTE", ai_dag.ai_dagexecute, execution=True, in_transaction=_refused),
        Command("AI.DAGEXECUTE_RO", ai_dag.ai_dagexecute_ro, execution=True, in_transaction=_refused),
        Command("AI.DAGRUN", ai_dag.ai_dagrun, execution=True, in_transaction=_refused),
        Command("AI.DAGRUN_RO", ai_dag.ai_dagrun_ro, execution=True, in_transaction=_refused),
        Command("AI.INFO", ai_admin.ai_info),
        Command("AI.CONFIG", ai_admin.ai_config),
    ]
    return {c.name: c for c in table}


def rg_commands() -> dict[str, Command]:
    """RedisGears 1.2's command surface."""
    table = [
        Command("RG.PYEXECUTE", rg.rg_pyexecute, in_transaction=rg.rg_pyexecute_in_transaction),
        Command("RG.TRIGGER", rg.rg_trigger, in_transaction=rg.rg_trigger_in_transaction),
        Command("RG.UNREGISTER", rg.rg_unregister),
        Command("RG.DUMPREGISTRATIONS", rg.rg_dumpregistrations),
        Command("RG.CLEARREGISTRATIONSSTATS", rg.rg_clearregistrationsstats),
        Command("RG.PAUSEREGISTRATIONS", rg.rg_pauseregistrations),
        Command("RG.UNPAUSEREGISTRATIONS", rg.rg_unpauseregistrations),
        Command("RG.DUMPEXECUTIONS", rg_admin.rg_dumpexecutions),
        Command("RG.GETEXECUTION", rg_admin.rg_getexecution),
        Command("RG.GETRESULTS", rg_admin.rg_getresults),
        Command("RG.GETRESULTSBLOCKING", rg_admin.rg_getresultsblocking),
        Command("RG.DROPEXECUTION", rg_admin.rg_dropexecution),
        Command("RG.ABORTEXECUTION", rg_admin.rg_abortexecution),
        Command("RG.PYDUMPREQS", rg_admin.rg_pydumpreqs),
        Command("RG.PYEXPORTREQ", rg_admin.rg_pyexportreq),
        Command("RG.PYIMPORTREQ", rg_admin.rg_pyimportreq),
        Command("RG.PYDUMPSESSIONS", rg_admin.rg_pydumpsessions),
        Command("RG.PYSTATS", rg_admin.rg_pystats),
        Command("RG.PYPROFILE", rg_admin.rg_pyprofile),
        Command("RG.CONFIGGET", rg_admin.rg_configget),
        Command("RG.CONFIGSET", rg_admin.rg_configset),
        Command("RG.INFOCLUSTER", rg_admin.rg_infocluster),
        Command("RG.REFRESHCLUSTER", rg_admin.rg_refreshcluster),
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
    )
    return {c.name: c for c in commands}
