"""The commands the runtime owns; everything else is relayed to the backing Redis."""

from __future__ import annotations

from collections.abc import Callable

from gearcam.runtime import own_settings
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
    write, read = Registration("write deny-oom", 1, 1, 1), Registration("readonly", 1, 1, 1)
    delete, scan = Registration("write", 1, 1, 1), Registration("readonly")

    def execution(
        name: str, handler: Handler, flags: str, first: int, keys: Callable[[list[bytes]], list[int]]
    ) -> Command:
        """An execution command: refused inside MULTI (RedisAI's error), its keys reported by RedisAI's reporter."""
        registration = Registration(flags, first, first, 1, keys)
        return Command(
            name,
            handler,
            execution=True,
            in_transaction=ai_model.ai_execution_in_transaction,
            registration=registration,
        )

    table = [
        Command(
            "AI.TENSORSET", ai_tensor.ai_tensorset, start=ai_tensor.start_tensorset, queued=ai_tensor.queue_tensorset,
            registration=write,
        ),  # fmt: skip
        Command("AI.TENSORGET", ai_tensor.ai_tensorget, queued=ai_tensor.queue_tensorget, registration=read),
        Command("AI.MODELSTORE", ai_model.ai_modelstore, queued=ai_model.queue_modelstore, registration=write),
        Command("AI.MODELSET", ai_model.ai_modelset, queued=ai_model.queue_modelset, registration=write),
        Command("AI.MODELGET", ai_model.ai_modelget, queued=ai_model.queue_modelget, registration=read),
        Command("AI.MODELDEL", ai_model.ai_modeldel, queued=ai_model.queue_modeldel, registration=delete),
        execution("AI.MODELEXECUTE", ai_model.ai_modelexecute, "write deny-oom", 4, command_info.modelexecute_keys),
        execution("AI.MODELRUN", ai_model.ai_modelrun, "write deny-oom", 3, command_info.modelrun_keys),
        Command("AI._MODELSCAN", ai_model.ai_modelscan, in_transaction=ai_model.ai_modelscan, registration=scan),
        Command("AI.SCRIPTSTORE", ai_script.ai_scriptstore, queued=ai_script.queue_scriptstore, registration=write),
        Command("AI.SCRIPTSET", ai_script.ai_scriptset, queued=ai_script.queue_scriptset, registration=write),
        Command("AI.SCRIPTGET", ai_script.ai_scriptget, queued=ai_script.queue_scriptget, registration=read),
        Command("AI.SCRIPTDEL", ai_script.ai_scriptdel, queued=ai_script.queue_scriptdel, registration=delete),
        execution("AI.SCRIPTEXECUTE", ai_script.ai_scriptexecute, "write deny-oom", 5, command_info.scriptexecute_keys),
        execution("AI.SCRIPTRUN", ai_script.ai_scriptrun, "write deny-oom", 4, command_info.scriptrun_keys),
        Command("AI._SCRIPTSCAN", ai_script.ai_scriptscan, in_transaction=ai_script.ai_scriptscan, registration=scan),
        execution("AI.DAGEXECUTE", ai_dag.ai_dagexecute, "write deny-oom", 3, command_info.dag_keys),
        execution("AI.DAGEXECUTE_RO", ai_dag.ai_dagexecute_ro, "readonly", 3, command_info.dag_keys),
        execution("AI.DAGRUN", ai_dag.ai_dagrun, "write deny-oom", 3, command_info.dag_keys),
        execution("AI.DAGRUN_RO", ai_dag.ai_dagrun_ro, "readonly", 3, command_info.dag_keys),
        # Inside MULTI these run at EXEC, their replies in place: what they read and set is the runtime's.
        Command("AI.INFO", ai_admin.ai_info, in_transaction=ai_admin.ai_info, registration=read),
        Command("AI.CONFIG", ai_admin.ai_config, in_transaction=ai_admin.ai_config, registration=Registration("write")),
    ]  # fmt: skip
    return {c.name: c for c in table}


def rg_commands() -> dict[str, Command]:
    """RedisGears 1.2's command surface: RedisGears registers each `readonly`, without keys."""
    plain = [
        ("RG.UNREGISTER", rg.rg_unregister),
        ("RG.DUMPREGISTRATIONS", rg.rg_dumpregistrations),
        ("RG.CLEARREGISTRATIONSSTATS", rg.rg_clearregistrationsstats),
        ("RG.PAUSEREGISTRATIONS", rg.rg_pauseregistrations),
        ("RG.UNPAUSEREGISTRATIONS", rg.rg_unpauseregistrations),
        ("RG.DUMPEXECUTIONS", rg_admin.rg_dumpexecutions),
        ("RG.GETEXECUTION", rg_admin.rg_getexecution),
        ("RG.GETRESULTS", rg_admin.rg_getresults),
        ("RG.GETRESULTSBLOCKING", rg_admin.rg_getresultsblocking),
        ("RG.DROPEXECUTION", rg_admin.rg_dropexecution),
        ("RG.ABORTEXECUTION", rg_admin.rg_abortexecution),
        ("RG.PYDUMPREQS", rg_admin.rg_pydumpreqs),
        ("RG.PYEXPORTREQ", rg_admin.rg_pyexportreq),
        ("RG.PYIMPORTREQ", rg_admin.rg_pyimportreq),
        ("RG.PYDUMPSESSIONS", rg_admin.rg_pydumpsessions),
        ("RG.PYSTATS", rg_admin.rg_pystats),
        ("RG.PYPROFILE", rg_admin.rg_pyprofile),
        ("RG.CONFIGGET", rg_admin.rg_configget),
        ("RG.CONFIGSET", rg_admin.rg_configset),
        ("RG.INFOCLUSTER", rg_admin.rg_infocluster),
        ("RG.REFRESHCLUSTER", rg_admin.rg_refreshcluster),
        ("RG.NETWORKTEST", rg_admin.rg_networktest),
        ("RG.CLUSTERSET", rg_admin.rg_clusterset),
        ("RG.CLUSTERSETFROMSHARD", rg_admin.rg_clustersetfromshard),
        ("RG.HELLO", rg_admin.rg_hello),
        ("RG.INNERMSGCOMMAND", rg_admin.rg_innermsgcommand),
        ("RG.DUMPPLUGINS", rg_admin.rg_dumpplugins),
        ("RG.PYEXECUTEREMOTE", rg_admin.rg_pyexecuteremote),
        ("RG.PYFREEINTERPRETER", rg_admin.rg_pyfreeinterpreter),
    ]
    # RedisGears runs these inside MULTI in their place; here they run at EXEC, their replies in place, once the
    # transaction ran (what they read and change is the runtime's). The others block in RedisGears (a cluster-wide
    # execution, a wait), which a transaction refuses, so they are refused when queued.
    at_exec = {
        "RG.UNREGISTER", "RG.DUMPREGISTRATIONS", "RG.DUMPEXECUTIONS", "RG.GETEXECUTION", "RG.GETRESULTS",
        "RG.DROPEXECUTION", "RG.PYDUMPREQS", "RG.PYEXPORTREQ", "RG.PYDUMPSESSIONS", "RG.PYSTATS", "RG.PYPROFILE",
        "RG.CONFIGGET", "RG.CONFIGSET", "RG.INFOCLUSTER", "RG.NETWORKTEST", "RG.DUMPPLUGINS", "RG.HELLO",
        "RG.INNERMSGCOMMAND", "RG.PYEXECUTEREMOTE", "RG.PYFREEINTERPRETER",
    }  # fmt: skip
    gears = Registration()
    table = [
        Command("RG.PYEXECUTE", rg.rg_pyexecute, in_transaction=rg.rg_pyexecute_in_transaction, registration=gears),
        # RG.TRIGGER reports keys itself (getkeys-api), only inside a command hook: none for COMMAND GETKEYS.
        Command("RG.TRIGGER", rg.rg_trigger, in_transaction=rg.rg_trigger_in_transaction,
                registration=Registration(keys=lambda _: [])),
        # The same handler in RedisGears, registered with its first argument as a key (2, 2, 1).
        Command("RG.TRIGGERONKEY", rg.rg_triggeronkey, in_transaction=rg.rg_triggeronkey_in_transaction,
                registration=Registration("readonly", 2, 2, 1)),
        *(
            Command(name, handler, in_transaction=handler if name in at_exec else None, registration=gears)
            for name, handler in plain
        ),
    ]  # fmt: skip
    return {c.name: c for c in table}


def core_commands() -> dict[str, Command]:
    """Redis commands whose replies the runtime amends for the modules it stands in for."""
    commands = (
        Command("TYPE", core.type_, amends=True, queued=core.queue_type),
        Command("INFO", core.info, amends=True),
        Command("MODULE", core.module, amends=True),
        Command("DEBUG", core.debug, amends=True),
        Command("SLOWLOG", core.slowlog, amends=True),
        Command("RESTORE", restore.restore, amends=True),
        Command("COMMAND", command_info.command, amends=True),
        Command("SCAN", core.scan, amends=True),
        Command("CONFIG", core.config, amends=True, takes=own_settings.takes, shown=own_settings.redacted),
        Command("SHUTDOWN", core.shutdown, amends=True),
    )
    return {c.name: c for c in commands}
