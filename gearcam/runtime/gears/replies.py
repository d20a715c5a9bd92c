"""The error replies of RedisGears 1.2.7's commands, word for word (most carry no ERR prefix).

Clients match on these strings, so they live in one table instead of being retyped
by each handler. The runtime's own messages (what it does not support) name the fix.
"""

from __future__ import annotations

__all__ = [
    "ALREADY_EXISTS", "DROP_RUNNING", "EXECUTION_NOT_FOUND", "ID_CHARS", "NON_SYNC_IN_TRANSACTION", "NOT_REGISTERED",
    "NO_ASYNC", "NO_CLUSTER", "NO_COMMAND_CTX", "NO_EXECUTION", "NO_HOOK_CTX", "OVERRIDE_ONCE", "STILL_RUNNING",
    "NO_EXECUTE_REMOTE", "NO_FREE_INTERPRETER", "SUBCOMMAND_NOT_FOUND", "UNKNOWN_SUBCOMMAND", "USER_CONFIG_SAVED",
    "config_set_failed", "missing", "no_such_registration", "replace_existing", "replace_missing", "session_missing",
    "unknown_arguments", "unknown_option", "unsupported_config",
]  # fmt: skip

# Executions
EXECUTION_NOT_FOUND = "execution plan does not exist"
STILL_RUNNING = "execution is still running"
DROP_RUNNING = "can not drop a not yet finished execution, abort it first."
NO_EXECUTION = "execution does not exist"
NO_CLUSTER = "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead"
UNKNOWN_SUBCOMMAND = "unknown subcommand"

# Registrations and triggers
NOT_REGISTERED = "execution is not registered"
SUBCOMMAND_NOT_FOUND = "ERR subcommand not found"
NON_SYNC_IN_TRANSACTION = (
    "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."
)
NO_ASYNC = "Creating async record is not allowed"
# call_next() outside a command hook; get_command() and override_reply() outside a KeysReader(commands=[...])
# execution, and a second override_reply() of one command.
NO_HOOK_CTX = "Can not get CommandHook ctx"
NO_COMMAND_CTX = "Can not get command ctx"
OVERRIDE_ONCE = "Can only override reply once"
# RG.PYEXECUTE inside MULTI (answered at EXEC) or Lua, and blocking module commands from Gears code.
GEARS_CANNOT_BLOCK = "Can not run gears inside a multi exec, lua, or when blocking is not allowed"

# The Python plugin's two retired commands answer these (bulk strings, not errors) and do nothing.
NO_EXECUTE_REMOTE = "Execute remote is not longer supported"
NO_FREE_INTERPRETER = "Free interpreter is not longer supported"

# RG.PYEXECUTE and sessions
ID_CHARS = "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"
ALREADY_EXISTS = "Session {} already exists"

# Configuration
USER_CONFIG_SAVED = "OK - value was saved in extra config dictionary"


def missing(option: str) -> str:
    return f"{option} is missing"


def unknown_arguments(argument: str) -> str:
    return f"Unknown arguments were given: {argument}"


def replace_existing(session_id: str, other: str) -> str:
    return f"Can not replace an existing session {session_id} with {other}"


def replace_missing(other: str) -> str:
    return f"Can not replace with {other}, session does not exists."


def no_such_registration(reg_id: str) -> str:
    return f"Execution {reg_id} does not exists on shard {'0' * 40}"


def session_missing(session_id: str) -> str:
    return f"Session {session_id} does not exists"


def unknown_option(option: str) -> str:
    return f"Unknown option {option}"


def unsupported_config(key: str) -> str:
    return f"(error) Unsupported config parameter: {key}"


def config_set_failed(key: str) -> str:
    return f"(error) Failed setting config value {key}"
