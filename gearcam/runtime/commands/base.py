"""What every command handler receives, and the small argument helpers they share."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gearcam.runtime.commandstats import CONTAINERS
from gearcam.runtime.relay import BackendLink
from gearcam.runtime.resp import ErrorReply

if TYPE_CHECKING:
    from gearcam.runtime.state import RuntimeState

__all__ = ["Command", "Context", "Later", "Queued", "Registration", "as_int", "settled", "token", "upper"]


@dataclass
class Context:
    """One client's view: its backend link (its DB, its ACL user) and the shared runtime state."""

    link: BackendLink
    state: RuntimeState
    protocol: int = 2
    in_multi: bool = False
    client_id: int = 0
    # Whether the backing Redis accepted this client's link (no password needed, or AUTH done):
    # learnt when the client connects and from a successful AUTH/HELLO, asked again after RESET.
    authenticated: bool = False
    # The client's ACL user, as learnt from its AUTH/HELLO/RESET replies (Connection._learn).
    user: str = "default"
    name: bytes = b""  # CLIENT SETNAME / HELLO SETNAME, as the backing Redis accepted it (SLOWLOG entries)
    # For a command Gears code sent (module_call): the execution whose step sent it (empty: a client's command).
    caller: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Context, list[bytes]], Awaitable[Any]]


@dataclass(frozen=True)
class Registration:
    """How RedisAI or RedisGears registers a command with Redis (RM_CreateCommand): what COMMAND shows of it."""

    flags: str = "readonly"  # as the module declares them, but `getkeys-api`, which `keys` stands for
    first_key: int = 0
    last_key: int = 0
    key_step: int = 0
    # The module's own key reporter (it declares `getkeys-api`): the key positions in a call's arguments.
    keys: Callable[[list[bytes]], list[int]] | None = None


@dataclass(frozen=True)
class Command:
    """A command the runtime serves itself instead of relaying."""

    name: str
    handler: Handler
    # Execution commands answer RedisAI's transaction error inside MULTI.
    execution: bool = False
    # Starts the command without waiting (its writes sent, its reply a Later): the next
    # command of the same client is dispatched at once (its backend traffic is ordered
    # after this one's by the link). Used where waiting would stall a pipeline.
    start: Callable[[Context, list[bytes]], Awaitable[Any] | Later] | None = None
    # A Redis command the runtime relays and only amends (TYPE, INFO, ...): the backing Redis counts it
    # (INFO commandstats) and logs it (SLOWLOG), and inside MULTI it is relayed into the backing Redis'
    # transaction as it is (the amendments left out there). The others the runtime counts and logs
    # (runtime/commandstats.py, runtime/slowlog.py); inside MULTI they discard the transaction
    # (Connection._refuse_in_multi) unless `in_transaction` says otherwise.
    amends: bool = False
    # Sent inside MULTI: runs at EXEC (its reply in its place among the transaction's), where a module
    # runs it inside the transaction; None: refused with an error when queued.
    in_transaction: Handler | None = None
    # Sent inside MULTI: what goes into the backing Redis' transaction in its place, so that it is applied
    # at EXEC in order and atomically with the rest, as a module's command is (before in_transaction).
    # An ErrorReply or AIError it raises is the command's reply in EXEC's, in its place; the rest commits.
    # A coroutine where a model or script is loaded first (the client's next commands wait for it).
    queued: Callable[[Context, list[bytes]], Queued | Awaitable[Queued]] | None = None
    # A module's command (AI.*, RG.*): listed by COMMAND as the module registers it (commands/command_info.py).
    registration: Registration | None = None
    # A Redis command the runtime answers only where this says so (CONFIG naming the runtime's own
    # settings, runtime/own_settings.py); every other call of it is relayed as if it were not owned.
    takes: Callable[[list[bytes]], bool] | None = None
    # What MONITOR shows of a call: its secrets redacted, as Redis redacts them (None: the call as sent).
    shown: Callable[[list[bytes]], list[bytes]] | None = None

    @functools.cached_property
    def _listed_name(self) -> bytes:
        return self.name.lower().encode()

    def listed_name(self, args: list[bytes]) -> bytes:
        """A call of it as CLIENT LIST's cmd= names it: lower case (`ai.tensorset`), a container command
        with its subcommand (`command|docs`), as Redis does; not what the runtime sent Redis for it."""
        if self.name in CONTAINERS and len(args) > 1:
            return self._listed_name + b"|" + args[1].lower()
        return self._listed_name


def _as_is(reply: Any) -> Any:
    return reply


@dataclass(frozen=True)
class Queued:
    """An owned command inside MULTI as the backing Redis runs it there: the command queued in its place,
    and how that command's reply in EXEC's becomes this one's (it may raise an ErrorReply or AIError)."""

    args: tuple[bytes, ...]
    reply: Callable[[Any], Any] = _as_is
    # The key the step writes or deletes once it applies (one key event): announced as the runtime's own
    # write (TensorStore.announce), since RedisAI's writes cause no key events and run no registration.
    writes: bytes | None = None


@dataclass(frozen=True)
class Later:
    """A reply that waits for writes already sent.

    The command has done its part of the client's order (its writes are on the client's
    link, where later commands queue behind them), so the connection goes on to the
    client's next pipelined command; `value` is the reply once `written` completes, and
    `written`'s error (WRONGTYPE, OOM) replaces it. Awaiting a Later gives that reply.
    """

    written: asyncio.Future[Any]
    value: Any

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self.written.__await__()
        return self.value


async def settled(value: Any) -> Any:
    """The reply itself, for callers that answer one command at a time."""
    return await value if isinstance(value, Later) else value


def upper(value: bytes) -> str:
    return value.decode("utf-8", "replace").upper()


def token(args: list[bytes], index: int) -> str | None:
    """The upper-cased argument at `index`, or None past the end."""
    return upper(args[index]) if index < len(args) else None


def as_int(value: bytes, error: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ErrorReply(error) from None
