"""An owned command as a module's `RM_Call` runs it inside Redis: from Gears code (`execute('AI.…')`) and at
the end of a command hook's `call_next()` on an `AI.*` or `RG.*` command.

Redis denies blocking to `RM_Call`, so RedisGears refuses its blocking commands there and runs a trigger as
inside `MULTI` (sync registrations only, inline, without async records). The caller picks the context: the
runtime's own link for Gears code, the client's (as its ACL user) for a hooked client command.
"""

from __future__ import annotations

from typing import Any

from gearcam.runtime.ai.errors import AIError, RunTimedOut
from gearcam.runtime.commands.base import Command, Context, settled
from gearcam.runtime.commands.rg import rg_trigger_in_transaction, rg_triggeronkey_in_transaction
from gearcam.runtime.gears.replies import GEARS_CANNOT_BLOCK
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = ["TIMEDOUT", "module_call"]

TIMEDOUT = SimpleString("TIMEDOUT")  # RedisAI's status for a run that waited past its TIMEOUT
_BLOCKING = {"RG.PYEXECUTE", "RG.GETRESULTSBLOCKING"}
_TRIGGERS = {"RG.TRIGGER": rg_trigger_in_transaction, "RG.TRIGGERONKEY": rg_triggeronkey_in_transaction}


async def module_call(ctx: Context, command: Command, args: list[bytes]) -> Any:
    """The command's reply as RM_Call gets it (a RedisAI timeout its TIMEDOUT status, an error an ErrorReply)."""
    if command.name in _BLOCKING:
        raise ErrorReply(GEARS_CANNOT_BLOCK)
    handler = _TRIGGERS.get(command.name) or command.start or command.handler
    try:
        return await settled(await handler(ctx, args))
    except RunTimedOut:
        return TIMEDOUT
    except AIError as exc:
        raise ErrorReply(exc.message) from None
